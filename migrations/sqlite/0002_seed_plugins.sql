-- The reference's three approved marketplace plugins. They have no author account
-- (author_id NULL); `author` is the display name.
INSERT INTO plugins (id, name, description, version, author, author_id, category, price_cents,
                     permissions, status, install_count, avg_rating, rating_count, created_at, updated_at)
VALUES
    ('github-sync', 'GitHub Sync', 'Sync GitHub issues and pull requests with Adiuva tasks.',
     '1.0.0', 'Adiuva', NULL, 'Productivity', 0,
     '["read:tasks","write:tasks","read:projects"]', 'approved', 0, 0, 0, 1735689600000, 1735689600000),
    ('slack-notifier', 'Slack Notifier', 'Post task and milestone updates to Slack channels.',
     '1.0.0', 'Adiuva', NULL, 'Communication', 499,
     '["read:tasks","read:projects","read:timelines"]', 'approved', 0, 0, 0, 1735689600000, 1735689600000),
    ('time-tracker', 'Time Tracker', 'Track time spent on tasks and projects.',
     '1.0.0', 'Adiuva', NULL, 'Productivity', 999,
     '["read:tasks","write:tasks","read:projects","read:calendar"]', 'approved', 0, 0, 0, 1735689600000, 1735689600000);
