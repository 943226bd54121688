-- Incremental sync (GET /api/v1/storage/changes): every write of a record takes the next
-- number of one sequence, and so does every deletion, which leaves a tombstone. A device asks
-- for the changes after the last number it saw. Writes of one user are ordered by the lock on
-- their storage_usage row, which each write takes before its number, so a user's changes commit
-- in the order of their numbers and a reader never skips one that commits late.
-- The numbers come from the database (a default and a trigger), so rows written by other tools
-- take part too.
CREATE SEQUENCE storage_change_seq;

ALTER TABLE storage_records ADD COLUMN change_seq BIGINT NOT NULL DEFAULT nextval('storage_change_seq');
CREATE INDEX storage_records_user_change_idx ON storage_records (user_id, change_seq);

CREATE FUNCTION storage_records_next_change() RETURNS trigger AS $$
BEGIN
    NEW.change_seq := nextval('storage_change_seq');
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER storage_records_change BEFORE UPDATE OF table_name, s3_key, checksum, size_bytes, version, updated_at
    ON storage_records FOR EACH ROW EXECUTE FUNCTION storage_records_next_change();

-- A deleted record, kept for the retention (TOMBSTONE_RETENTION_DAYS) so that devices learn of
-- the deletion; the janitor removes older ones.
CREATE TABLE storage_tombstones (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    deleted_at  BIGINT NOT NULL,
    change_seq  BIGINT NOT NULL DEFAULT nextval('storage_change_seq')
);
CREATE INDEX storage_tombstones_user_change_idx ON storage_tombstones (user_id, change_seq);
CREATE INDEX storage_tombstones_deleted_idx ON storage_tombstones (deleted_at);

-- The highest change number of the user's tombstones the janitor removed: a cursor below it may
-- have missed a deletion (410, sync again from 0).
ALTER TABLE storage_usage ADD COLUMN changes_purged_through BIGINT NOT NULL DEFAULT 0;
