-- Teams (issue 21): a team, its members and their roles, invitations, the wrapped team keys
-- and the team's log. The server never sees a team key: members publish a public key, an
-- admin wraps the team key for each member on their device, and only the wrapped copies are
-- stored here. Billing per seat (the team's subscription) and team spaces (records) come in
-- their own migrations.

CREATE DOMAIN team_role AS TEXT CHECK (VALUE IN ('owner', 'admin', 'member'));
CREATE DOMAIN team_status AS TEXT CHECK (VALUE IN ('none', 'active', 'past_due', 'canceled'));

CREATE TABLE teams (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    -- Paid seats (the subscription's quantity); 0 until a checkout is paid.
    seats      BIGINT NOT NULL DEFAULT 0 CHECK (seats >= 0),
    -- The team subscription's state, kept in step by billing's webhooks.
    status     team_status NOT NULL DEFAULT 'none',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every member holds one seat, the owner included. Exactly one owner per team: the partial
-- unique index refuses a second, and the domain code moves ownership in one transaction.
CREATE TABLE team_members (
    team_id   TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      team_role NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_idx ON team_members (user_id, joined_at);
CREATE UNIQUE INDEX team_members_one_owner_idx ON team_members (team_id) WHERE role = 'owner';

-- A pending invitation holds a seat until it is accepted, revoked or expires. The token is
-- single-use and stored as its SHA-256.
CREATE TABLE team_invitations (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        team_role NOT NULL CHECK (role <> 'owner'),
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX team_invitations_team_idx ON team_invitations (team_id, created_at);

-- The team key wrapped for one member (opaque base64); goes with the membership.
CREATE TABLE team_keys (
    team_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    wrapped_key TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    wrapped_by  TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id),
    FOREIGN KEY (team_id, user_id) REFERENCES team_members (team_id, user_id) ON DELETE CASCADE
);

CREATE DOMAIN team_event_type AS TEXT CHECK (VALUE IN (
    'member_invited', 'member_joined', 'member_removed', 'member_left', 'role_changed',
    'key_shared', 'seats_changed', 'ownership_transferred', 'subscription_changed'
));

-- The team's log, read newest first by keyset (at, id): who did what to whom, never content
-- or tokens. `actor_id` is null for what billing's webhooks record.
CREATE TABLE team_events (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    event_type team_event_type NOT NULL,
    actor_id   TEXT,
    subject_id TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX team_events_team_at_idx ON team_events (team_id, at, id);

-- A member's public key (base64, at most 1 KiB) for wrapping team keys.
ALTER TABLE users ADD COLUMN public_key TEXT;
ALTER TABLE users ADD COLUMN key_algorithm TEXT
    CHECK (key_algorithm IN ('x25519', 'p256', 'rsa-oaep-256'));
