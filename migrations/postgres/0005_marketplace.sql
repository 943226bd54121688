-- The plugin marketplace: developer submissions (one row per version, with the automated
-- checklist's results), packages uploaded through the storage upload flow, reviews of a
-- version, ratings by installers, blocking, paid installs (purchases), the revenue split and
-- the developers' Stripe Connect accounts.

-- A package is uploaded like a large record: the upload flow gains a purpose.
ALTER TABLE pending_uploads DROP CONSTRAINT pending_uploads_purpose_check;
ALTER TABLE pending_uploads ADD CONSTRAINT pending_uploads_purpose_check
    CHECK (purpose IN ('record', 'backup', 'plugin_package'));

-- A committed package: size and SHA-256 verified by the upload commit, owned by its developer.
-- The janitor keeps the blobs these rows refer to, and removes packages no submission used
-- after a week.
CREATE TABLE plugin_packages (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    s3_key      TEXT NOT NULL UNIQUE,
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    checksum    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX plugin_packages_user_idx ON plugin_packages (user_id);

-- Every submission, one row per version, with the automated checklist's results. A submission
-- that failed the checklist is kept as rejected (the developer sees why) but claims no plugin
-- id, so `plugin_id` has no foreign key: `plugins` gets its row with the first submission that
-- passed. `plugins` holds the listing: the fields of the latest approved version (or of the
-- submission under review while none is approved).
CREATE TABLE plugin_versions (
    id            TEXT PRIMARY KEY,
    plugin_id     TEXT NOT NULL,
    developer_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version       TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    author        TEXT NOT NULL,
    category      TEXT NOT NULL,
    -- JSON array of permission strings.
    permissions   TEXT NOT NULL,
    price_cents   BIGINT NOT NULL CHECK (price_cents >= 0),
    package_id    TEXT REFERENCES plugin_packages (id) ON DELETE SET NULL,
    package_key   TEXT,
    status        plugin_status NOT NULL,
    -- JSON: [{"check": "...", "passed": true|false, "detail": "..."}].
    checks        TEXT NOT NULL,
    submitted_at  BIGINT NOT NULL
);
CREATE INDEX plugin_versions_plugin_idx ON plugin_versions (plugin_id, submitted_at);
CREATE INDEX plugin_versions_developer_idx ON plugin_versions (developer_id, submitted_at);
CREATE INDEX plugin_versions_status_idx ON plugin_versions (status, submitted_at);
-- At most one version of a plugin under review at a time.
CREATE UNIQUE INDEX plugin_versions_pending_idx ON plugin_versions (plugin_id)
    WHERE status = 'pending_review';

-- The reviewer's decision is about one version.
ALTER TABLE plugin_reviews ADD COLUMN version_id TEXT REFERENCES plugin_versions (id) ON DELETE CASCADE;

ALTER TABLE plugins ADD COLUMN blocked_at BIGINT;
ALTER TABLE plugins ADD COLUMN block_reason TEXT;

-- One rating per installer, changeable; `plugins.avg_rating` and `rating_count` follow it.
CREATE TABLE plugin_ratings (
    plugin_id  TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stars      BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, user_id)
);

-- A paid install: pending while its Checkout Session is open, paid when Stripe says so,
-- refunded when its charge is. One pending or paid purchase per user and plugin.
CREATE TABLE plugin_purchases (
    id                  TEXT PRIMARY KEY,
    plugin_id           TEXT NOT NULL REFERENCES plugins (id) ON DELETE CASCADE,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount_cents        BIGINT NOT NULL CHECK (amount_cents > 0),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'refunded')),
    checkout_session_id TEXT,
    checkout_url        TEXT,
    checkout_expires_at BIGINT,
    charge_id           TEXT,
    created_at          BIGINT NOT NULL,
    paid_at             BIGINT,
    refunded_at         BIGINT
);
CREATE UNIQUE INDEX plugin_purchases_open_idx ON plugin_purchases (plugin_id, user_id)
    WHERE status IN ('pending', 'paid');
CREATE INDEX plugin_purchases_charge_idx ON plugin_purchases (charge_id);

-- A developer's Stripe Connect (Express) account.
CREATE TABLE developer_accounts (
    user_id           TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_account_id TEXT NOT NULL UNIQUE,
    payouts_enabled   BIGINT NOT NULL DEFAULT 0,
    details_submitted BIGINT NOT NULL DEFAULT 0,
    updated_at        BIGINT NOT NULL
);

-- The split of each paid install: exactly one row (and at most one transfer) per purchase.
-- developer_share_cents + platform_share_cents = amount_cents.
ALTER TABLE revenue_events ADD COLUMN purchase_id TEXT;
ALTER TABLE revenue_events ADD COLUMN developer_id TEXT;
ALTER TABLE revenue_events ADD COLUMN platform_share_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE revenue_events ADD COLUMN transfer_reversal_id TEXT;
ALTER TABLE revenue_events ADD COLUMN refunded_at BIGINT;
CREATE UNIQUE INDEX revenue_events_purchase_idx ON revenue_events (purchase_id);
CREATE INDEX revenue_events_developer_idx ON revenue_events (developer_id, created_at);
