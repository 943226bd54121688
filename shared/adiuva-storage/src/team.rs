//! Team spaces (issue 21, item 7): a team's records, its sync feed and its large-blob uploads.
//! The same code as a user's own storage ([`crate::space`]); what differs is who may enter
//! (any member of the team, checked on every request: anyone else is `TeamNotFound`, 404,
//! before anything else, so a team's existence does not leak), whose quotas apply (the
//! team's tier, counted for the team as a whole), and the metadata each record carries
//! (`key_version`, `author_id`).

use adiuva_access::Caller;
use adiuva_checksum::Digested;
use serde::{Deserialize, Serialize};

use crate::changes::{ChangePage, ChangeRow};
use crate::cursor::Listing;
use crate::records::{TeamRecordMeta, validate_key_version};
use crate::space::{Space, Writer, space_sql, team_tier};
use crate::uploads::{MAX_UPLOAD_BYTES, PendingUpload, UploadTicket};
use crate::{BlobRef, Storage, StorageError};
use adiuva_teams::Teams;

/// A member of a team, admitted to its space for one request.
#[derive(Debug, Clone)]
pub struct TeamMember {
    team_id: String,
    user_id: String,
}

impl TeamMember {
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    fn space(&self) -> Space<'_> {
        Space::Team(&self.team_id)
    }

    /// The member writing, under the team's tier as it is now.
    async fn writer(
        &self,
        storage: &Storage,
        key_version: Option<i64>,
    ) -> Result<Writer<'_>, StorageError> {
        Ok(Writer {
            space: self.space(),
            tier: team_tier(&storage.inner.db, &self.team_id).await?,
            author: &self.user_id,
            key_version,
        })
    }
}

/// One change of a team's space: a record as it is now, or the tombstone of a deleted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum TeamChange {
    Record(TeamRecordChange),
    Deleted(crate::Tombstone),
}

/// A team record created or updated after the cursor: its metadata as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRecordChange {
    pub id: String,
    pub table: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of the encrypted blob.
    pub checksum: String,
    pub size_bytes: i64,
    pub updated_at: i64,
    /// The version of the team key the blob is encrypted with.
    pub key_version: i64,
    /// The member who last wrote the record.
    pub author_id: String,
    /// Always `false`.
    pub deleted: bool,
}

/// A page of a team's changes and the cursor to ask with next.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamChanges {
    pub changes: Vec<TeamChange>,
    /// The `since` of the next request, sealed for this team: another team's space, or
    /// anyone's own storage, refuses it (422).
    pub next_cursor: String,
    /// More changes follow this page: ask again with `next_cursor` now.
    pub has_more: bool,
}

impl ChangeRow {
    fn into_team_change(self) -> TeamChange {
        if self.deleted != 0 {
            TeamChange::Deleted(crate::Tombstone {
                id: self.id,
                table: self.table_name,
                deleted_at: self.updated_at,
                deleted: true,
            })
        } else {
            TeamChange::Record(TeamRecordChange {
                id: self.id,
                table: self.table_name,
                version: self.version.unwrap_or_default(),
                checksum: self.checksum.unwrap_or_default(),
                size_bytes: self.size_bytes.unwrap_or_default(),
                updated_at: self.updated_at,
                key_version: self.key_version.unwrap_or_default(),
                author_id: self.author_id.unwrap_or_default(),
                deleted: false,
            })
        }
    }
}

/// A large blob about to be uploaded into a team's space: a new record (give `table`) or a new
/// blob for an existing one (give `record_id`, and `if_match` to refuse it if the record moved
/// on). With neither, 422.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamUploadRequest {
    /// The new record's table (read when there is no `record_id`): a lowercase letter, then
    /// lowercase letters, digits or `_`, at most 64 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,63}$"))]
    pub table: Option<String>,
    /// The record whose blob the upload replaces.
    pub record_id: Option<String>,
    /// The version the upload replaces (with `record_id`); another one is 412.
    pub if_match: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(schema_with = size_bytes))]
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the blob.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
    /// The version of the team key the blob is encrypted with, from 1; the record carries it
    /// once committed.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub key_version: i64,
}

/// A size in bytes, bounded in its description only (past it the answer is 413, and no
/// integer `format`: sizes up to 2^64 - 1 parse), as personal uploads document theirs.
#[cfg(feature = "openapi")]
fn size_bytes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .description(Some(
            "The exact size in bytes: at most 5 GiB (5368709120); more is 413.",
        ))
        .build()
}

/// What a team upload's commit produced.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum TeamCommitted {
    Record { record: TeamRecordMeta },
}

impl Storage {
    /// Admits `caller` to the space of `team_id`: a member of any role. Anyone else (an
    /// outsider, a removed member, a member of another team) and a team that does not exist
    /// are `TeamNotFound` (404), alike. Asked on every request, through the teams domain's
    /// one membership lookup, so a removal takes effect at once.
    pub async fn team_member(
        &self,
        caller: &Caller,
        team_id: &str,
    ) -> Result<TeamMember, StorageError> {
        Teams::new(self.inner.db.clone())
            .membership(team_id, &caller.id)
            .await?
            .ok_or(StorageError::TeamNotFound)?;
        Ok(TeamMember {
            team_id: team_id.to_owned(),
            user_id: caller.id.clone(),
        })
    }

