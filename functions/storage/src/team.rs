//! Team spaces under `/api/v1/teams/{id}/...`: the routes of personal storage over a team's
//! space (records, the changes feed, the upload flow), with `key_version` in every write and
//! `key_version` and `author_id` in every record's metadata. Every route first admits the
//! caller as a member of the team ([`Member`]); anyone else gets 404 before any other check.

#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{ApiError, Blob, Json, Path, Query, Result, StatusCode, paging};
use adiuva_pipeline::CurrentUser;
use adiuva_storage::{
    Storage, TeamChanges, TeamCommitted, TeamMember, TeamRecordMeta, TeamUploadRequest,
    UploadTicket,
};
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{
    ChangesQuery, Created, DEFAULT_CHANGES, Deleted, ListQuery, MAX_CHANGES, MAX_PAGE_SIZE,
    Updated, header_value, if_match, octets,
};

/// The caller admitted to the space of the team in the path (`{id}`): a member of any role,
/// looked up on every request. Extracted before the query and the body, so that a non-member
/// gets 404 `not_found` whatever else the request holds.
pub struct Member(pub TeamMember);

impl FromRequestParts<Storage> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, storage: &Storage) -> Result<Self> {
        let CurrentUser(caller) = CurrentUser::from_request_parts(parts, storage).await?;
        let params = RawPathParams::from_request_parts(parts, storage)
            .await
            .map_err(|_| ApiError::internal("a team route without its path parameters"))?;
        let team_id = params
            .iter()
            .find_map(|(name, value)| (name == "id").then_some(value))
            .ok_or_else(|| ApiError::internal("a team route without {id}"))?;
        Ok(Self(storage.team_member(&caller, team_id).await?))
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRecordCreate {
    /// A short identifier: a lowercase letter, then lowercase letters, digits or `_`, at most
    /// 64 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,63}$"))]
    pub table: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::base64))]
    pub blob: Blob,
    /// Lowercase hex SHA-256 of the decoded `blob`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
    /// The version of the team key the blob is encrypted with, from 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub key_version: i64,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRecordUpdate {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::base64))]
    pub blob: Blob,
    /// Lowercase hex SHA-256 of the decoded `blob`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
    /// The version of the team key the new blob is encrypted with, from 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub key_version: i64,
}

/// Stores a new encrypted record in the team's space; the caller becomes its author.
#[adiuva_http::route(post, path = "/api/v1/teams/{id}/records", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    request_body = TeamRecordCreate,
    responses(
        (status = 201, description = "Stored", body = Created),
        (status = 400, description = "Checksum mismatch", body = ErrorBody),
        (status = 402, description = "Over the team's cloud-storage quota (an inactive team has the free tier's: none)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 413, description = "Too large for one request: use the upload flow", body = ErrorBody),
        (status = 422, description = "Invalid table, checksum, base64 or key_version (required, from 1)", body = ErrorBody),
    ))]
pub(crate) async fn create_team_record(
    State(storage): State<Storage>,
    Member(member): Member,
    Json(body): Json<TeamRecordCreate>,
) -> Result<(StatusCode, Json<Created>)> {
    let meta = storage
        .create_team_record(
            &member,
            &body.table,
            body.blob.0,
            &body.checksum,
            body.key_version,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: meta.id,
            created_at: meta.created_at,
            version: meta.version,
        }),
    ))
}

/// Lists the team's record metadata, newest first (no blobs), a page at a time, as the
/// caller's own records are listed: when more follow, the next page's cursor is in
/// `X-Next-Cursor` and `Link` (`rel="next"`).
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/records", tag = "teams",
    params(("id" = String, Path, description = "Team id"), ListQuery),
    responses(
        (status = 200, description = "A page of the team's record metadata", body = Vec<TeamRecordMeta>, headers(
            ("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last"),
            ("Link" = String, description = "`<the next page>; rel=\"next\"`; absent on the last"),
        )),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 422, description = "Invalid table, page, cursor or limit, or both page and cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_team_records(
    State(storage): State<Storage>,
    Member(member): Member,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<(HeaderMap, Json<Vec<TeamRecordMeta>>)> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 200",
        ));
    }
    let listing = storage
        .list_team_records(
            &member,
            query.table.as_deref(),
            query.page,
            query.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok((
        paging::next_page(&uri, listing.next.as_deref()),
        Json(listing.items),
    ))
}

