-- The janitor walks the blob store a page at a time and resumes where its last run stopped.
-- (It asks which keys of a page are referenced; the tables that refer to blobs are indexed by
-- key since 0003 and 0005.)
CREATE TABLE janitor_state (
    name       TEXT PRIMARY KEY,
    -- The last key handled; NULL: start from the beginning.
    cursor     TEXT,
    updated_at BIGINT NOT NULL
);

-- How many records and backups each user keeps, for the tiers' count limits (kept with the
-- byte counts, by the same transactions).
ALTER TABLE storage_usage ADD COLUMN record_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE storage_usage ADD COLUMN backup_count BIGINT NOT NULL DEFAULT 0;
UPDATE storage_usage SET
    record_count = (SELECT COUNT(*) FROM storage_records r WHERE r.user_id = storage_usage.user_id),
    backup_count = (SELECT COUNT(*) FROM backup_metadata b WHERE b.user_id = storage_usage.user_id);
