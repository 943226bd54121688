-- Incremental sync (GET /api/v1/storage/changes): every write of a record takes the next
-- number of one counter, and so does every deletion, which leaves a tombstone. A device asks
-- for the changes after the last number it saw. SQLite has one writer at a time, so changes
-- commit in the order of their numbers.
-- The numbers come from the database (triggers), so rows written by other tools take part too.
CREATE TABLE storage_change_counter (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL
);

ALTER TABLE storage_records ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
UPDATE storage_records SET change_seq = rowid;
INSERT INTO storage_change_counter (id, seq) SELECT 1, COALESCE(MAX(change_seq), 0) FROM storage_records;
CREATE INDEX storage_records_user_change_idx ON storage_records (user_id, change_seq);

CREATE TRIGGER storage_records_change_insert AFTER INSERT ON storage_records
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE storage_records SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER storage_records_change_update
    AFTER UPDATE OF table_name, s3_key, checksum, size_bytes, version, updated_at ON storage_records
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE storage_records SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

-- A deleted record, kept for the retention (TOMBSTONE_RETENTION_DAYS) so that devices learn of
-- the deletion; the janitor removes older ones.
CREATE TABLE storage_tombstones (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    deleted_at  BIGINT NOT NULL,
    change_seq  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX storage_tombstones_user_change_idx ON storage_tombstones (user_id, change_seq);
CREATE INDEX storage_tombstones_deleted_idx ON storage_tombstones (deleted_at);

CREATE TRIGGER storage_tombstones_change AFTER INSERT ON storage_tombstones
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE storage_tombstones SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

-- The highest change number of the user's tombstones the janitor removed: a cursor below it may
-- have missed a deletion (410, sync again from 0).
ALTER TABLE storage_usage ADD COLUMN changes_purged_through BIGINT NOT NULL DEFAULT 0;
