-- Team SSO (issue 23, item 6): a team's own OpenID provider. Its members sign in through it
-- (`POST /auth/oidc/start {team_id}`), a new identity whose email domain is one of `domains`
-- creates its account and joins the team while a seat is free, and with `required` the
-- members of those domains (the owner excepted) cannot sign in with a password.
CREATE TABLE team_sso (
    team_id       TEXT PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    issuer        TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    -- The client secret sealed (AES-256-GCM) under a key derived from SSO_SECRET_KEY, bound
    -- to the team's id: never stored or answered in the clear.
    client_secret TEXT NOT NULL,
    -- Lower-cased email domains, comma-separated (each checked: no comma can be in one).
    domains       TEXT NOT NULL,
    -- 1: password sign-in is refused to the members of those domains, the owner excepted.
    required      BIGINT NOT NULL DEFAULT 0 CHECK (required IN (0, 1)),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

ALTER DOMAIN team_event_type DROP CONSTRAINT team_event_type_check;
ALTER DOMAIN team_event_type ADD CONSTRAINT team_event_type_check CHECK (VALUE IN (
    'member_invited', 'member_joined', 'member_removed', 'member_left', 'role_changed',
    'key_shared', 'seats_changed', 'ownership_transferred', 'subscription_changed',
    'sso_configured', 'sso_removed'
));