/// The team's record changes after `since`, oldest first, each once, exactly as the caller's
/// own feed (`/storage/changes`): records with their metadata as now (with `key_version` and
/// `author_id`), tombstones after a cursor, 410 for a cursor older than the deletions kept.
/// Cursors are sealed for the team: one of another team, or of anyone's own storage, is 422.
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/changes", tag = "teams",
    params(("id" = String, Path, description = "Team id"), ChangesQuery),
    responses(
        (status = 200, description = "A page of the team's changes and the cursor to ask with next", body = TeamChanges),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 410, description = "The cursor is older than the deletions kept: sync again from 0", body = ErrorBody),
        (status = 422, description = "Invalid cursor (one this feed did not give for this team) or limit", body = ErrorBody),
    ))]
pub(crate) async fn team_changes(
    State(storage): State<Storage>,
    Member(member): Member,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<TeamChanges>> {
    let limit = query.limit.unwrap_or(DEFAULT_CHANGES);
    if limit == 0 || limit > MAX_CHANGES {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 1000",
        ));
    }
    Ok(Json(
        storage
            .team_changes(&member, query.since.as_deref(), limit)
            .await?,
    ))
}

/// Downloads a team record's encrypted bytes, with `X-Checksum`, the version as `ETag`,
/// `X-Key-Version` (the team key it is encrypted with) and `X-Author-Id`. A record larger than
/// a Lambda answer may carry is a 307 to a short-lived URL of its bytes.
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/records/{record_id}", tag = "teams",
    params(("id" = String, Path, description = "Team id"),
           ("record_id" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "The encrypted blob", content_type = "application/octet-stream", body = Vec<u8>, headers(
            ("X-Checksum" = String, description = "Lowercase hex SHA-256 of the blob"),
            ("X-Key-Version" = i64, description = "The version of the team key the blob is encrypted with"),
            ("X-Author-Id" = String, description = "The member who last wrote the record"),
        )),
        (status = 307, description = "A large blob: its bytes are at Location for five minutes"),
        (status = 404, description = "No such team of yours, or no such record in it", body = ErrorBody),
    ))]
pub(crate) async fn download_team_record(
    State(storage): State<Storage>,
    Member(member): Member,
    Path((_, record_id)): Path<(String, String)>,
) -> Result<Response> {
    let (meta, blob) = storage.team_record_blob(&member, &record_id).await?;
    let mut response = octets(storage.download(&blob).await?).into_response();
    let headers = response.headers_mut();
    headers.insert("x-checksum", header_value(&meta.checksum));
    headers.insert(header::ETAG, header_value(&format!("\"{}\"", meta.version)));
    headers.insert("x-key-version", header_value(&meta.key_version.to_string()));
    headers.insert("x-author-id", header_value(&meta.author_id));
    Ok(response)
}

/// Replaces a team record's blob (the caller becomes its author); `If-Match` with a stale
/// version is 412.
#[adiuva_http::route(put, path = "/api/v1/teams/{id}/records/{record_id}", tag = "teams",
    params(("id" = String, Path, description = "Team id"),
           ("record_id" = String, Path, description = "Record id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)*"*[+-]?[0-9]{1,19}"*)$"#,
            description = "The version the update replaces: `\"3\"`, `W/\"3\"` or `3`; `*` (or no header) is any version")),
    request_body = TeamRecordUpdate,
    responses(
        (status = 200, description = "Updated", body = Updated),
        (status = 400, description = "Checksum mismatch, or an unreadable If-Match", body = ErrorBody),
        (status = 402, description = "Growth over the team's quota", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such record in it", body = ErrorBody),
        (status = 412, description = "The record is at another version", body = ErrorBody),
        (status = 422, description = "Invalid checksum, base64 or key_version (required, from 1)", body = ErrorBody),
    ))]
