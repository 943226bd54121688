-- The record list and the backup history are paged by keyset cursors: each page is a range of
-- an index in the order of the list (newest first), from the last row of the page before.
CREATE INDEX storage_records_user_created_idx ON storage_records (user_id, created_at, id);
CREATE INDEX storage_records_user_table_created_idx ON storage_records (user_id, table_name, created_at, id);
CREATE INDEX backup_metadata_user_history_idx ON backup_metadata (user_id, "timestamp", created_at, id);
DROP INDEX backup_metadata_user_idx;
