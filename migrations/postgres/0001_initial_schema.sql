-- The reference data model (9 tables) plus what SPEC section 4 adds: user roles, token
-- versions, refresh-token families, record versions and per-user usage counters that make
-- quota checks atomic. Ids are TEXT UUIDs and timestamps BIGINT milliseconds since the epoch,
-- so the same SQL runs on SQLite; enums are domains over TEXT for the same reason.

CREATE DOMAIN billing_tier AS TEXT CHECK (VALUE IN ('free', 'pro', 'power', 'team'));
CREATE DOMAIN plugin_status AS TEXT CHECK (VALUE IN ('pending_review', 'approved', 'rejected'));
CREATE DOMAIN review_decision AS TEXT CHECK (VALUE IN ('approved', 'rejected'));
CREATE DOMAIN user_role AS TEXT CHECK (VALUE IN ('user', 'admin'));

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    -- Kept for parity with the reference schema; the live tier comes from subscriptions.
    tier               billing_tier NOT NULL DEFAULT 'free',
    role               user_role NOT NULL DEFAULT 'user',
    stripe_customer_id TEXT UNIQUE,
    -- Bumped by logout, password change and account deletion; access tokens carry it as `ver`.
    token_version      BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    -- Every token rotated out of one login shares a family; reuse revokes the family.
    family_id   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);

CREATE TABLE subscriptions (
    id                     TEXT PRIMARY KEY,
    user_id                TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    stripe_subscription_id TEXT UNIQUE,
    tier                   billing_tier NOT NULL,
    status                 TEXT NOT NULL,
    current_period_end     BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);

CREATE TABLE backup_metadata (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    s3_key      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    "timestamp" BIGINT NOT NULL,
    checksum    TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    chunk_count BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL
);
CREATE INDEX backup_metadata_user_idx ON backup_metadata (user_id, "timestamp");

CREATE TABLE storage_records (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    s3_key      TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX storage_records_user_idx ON storage_records (user_id, table_name, updated_at);

-- One row per user: bytes held in records and in backups. Quota checks are a single
-- conditional UPDATE on this row, so concurrent uploads cannot together pass the limit.
CREATE TABLE storage_usage (
    user_id        TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    records_bytes  BIGINT NOT NULL DEFAULT 0 CHECK (records_bytes >= 0),
    backup_bytes   BIGINT NOT NULL DEFAULT 0 CHECK (backup_bytes >= 0)
);

CREATE TABLE plugins (
    id              TEXT PRIMARY KEY CHECK (id ~ '^[a-z0-9-]+$'),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    version         TEXT NOT NULL,
    author          TEXT NOT NULL,
    author_id       TEXT REFERENCES users (id) ON DELETE CASCADE,
    category        TEXT NOT NULL,
    price_cents     BIGINT NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    -- JSON array of permission strings.
    permissions     TEXT NOT NULL DEFAULT '[]',
    status          plugin_status NOT NULL DEFAULT 'pending_review',
    s3_package_key  TEXT,
    install_count   BIGINT NOT NULL DEFAULT 0,
    avg_rating      DOUBLE PRECISION NOT NULL DEFAULT 0,
    rating_count    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX plugins_status_idx ON plugins (status, category);

CREATE TABLE plugin_installations (
    id           TEXT PRIMARY KEY,
    plugin_id    TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    installed_at BIGINT NOT NULL,
    UNIQUE (plugin_id, user_id)
);
CREATE INDEX plugin_installations_user_idx ON plugin_installations (user_id);

CREATE TABLE plugin_reviews (
    id          TEXT PRIMARY KEY,
    plugin_id   TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    reviewer_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    decision    review_decision NOT NULL,
    notes       TEXT,
    reviewed_at BIGINT NOT NULL
);
CREATE INDEX plugin_reviews_plugin_idx ON plugin_reviews (plugin_id);

CREATE TABLE revenue_events (
    id                    TEXT PRIMARY KEY,
    plugin_id             TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount_cents          BIGINT NOT NULL CHECK (amount_cents >= 0),
    developer_share_cents BIGINT NOT NULL CHECK (developer_share_cents >= 0),
    stripe_transfer_id    TEXT,
    created_at            BIGINT NOT NULL
);
CREATE INDEX revenue_events_plugin_idx ON revenue_events (plugin_id, created_at);
