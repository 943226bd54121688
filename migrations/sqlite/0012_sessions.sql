-- Sessions and the security log (issue 23). A session is one sign-in: one refresh-token
-- family, whose id it shares, and the access tokens issued from it carry that id as `sid`.
-- Ending a session sets `revoked_at` here and on its refresh tokens; the query that loads the
-- caller on every request joins this row, so its access tokens stop at the next request.
-- Families issued before this migration have no row until their next refresh adopts them.

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    -- Moved by each refresh of the session's tokens (not by every request).
    last_used_at BIGINT NOT NULL,
    -- The User-Agent of the sign-in, at most 256 characters.
    user_agent   TEXT,
    -- The IPv4 /24 or IPv6 /48 of the sign-in's address, never the address itself.
    ip_prefix    TEXT,
    revoked_at   BIGINT
);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at);

-- The account's security log, read newest first by keyset (at, id). Rows older than 90 days
-- are not shown; purging them is a later janitor job. Never a password, token or address.
CREATE TABLE security_events (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL CHECK (event_type IN (
        'login_succeeded', 'login_failed', 'password_changed', 'email_changed', 'session_revoked',
        'refresh_reuse_detected', 'sign_in_locked'
    )),
    at          BIGINT NOT NULL,
    session_id  TEXT,
    ip_prefix   TEXT,
    user_agent  TEXT,
    -- 1 on a sign-in from a user agent and address prefix the account had not used in 90 days.
    new_device  BIGINT NOT NULL DEFAULT 0 CHECK (new_device IN (0, 1))
);
CREATE INDEX security_events_user_at_idx ON security_events (user_id, at, id);

-- A platform admin's disabling of an account (`POST /admin/users/{id}/disable`): set, the
-- account cannot sign in and its sessions have ended; cleared by `/enable`.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
