-- Sign-in with OpenID Connect (issue 23, item 5). An identity is (issuer, subject): the person
-- a provider vouches for. It signs into the account it is linked to, and is never linked to an
-- existing account by email alone (the account's owner links it while signed in).
CREATE TABLE user_identities (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `google` (and later a team's provider).
    provider   TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    -- The provider's verified email when the identity was linked (shown in `/auth/me`).
    email      TEXT NOT NULL,
    linked_at  BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id, linked_at);

-- An account created through OpenID Connect has no password: its `users.password_hash` is the
-- empty string (no bcrypt hash is empty), until `POST /auth/password {new_password}` sets one.
-- The column stays NOT NULL, so the SQLite schema keeps its `users` table as it is.

ALTER DOMAIN security_event_type DROP CONSTRAINT security_event_type_check;
ALTER DOMAIN security_event_type ADD CONSTRAINT security_event_type_check CHECK (VALUE IN (
    'login_succeeded', 'login_failed', 'password_changed', 'email_changed', 'session_revoked',
    'refresh_reuse_detected', 'sign_in_locked', 'oidc_linked', 'oidc_unlinked'
));
