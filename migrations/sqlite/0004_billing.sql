-- Billing: the state of each user's Stripe subscription as last read from Stripe, and the
-- Stripe events already applied (webhooks arrive at least once; an event id recorded in the
-- same transaction as its change makes a second delivery a no-op). Stub checkouts of the local
-- server record their one-time tokens here too (ids `stub:<nonce>`).
ALTER TABLE subscriptions ADD COLUMN cancel_at_period_end BIGINT NOT NULL DEFAULT 0;
-- When Stripe created the subscription (ms): of two live subscriptions, the newer one counts.
ALTER TABLE subscriptions ADD COLUMN stripe_created BIGINT;

CREATE TABLE billing_events (
    id          TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
