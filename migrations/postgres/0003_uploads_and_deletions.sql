-- Presigned uploads of large blobs, waiting for their commit call. The blob is uploaded
-- straight to its final key; the commit verifies size and SHA-256 of what was stored before
-- any record or backup refers to it. Until then the janitor treats the key as in use.
CREATE TABLE pending_uploads (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose          TEXT NOT NULL CHECK (purpose IN ('record', 'backup')),
    -- What the upload becomes: the id of the new or updated record, or of the new backup.
    target_id        TEXT NOT NULL,
    -- record: its table and, for an update, the version it replaces.
    table_name       TEXT,
    expected_version BIGINT,
    -- backup: the client's backup metadata.
    backup_version   BIGINT,
    backup_timestamp BIGINT,
    chunk_count      BIGINT,
    s3_key           TEXT NOT NULL UNIQUE,
    size_bytes       BIGINT NOT NULL CHECK (size_bytes >= 0),
    checksum         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX pending_uploads_user_idx ON pending_uploads (user_id);

-- Deleted accounts. Their rows are gone with the user; blobs and vectors are purged right
-- away and, if that fails, by the janitor, which retries until purged_at is set.
CREATE TABLE account_deletions (
    user_id    TEXT PRIMARY KEY,
    deleted_at BIGINT NOT NULL,
    purged_at  BIGINT
);

CREATE INDEX storage_records_key_idx ON storage_records (s3_key);
CREATE INDEX backup_metadata_key_idx ON backup_metadata (s3_key);
