-- no-transaction
-- Team SSO (see the PostgreSQL migration of the same number). SQLite cannot change a CHECK,
-- so team_events is rebuilt with the two new event types (SQLite's documented procedure, as
-- in 0016: foreign keys off outside a transaction, then one transaction of its own, foreign
-- keys on again).
PRAGMA foreign_keys = OFF;
BEGIN;

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

CREATE TABLE team_events_rebuilt (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL CHECK (event_type IN (
        'member_invited', 'member_joined', 'member_removed', 'member_left', 'role_changed',
        'key_shared', 'seats_changed', 'ownership_transferred', 'subscription_changed',
        'sso_configured', 'sso_removed'
    )),
    actor_id   TEXT,
    subject_id TEXT,
    at         BIGINT NOT NULL
);
INSERT INTO team_events_rebuilt (id, team_id, event_type, actor_id, subject_id, at)
SELECT id, team_id, event_type, actor_id, subject_id, at FROM team_events;
DROP TABLE team_events;
ALTER TABLE team_events_rebuilt RENAME TO team_events;
CREATE INDEX team_events_team_at_idx ON team_events (team_id, at, id);

COMMIT;
PRAGMA foreign_keys = ON;