pub(crate) async fn update_team_record(
    State(storage): State<Storage>,
    Member(member): Member,
    Path((_, record_id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<TeamRecordUpdate>,
) -> Result<Json<Updated>> {
    let expected = if_match(&headers)?;
    let meta = storage
        .update_team_record(
            &member,
            &record_id,
            body.blob.0,
            &body.checksum,
            body.key_version,
            expected,
        )
        .await?;
    Ok(Json(Updated {
        ok: true,
        version: meta.version,
        checksum: meta.checksum,
        updated_at: meta.updated_at,
    }))
}

/// Deletes a team record and its blob, leaving a tombstone in the team's feed.
#[adiuva_http::route(delete, path = "/api/v1/teams/{id}/records/{record_id}", tag = "teams",
    params(("id" = String, Path, description = "Team id"),
           ("record_id" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such team of yours, or no such record in it", body = ErrorBody),
    ))]
pub(crate) async fn delete_team_record(
    State(storage): State<Storage>,
    Member(member): Member,
    Path((_, record_id)): Path<(String, String)>,
) -> Result<Json<Deleted>> {
    storage.delete_team_record(&member, &record_id).await?;
    Ok(Json(Deleted { ok: true }))
}

/// Starts an upload of a blob too large for one request into the team's space: returns a URL
/// to PUT the bytes to, as `/storage/uploads` does for a record.
#[adiuva_http::route(post, path = "/api/v1/teams/{id}/uploads", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    request_body = TeamUploadRequest,
    responses(
        (status = 201, description = "Upload URL", body = UploadTicket),
        (status = 402, description = "Would exceed the team's quota", body = ErrorBody),
        (status = 404, description = "No such team of yours, or the record to update is not in it", body = ErrorBody),
        (status = 409, description = "20 uploads of the team are open already: commit them or let them expire", body = ErrorBody),
        (status = 412, description = "The record is at another version", body = ErrorBody),
        (status = 413, description = "Larger than 5 GiB", body = ErrorBody),
        (status = 422, description = "Invalid checksum, table or key_version, or neither `table` nor `record_id`", body = ErrorBody),
    ))]
pub(crate) async fn start_team_upload(
    State(storage): State<Storage>,
    Member(member): Member,
    Json(request): Json<TeamUploadRequest>,
) -> Result<(StatusCode, Json<UploadTicket>)> {
    Ok((
        StatusCode::CREATED,
        Json(storage.start_team_upload(&member, request).await?),
    ))
}

/// Verifies size and SHA-256 of the uploaded blob and turns it into a team record (or a
/// record's new blob), written by the caller.
#[adiuva_http::route(post, path = "/api/v1/teams/{id}/uploads/{upload_id}/commit", tag = "teams",
    params(("id" = String, Path, description = "Team id"),
           ("upload_id" = String, Path, description = "From the upload ticket")),
    responses(
        (status = 200, description = "Committed", body = TeamCommitted),
        (status = 400, description = "What was uploaded does not match the size or checksum", body = ErrorBody),
        (status = 402, description = "Over the team's quota now", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such upload of it, or expired", body = ErrorBody),
        (status = 409, description = "Nothing was uploaded yet", body = ErrorBody),
        (status = 412, description = "The record moved on since the upload started", body = ErrorBody),
    ))]
pub(crate) async fn commit_team_upload(
    State(storage): State<Storage>,
    Member(member): Member,
    Path((_, upload_id)): Path<(String, String)>,
) -> Result<Json<TeamCommitted>> {
    Ok(Json(storage.commit_team_upload(&member, &upload_id).await?))
}
