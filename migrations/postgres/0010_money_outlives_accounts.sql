-- Money outlives accounts. A purchase and its revenue event are the record of a payment and of
-- the developer's transfer: deleting the buyer's or the developer's account must not erase
-- them, or a later refund or chargeback finds nothing to reverse. So they keep the ids of both
-- sides without a foreign key (account deletion clears what is personal in them), and a
-- plugin outlives its developer's account (closed to new installs, still installed and
-- downloadable for those who bought it).
ALTER TABLE plugins DROP CONSTRAINT plugins_author_id_fkey;
-- When the plugin stopped taking new installs (its developer's account was deleted).
ALTER TABLE plugins ADD COLUMN closed_at BIGINT;

ALTER TABLE plugin_purchases DROP CONSTRAINT plugin_purchases_plugin_id_fkey;
ALTER TABLE plugin_purchases DROP CONSTRAINT plugin_purchases_user_id_fkey;
-- disputed: the charge is disputed, the install suspended until the dispute is won.
-- refunded: fully refunded, or the dispute was lost; also a refund that arrived before the
-- purchase completed (the completion then refuses).
ALTER TABLE plugin_purchases DROP CONSTRAINT plugin_purchases_status_check;
ALTER TABLE plugin_purchases ADD CONSTRAINT plugin_purchases_status_check
    CHECK (status IN ('pending', 'paid', 'disputed', 'refunded'));
DROP INDEX plugin_purchases_open_idx;
CREATE UNIQUE INDEX plugin_purchases_open_idx ON plugin_purchases (plugin_id, user_id)
    WHERE status IN ('pending', 'paid', 'disputed');
-- Of the charge, how much was refunded (partial refunds reverse the matching share).
ALTER TABLE plugin_purchases ADD COLUMN refunded_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE plugin_purchases ADD COLUMN disputed_at BIGINT;

ALTER TABLE revenue_events DROP CONSTRAINT revenue_events_plugin_id_fkey;
ALTER TABLE revenue_events DROP CONSTRAINT revenue_events_user_id_fkey;
-- The transfer is an outbox: recorded as 'pending' in the purchase's transaction and made
-- after the commit (and by the janitor until it is), found again by its transfer group so
-- that no retry at any delay pays twice. 'made', 'failed' (Stripe refused it: owed),
-- 'owed' (no payout account), 'canceled' (refunded before it was made), 'none' (no share).
ALTER TABLE revenue_events ADD COLUMN transfer_status TEXT NOT NULL DEFAULT 'made'
    CHECK (transfer_status IN ('none', 'owed', 'pending', 'made', 'failed', 'canceled'));
ALTER TABLE revenue_events ADD COLUMN transfer_account TEXT;
ALTER TABLE revenue_events ADD COLUMN charge_id TEXT;
-- What should be taken back of the developer's share (refunds, lost disputes), and what was.
ALTER TABLE revenue_events ADD COLUMN reversed_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE revenue_events ADD COLUMN reversal_made_cents BIGINT NOT NULL DEFAULT 0;
UPDATE revenue_events SET transfer_status = CASE
    WHEN stripe_transfer_id IS NOT NULL THEN 'made'
    WHEN developer_share_cents = 0 THEN 'none'
    ELSE 'owed' END;
UPDATE revenue_events SET reversed_cents = developer_share_cents, reversal_made_cents = developer_share_cents
    WHERE refunded_at IS NOT NULL;
CREATE INDEX revenue_events_transfer_work_idx ON revenue_events (transfer_status)
    WHERE transfer_status = 'pending' OR reversed_cents > reversal_made_cents;
