-- no-transaction
-- Sign-in with OpenID Connect (see the PostgreSQL migration of the same number). SQLite cannot
-- change a CHECK, so security_events is rebuilt with the two new event types (SQLite's
-- documented procedure, as in 0010: foreign keys off outside a transaction, then one
-- transaction of its own, foreign keys on again).
PRAGMA foreign_keys = OFF;
BEGIN;

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

CREATE TABLE security_events_rebuilt (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL CHECK (event_type IN (
        'login_succeeded', 'login_failed', 'password_changed', 'email_changed', 'session_revoked',
        'refresh_reuse_detected', 'sign_in_locked', 'oidc_linked', 'oidc_unlinked'
    )),
    at          BIGINT NOT NULL,
    session_id  TEXT,
    ip_prefix   TEXT,
    user_agent  TEXT,
    -- 1 on a sign-in from a user agent and address prefix the account had not used in 90 days.
    new_device  BIGINT NOT NULL DEFAULT 0 CHECK (new_device IN (0, 1))
);
INSERT INTO security_events_rebuilt (id, user_id, event_type, at, session_id, ip_prefix,
    user_agent, new_device)
SELECT id, user_id, event_type, at, session_id, ip_prefix, user_agent, new_device
FROM security_events;
DROP TABLE security_events;
ALTER TABLE security_events_rebuilt RENAME TO security_events;
CREATE INDEX security_events_user_at_idx ON security_events (user_id, at, id);

COMMIT;
PRAGMA foreign_keys = ON;
