-- Team spaces (issue 21, item 7): a team's end-to-end-encrypted records, with the same
-- versions, checksums, sync numbers, tombstones, quota row and upload flow as a user's own
-- storage. They live in tables of their own, shaped like the personal ones, rather than in
-- storage_records: a team's rows belong to the team (they go with it, ON DELETE CASCADE on
-- teams) and never with their author's account, while a user's own rows go with the user.
-- The storage code is one code path over a "space" that names these tables.

-- A team's record. `author_id` is the member who last wrote it (created it, or updated it
-- since); no foreign key, so the record outlives the author's account. `key_version` is the
-- version of the team key the client encrypted the blob with.
CREATE TABLE team_records (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    s3_key      TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    key_version BIGINT NOT NULL CHECK (key_version >= 1),
    author_id   TEXT NOT NULL,
    -- Numbered from the same counter as personal records (one feed format).
    change_seq  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX team_records_team_created_idx ON team_records (team_id, created_at, id);
CREATE INDEX team_records_team_table_created_idx ON team_records (team_id, table_name, created_at, id);
CREATE INDEX team_records_team_change_idx ON team_records (team_id, change_seq);
CREATE INDEX team_records_key_idx ON team_records (s3_key);

CREATE TRIGGER team_records_change_insert AFTER INSERT ON team_records
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE team_records SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER team_records_change_update
    AFTER UPDATE OF table_name, s3_key, checksum, size_bytes, version, updated_at, key_version, author_id
    ON team_records
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE team_records SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

-- A deleted team record, kept for the retention like a personal tombstone.
CREATE TABLE team_tombstones (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    table_name  TEXT NOT NULL,
    deleted_at  BIGINT NOT NULL,
    change_seq  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX team_tombstones_team_change_idx ON team_tombstones (team_id, change_seq);
CREATE INDEX team_tombstones_deleted_idx ON team_tombstones (deleted_at);

CREATE TRIGGER team_tombstones_change AFTER INSERT ON team_tombstones
BEGIN
    UPDATE storage_change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE team_tombstones SET change_seq = (SELECT seq FROM storage_change_counter WHERE id = 1)
        WHERE rowid = NEW.rowid;
END;

-- One row per team, like storage_usage per user: what the team as a whole holds, reserved
-- with one conditional UPDATE.
CREATE TABLE team_usage (
    team_id                TEXT PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    records_bytes          BIGINT NOT NULL DEFAULT 0 CHECK (records_bytes >= 0),
    backup_bytes           BIGINT NOT NULL DEFAULT 0 CHECK (backup_bytes >= 0),
    record_count           BIGINT NOT NULL DEFAULT 0,
    backup_count           BIGINT NOT NULL DEFAULT 0,
    changes_purged_through BIGINT NOT NULL DEFAULT 0
);

-- An upload into a team's space: `user_id` is the member who started it, `team_id` the space,
-- `key_version` what the record will carry. Personal uploads have neither.
ALTER TABLE pending_uploads ADD COLUMN team_id TEXT REFERENCES teams (id) ON DELETE CASCADE;
ALTER TABLE pending_uploads ADD COLUMN key_version BIGINT;
CREATE INDEX pending_uploads_team_idx ON pending_uploads (team_id);
