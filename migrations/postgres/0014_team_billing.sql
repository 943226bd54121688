-- Team billing (issue 21, item 2): a team's subscription, billed per seat, as last read from
-- Stripe. `teams.seats` is the subscription item's quantity and `teams.status` its state
-- (Stripe's `active` and `trialing` are `active`, `past_due` stays, `incomplete` is `none`,
-- every ended state is `canceled`). The ordering and dedupe rules are those of personal
-- subscriptions (0004): `stripe_created` decides which of two live subscriptions counts, and
-- the event ids applied are in `billing_events`.
ALTER TABLE teams ADD COLUMN stripe_subscription_id TEXT;
ALTER TABLE teams ADD COLUMN stripe_created BIGINT;
-- End of the paid period (ms), and whether the subscription ends then.
ALTER TABLE teams ADD COLUMN current_period_end BIGINT;
ALTER TABLE teams ADD COLUMN cancel_at_period_end BIGINT NOT NULL DEFAULT 0;
-- A subscription pays for one team (NULLs, stub or unpaid teams, are distinct).
CREATE UNIQUE INDEX teams_stripe_subscription_idx ON teams (stripe_subscription_id);

-- A personal subscription of the Team tier becomes a team of one: its buyer the owner, one
-- seat, its status, Stripe ids and period moved to the team (whose id is the subscription
-- row's), and the personal row removed. The buyer keeps their own Pro or Power tier to buy.
INSERT INTO teams (id, name, seats, status, created_at, updated_at, stripe_subscription_id,
                   stripe_created, current_period_end, cancel_at_period_end)
SELECT s.id,
       split_part(u.email, '@', 1) || '''s team',
       1,
       CASE
           WHEN s.status IN ('active', 'trialing') THEN 'active'
           WHEN s.status = 'past_due' THEN 'past_due'
           WHEN s.status = 'incomplete' THEN 'none'
           ELSE 'canceled'
       END,
       s.created_at,
       s.updated_at,
       s.stripe_subscription_id,
       s.stripe_created,
       s.current_period_end,
       s.cancel_at_period_end
FROM subscriptions s
JOIN users u ON u.id = s.user_id
WHERE s.tier = 'team';

INSERT INTO team_members (team_id, user_id, role, joined_at)
SELECT s.id, s.user_id, 'owner', s.created_at
FROM subscriptions s
WHERE s.tier = 'team';

DELETE FROM subscriptions WHERE tier = 'team';
