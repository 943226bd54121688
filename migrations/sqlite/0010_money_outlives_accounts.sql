-- no-transaction
-- Money outlives accounts (see the PostgreSQL migration of the same number for why). SQLite
-- cannot drop a foreign key, so the three tables are rebuilt (SQLite's documented procedure:
-- foreign keys off, which is a no-op inside a transaction, hence this file runs outside
-- sqlx's; then one transaction of its own; the check; foreign keys on again).
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE plugins_rebuilt (
    id              TEXT PRIMARY KEY CHECK (id <> '' AND id NOT GLOB '*[^a-z0-9-]*'),
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    version         TEXT NOT NULL,
    author          TEXT NOT NULL,
    -- The developer's id, kept after their account is deleted (no foreign key).
    author_id       TEXT,
    category        TEXT NOT NULL,
    price_cents     BIGINT NOT NULL DEFAULT 0 CHECK (price_cents >= 0),
    -- JSON array of permission strings.
    permissions     TEXT NOT NULL DEFAULT '[]',
    status          TEXT NOT NULL CHECK (status IN ('pending_review', 'approved', 'rejected')) DEFAULT 'pending_review',
    s3_package_key  TEXT,
    install_count   BIGINT NOT NULL DEFAULT 0,
    avg_rating      REAL NOT NULL DEFAULT 0,
    rating_count    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    blocked_at      BIGINT,
    block_reason    TEXT,
    -- When the plugin stopped taking new installs (its developer's account was deleted).
    closed_at       BIGINT
);
INSERT INTO plugins_rebuilt (id, name, description, version, author, author_id, category,
    price_cents, permissions, status, s3_package_key, install_count, avg_rating, rating_count,
    created_at, updated_at, blocked_at, block_reason)
SELECT id, name, description, version, author, author_id, category, price_cents, permissions,
    status, s3_package_key, install_count, avg_rating, rating_count, created_at, updated_at,
    blocked_at, block_reason FROM plugins;
DROP TABLE plugins;
ALTER TABLE plugins_rebuilt RENAME TO plugins;
CREATE INDEX plugins_status_idx ON plugins (status, category);

CREATE TABLE plugin_purchases_rebuilt (
    id                  TEXT PRIMARY KEY,
    plugin_id           TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    amount_cents        BIGINT NOT NULL CHECK (amount_cents > 0),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'disputed', 'refunded')),
    checkout_session_id TEXT,
    checkout_url        TEXT,
    checkout_expires_at BIGINT,
    charge_id           TEXT,
    created_at          BIGINT NOT NULL,
    paid_at             BIGINT,
    refunded_at         BIGINT,
    refunded_cents      BIGINT NOT NULL DEFAULT 0,
    disputed_at         BIGINT
);
INSERT INTO plugin_purchases_rebuilt (id, plugin_id, user_id, amount_cents, status,
    checkout_session_id, checkout_url, checkout_expires_at, charge_id, created_at, paid_at,
    refunded_at, refunded_cents)
SELECT id, plugin_id, user_id, amount_cents, status, checkout_session_id, checkout_url,
    checkout_expires_at, charge_id, created_at, paid_at, refunded_at,
    CASE WHEN status = 'refunded' THEN amount_cents ELSE 0 END FROM plugin_purchases;
DROP TABLE plugin_purchases;
ALTER TABLE plugin_purchases_rebuilt RENAME TO plugin_purchases;
CREATE UNIQUE INDEX plugin_purchases_open_idx ON plugin_purchases (plugin_id, user_id)
    WHERE status IN ('pending', 'paid', 'disputed');
CREATE INDEX plugin_purchases_charge_idx ON plugin_purchases (charge_id);

CREATE TABLE revenue_events_rebuilt (
    id                    TEXT PRIMARY KEY,
    plugin_id             TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    amount_cents          BIGINT NOT NULL CHECK (amount_cents >= 0),
    developer_share_cents BIGINT NOT NULL CHECK (developer_share_cents >= 0),
    stripe_transfer_id    TEXT,
    created_at            BIGINT NOT NULL,
    purchase_id           TEXT,
    developer_id          TEXT,
    platform_share_cents  BIGINT NOT NULL DEFAULT 0,
    transfer_reversal_id  TEXT,
    refunded_at           BIGINT,
    transfer_status       TEXT NOT NULL DEFAULT 'made'
        CHECK (transfer_status IN ('none', 'owed', 'pending', 'made', 'failed', 'canceled')),
    transfer_account      TEXT,
    charge_id             TEXT,
    reversed_cents        BIGINT NOT NULL DEFAULT 0,
    reversal_made_cents   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO revenue_events_rebuilt (id, plugin_id, user_id, amount_cents, developer_share_cents,
    stripe_transfer_id, created_at, purchase_id, developer_id, platform_share_cents,
    transfer_reversal_id, refunded_at, transfer_status, reversed_cents, reversal_made_cents)
SELECT id, plugin_id, user_id, amount_cents, developer_share_cents, stripe_transfer_id,
    created_at, purchase_id, developer_id, platform_share_cents, transfer_reversal_id,
    refunded_at,
    CASE WHEN stripe_transfer_id IS NOT NULL THEN 'made'
         WHEN developer_share_cents = 0 THEN 'none' ELSE 'owed' END,
    CASE WHEN refunded_at IS NOT NULL THEN developer_share_cents ELSE 0 END,
    CASE WHEN refunded_at IS NOT NULL THEN developer_share_cents ELSE 0 END
FROM revenue_events;
DROP TABLE revenue_events;
ALTER TABLE revenue_events_rebuilt RENAME TO revenue_events;
CREATE INDEX revenue_events_plugin_idx ON revenue_events (plugin_id, created_at);
CREATE UNIQUE INDEX revenue_events_purchase_idx ON revenue_events (purchase_id);
CREATE INDEX revenue_events_developer_idx ON revenue_events (developer_id, created_at);
CREATE INDEX revenue_events_transfer_work_idx ON revenue_events (transfer_status)
    WHERE transfer_status = 'pending' OR reversed_cents > reversal_made_cents;

COMMIT;
PRAGMA foreign_keys = ON;
