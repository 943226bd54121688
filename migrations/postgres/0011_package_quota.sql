-- Plugin packages count against their developer's cloud storage quota (issue 20). Packages
-- committed before this migration were never reserved: `quota_counted` = 0 tells the janitor
-- not to give back bytes it never took when it collects them.
ALTER TABLE plugin_packages ADD COLUMN quota_counted BIGINT NOT NULL DEFAULT 0;