    /// Stores a new record in the team's space, written by `member`.
    pub async fn create_team_record(
        &self,
        member: &TeamMember,
        table: &str,
        blob: Digested,
        checksum: &str,
        key_version: i64,
    ) -> Result<TeamRecordMeta, StorageError> {
        let key_version = validate_key_version(Some(key_version))?;
        let writer = member.writer(self, Some(key_version)).await?;
        Ok(self.create_in(writer, table, blob, checksum).await?.into())
    }

    /// The team's records, as [`Storage::list_records`] lists a user's.
    pub async fn list_team_records(
        &self,
        member: &TeamMember,
        table: Option<&str>,
        page: Option<u32>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Listing<TeamRecordMeta>, StorageError> {
        let listing = self
            .list_in(member.space(), table, page, cursor, limit)
            .await?;
        Ok(Listing {
            items: listing.items.into_iter().map(Into::into).collect(),
            next: listing.next,
        })
    }

    /// A team record's metadata and its blob, which [`Storage::download`] reads.
    pub async fn team_record_blob(
        &self,
        member: &TeamMember,
        record_id: &str,
    ) -> Result<(TeamRecordMeta, BlobRef), StorageError> {
        let (record, blob) = self.blob_in(member.space(), record_id).await?;
        Ok((record.into(), blob))
    }

    /// Replaces a team record's blob (`member` becomes its author). With `if_match`, a record
    /// that moved on is `VersionConflict`.
    pub async fn update_team_record(
        &self,
        member: &TeamMember,
        record_id: &str,
        blob: Digested,
        checksum: &str,
        key_version: i64,
        if_match: Option<i64>,
    ) -> Result<TeamRecordMeta, StorageError> {
        let key_version = validate_key_version(Some(key_version))?;
        let writer = member.writer(self, Some(key_version)).await?;
        Ok(self
            .update_in(writer, record_id, blob, checksum, if_match)
            .await?
            .into())
    }

    /// Deletes a team record, leaving a tombstone in the team's feed.
    pub async fn delete_team_record(
        &self,
        member: &TeamMember,
        record_id: &str,
    ) -> Result<(), StorageError> {
        self.delete_in(member.space(), record_id).await
    }

    /// The team's changes after `since` (a `next_cursor` this feed gave for this team).
    pub async fn team_changes(
        &self,
        member: &TeamMember,
        since: Option<&str>,
        limit: u32,
    ) -> Result<TeamChanges, StorageError> {
        let ChangePage {
            rows,
            next_cursor,
            has_more,
        } = self.changes_in(member.space(), since, limit).await?;
        Ok(TeamChanges {
            changes: rows.into_iter().map(ChangeRow::into_team_change).collect(),
            next_cursor,
            has_more,
        })
    }

    /// Starts an upload into the team's space, as [`Storage::start_upload`] does for a
    /// user's record (the team's open uploads and quota count).
    pub async fn start_team_upload(
        &self,
        member: &TeamMember,
        request: TeamUploadRequest,
    ) -> Result<UploadTicket, StorageError> {
        adiuva_checksum::parse(&request.checksum)?;
        let key_version = validate_key_version(Some(request.key_version))?;
        if request.size_bytes > MAX_UPLOAD_BYTES {
            return Err(StorageError::TooLarge {
                limit: MAX_UPLOAD_BYTES,
            });
        }
        let writer = member.writer(self, Some(key_version)).await?;
        self.check_open_uploads(writer.space).await?;
        let mut pending = PendingUpload::new(request.size_bytes, request.checksum);
        self.prepare_record_upload(
            writer,
            request.table,
            request.record_id,
            request.if_match,
            request.size_bytes,
            &mut pending,
        )
        .await?;
        self.open_upload(writer, pending, request.size_bytes).await
    }

    /// Verifies a team upload and makes it a record (or a record's new blob) of the team,
    /// written by the member who commits it, with the key version the upload announced.
    pub async fn commit_team_upload(
        &self,
        member: &TeamMember,
        upload_id: &str,
    ) -> Result<TeamCommitted, StorageError> {
        let pending = self.verified_upload(member.space(), upload_id).await?;
        let writer = member.writer(self, pending.key_version).await?;
        let record = self
            .finish_record_upload(writer, upload_id, &pending)
            .await?;
        tracing::info!(
            team_id = member.team_id,
            user_id = member.user_id,
            upload_id,
            "team upload committed"
        );
        Ok(TeamCommitted::Record {
            record: record.into(),
        })
    }

    /// Purges a team's space: its records, tombstones, usage row and pending uploads in one
    /// transaction, then every blob under its prefix. Users' own storage and other teams'
    /// spaces are untouched. `DELETE /teams/{id}` calls it before the team's row goes. A blob
    /// that cannot be deleted now is unreferenced once the rows are gone, and the janitor
    /// removes it after the grace period. Returns how many blobs were deleted.
    pub async fn purge_team_space(&self, team_id: &str) -> Result<usize, StorageError> {
        let space = Space::Team(team_id);
        let mut tx = self.inner.db.pool().begin().await?;
        sqlx::query("DELETE FROM pending_uploads WHERE team_id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await?;
        for sql in [
            space_sql!(space, "DELETE FROM {records} WHERE {owner} = $1"),
            space_sql!(space, "DELETE FROM {tombstones} WHERE {owner} = $1"),
            space_sql!(space, "DELETE FROM {usage} WHERE {owner} = $1"),
        ] {
            sqlx::query(sql).bind(team_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let blobs = self.inner.blobs.list(&space.key_prefix()).await?;
        for blob in &blobs {
            self.inner.blobs.delete(&blob.key).await?;
        }
        tracing::info!(team_id, blobs = blobs.len(), "team space purged");
        Ok(blobs.len())
    }
}
