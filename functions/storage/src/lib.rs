//! Storage function: end-to-end-encrypted records under `/api/v1/storage/records`, their
//! incremental sync feed (`/api/v1/storage/changes`) and the upload flow for blobs too large
//! for one request (`/api/v1/storage/uploads`); the same for a team's space under
//! `/api/v1/teams/{id}/records`, `/changes` and `/uploads` (`team`). The server
//! verifies checksums and quotas; it never sees plaintext.

mod team;

// The team handlers with their `__path_*` declarations, which `routes!` names.
use team::*;

use adiuva_config::{ConfigError, Context};
use adiuva_error::ErrorKind;
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{
    ApiError, Blob, Function, Json, Path, Query, Result, Routes, StatusCode, paging, routes,
};
use adiuva_pipeline::CurrentUser;
use adiuva_storage::{Changes, Committed, RecordMeta, Storage, UploadRequest, UploadTicket};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Largest `limit` of a list page.
pub const MAX_PAGE_SIZE: u32 = 200;

/// Largest `limit` of a page of changes, and the default.
pub const MAX_CHANGES: u32 = 1000;
pub const DEFAULT_CHANGES: u32 = 500;

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let storage: Storage = context.get()?;
    let routes = Routes::new()
        .routes(routes!(create_record).idempotent())
        .routes(routes!(list_records))
        .routes(routes!(download_record, update_record, delete_record))
        .routes(routes!(changes))
        .routes(routes!(start_upload).idempotent())
        .routes(routes!(commit_upload).idempotent())
        .routes(routes!(create_team_record).idempotent())
        .routes(routes!(list_team_records))
        .routes(routes!(
            download_team_record,
            update_team_record,
            delete_team_record
        ))
        .routes(routes!(team_changes))
        .routes(routes!(start_team_upload).idempotent())
        .routes(routes!(commit_team_upload).idempotent())
        .with_state(storage);
    adiuva_pipeline::authenticated("storage", routes, context)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageRecordCreate {
    /// A short identifier: a lowercase letter, then lowercase letters, digits or `_`, at most
    /// 64 characters.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,63}$"))]
    pub table: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = base64))]
    pub blob: Blob,
    /// Lowercase hex SHA-256 of the decoded `blob`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StorageRecordUpdate {
    #[cfg_attr(feature = "openapi", schema(schema_with = base64))]
    pub blob: Blob,
    /// Lowercase hex SHA-256 of the decoded `blob`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
}

/// Standard base64 with padding, as [`Blob`] decodes it.
#[cfg(feature = "openapi")]
fn base64() -> utoipa::openapi::Object {
    adiuva_http::base64_schema(
        "The encrypted bytes, standard base64 with padding (the whole body is at most \
         `MAX_BODY_BYTES`, 4 MiB by default; larger blobs go through the upload flow).",
    )
    .build()
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Created {
    pub id: String,
    pub created_at: i64,
    pub version: i64,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Updated {
    pub ok: bool,
    pub version: i64,
    pub checksum: String,
    pub updated_at: i64,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub ok: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListQuery {
    /// Only records of this table.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^[a-z][a-z0-9_]{0,63}$"))]
    pub table: Option<String>,
    /// Page number, from 1, by offset (what older clients send; it costs more the further it
    /// goes). Not with `cursor`.
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 4_294_967_295_i64))]
    pub page: Option<u32>,
    /// The page after this cursor: the `X-Next-Cursor` of the page before. Without `page` and
    /// `cursor`, the first page.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^[A-Za-z0-9_-]{1,512}$"))]
    pub cursor: Option<String>,
    /// Records per page, 1 to 200 (default 50).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 200))]
    pub limit: Option<u32>,
}

/// Stores a new encrypted record.
#[adiuva_http::route(post, path = "/api/v1/storage/records", tag = "storage",
    request_body = StorageRecordCreate,
    responses(
        (status = 201, description = "Stored", body = Created),
        (status = 400, description = "Checksum mismatch", body = ErrorBody),
        (status = 402, description = "Over the tier's cloud-storage quota", body = ErrorBody),
        (status = 413, description = "Too large for one request: use the upload flow", body = ErrorBody),
        (status = 422, description = "Invalid table, checksum or base64", body = ErrorBody),
    ))]
async fn create_record(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Json(body): Json<StorageRecordCreate>,
) -> Result<(StatusCode, Json<Created>)> {
    let meta = storage
        .create_record(&caller, &body.table, body.blob.0, &body.checksum)
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

/// Lists the caller's record metadata, newest first (no blobs), a page at a time: when more
/// follow, the next page's cursor is in `X-Next-Cursor` and `Link` (`rel="next"`).
#[adiuva_http::route(get, path = "/api/v1/storage/records", tag = "storage",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of record metadata", body = Vec<RecordMeta>, headers(
            ("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last"),
            ("Link" = String, description = "`<the next page>; rel=\"next\"`; absent on the last"),
        )),
        (status = 422, description = "Invalid table, page, cursor or limit, or both page and cursor", body = ErrorBody),
    ))]
async fn list_records(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<(HeaderMap, Json<Vec<RecordMeta>>)> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 200",
        ));
    }
    let listing = storage
        .list_records(
            &caller.id,
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

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ChangesQuery {
    /// The `next_cursor` of the last page a device read; `0` or none to start a sync.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^(0|[A-Za-z0-9_-]{1,512})$"))]
    pub since: Option<String>,
    /// Changes per page, 1 to 1000 (default 500).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 1000))]
    pub limit: Option<u32>,
}

/// The caller's record changes after `since`, oldest first, each once: a record created or
/// updated (its metadata as now, `deleted: false`) or deleted (a tombstone, `deleted: true`).
/// From `since=0` (or none), every live record and no tombstones. Deletions are remembered for
/// `TOMBSTONE_RETENTION_DAYS` (30 by default); an older cursor is 410, and the device syncs
/// again from `0`. Cursors are opaque, sealed for the caller: another user's is 422.
#[adiuva_http::route(get, path = "/api/v1/storage/changes", tag = "storage",
    params(ChangesQuery),
    responses(
        (status = 200, description = "A page of changes and the cursor to ask with next", body = Changes),
        (status = 410, description = "The cursor is older than the deletions kept, or of the earlier readable format: sync again from 0", body = ErrorBody),
        (status = 422, description = "Invalid cursor (one this feed did not give the caller) or limit", body = ErrorBody),
    ))]
async fn changes(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<Changes>> {
    let limit = query.limit.unwrap_or(DEFAULT_CHANGES);
    if limit == 0 || limit > MAX_CHANGES {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 1000",
        ));
    }
    Ok(Json(
        storage
            .changes(&caller.id, query.since.as_deref(), limit)
            .await?,
    ))
}

/// Downloads a record's encrypted bytes, with `X-Checksum` and the version as `ETag`. A record
/// larger than a Lambda answer may carry is a 307 to a short-lived URL of its bytes (fetch
/// follows it).
#[adiuva_http::route(get, path = "/api/v1/storage/records/{id}", tag = "storage",
    params(("id" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "The encrypted blob", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 307, description = "A large blob: its bytes are at Location for five minutes"),
        (status = 404, description = "No such record of yours", body = ErrorBody),
    ))]
async fn download_record(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Response> {
    let (meta, blob) = storage.record_blob(&caller.id, &id).await?;
    let mut response = octets(storage.download(&blob).await?).into_response();
    let headers = response.headers_mut();
    headers.insert("x-checksum", header_value(&meta.checksum));
    headers.insert(header::ETAG, header_value(&format!("\"{}\"", meta.version)));
    Ok(response)
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The version an `If-Match` header names: `"3"`, `W/"3"` or `3`; `*` and absence mean any.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be the record version, e.g. \"3\"",
        )
    })
}

/// Replaces a record's blob; `If-Match` with a stale version is 412.
#[adiuva_http::route(put, path = "/api/v1/storage/records/{id}", tag = "storage",
    params(("id" = String, Path, description = "Record id"),
           ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|(W/)*"*[+-]?[0-9]{1,19}"*)$"#,
            description = "The version the update replaces: `\"3\"`, `W/\"3\"` or `3`; `*` (or no header) is any version")),
    request_body = StorageRecordUpdate,
    responses(
        (status = 200, description = "Updated", body = Updated),
        (status = 400, description = "Checksum mismatch", body = ErrorBody),
        (status = 402, description = "Growth over the quota", body = ErrorBody),
        (status = 404, description = "No such record of yours", body = ErrorBody),
        (status = 412, description = "The record is at another version", body = ErrorBody),
    ))]
async fn update_record(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StorageRecordUpdate>,
) -> Result<Json<Updated>> {
    let expected = if_match(&headers)?;
    let meta = storage
        .update_record(&caller, &id, body.blob.0, &body.checksum, expected)
        .await?;
    Ok(Json(Updated {
        ok: true,
        version: meta.version,
        checksum: meta.checksum,
        updated_at: meta.updated_at,
    }))
}

/// Deletes a record and its blob.
#[adiuva_http::route(delete, path = "/api/v1/storage/records/{id}", tag = "storage",
    params(("id" = String, Path, description = "Record id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such record of yours", body = ErrorBody),
    ))]
async fn delete_record(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Deleted>> {
    storage.delete_record(&caller.id, &id).await?;
    Ok(Json(Deleted { ok: true }))
}

/// Starts an upload of a blob too large for one request: returns a URL to PUT the bytes to.
#[adiuva_http::route(post, path = "/api/v1/storage/uploads", tag = "storage",
    request_body = UploadRequest,
    responses(
        (status = 201, description = "Upload URL", body = UploadTicket),
        (status = 402, description = "Would exceed the quota", body = ErrorBody),
        (status = 403, description = "A plugin package needs a tier with the plugin marketplace", body = ErrorBody),
        (status = 404, description = "The record to update is not yours or does not exist", body = ErrorBody),
        (status = 409, description = "20 uploads are open already: commit them or let them expire", body = ErrorBody),
        (status = 412, description = "The record is at another version", body = ErrorBody),
        (status = 413, description = "Larger than 5 GiB (a plugin package: 20 MiB)", body = ErrorBody),
        (status = 422, description = "Invalid checksum or table, or a record upload with neither `table` nor `record_id`", body = ErrorBody),
    ))]
async fn start_upload(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<UploadRequest>,
) -> Result<(StatusCode, Json<UploadTicket>)> {
    Ok((
        StatusCode::CREATED,
        Json(storage.start_upload(&caller, request).await?),
    ))
}

/// Verifies size and SHA-256 of the uploaded blob and turns it into a record or a backup.
#[adiuva_http::route(post, path = "/api/v1/storage/uploads/{upload_id}/commit", tag = "storage",
    params(("upload_id" = String, Path, description = "From the upload ticket")),
    responses(
        (status = 200, description = "Committed", body = Committed),
        (status = 400, description = "What was uploaded does not match the size or checksum", body = ErrorBody),
        (status = 402, description = "Over the tier's quota now", body = ErrorBody),
        (status = 403, description = "A plugin package needs a tier with the plugin marketplace", body = ErrorBody),
        (status = 404, description = "No such upload of yours, or expired", body = ErrorBody),
        (status = 409, description = "Nothing was uploaded yet", body = ErrorBody),
        (status = 412, description = "The record moved on since the upload started", body = ErrorBody),
    ))]
async fn commit_upload(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Path(upload_id): Path<String>,
) -> Result<Json<Committed>> {
    Ok(Json(storage.commit_upload(&caller, &upload_id).await?))
}

/// The local server's stand-in for S3 presigned PUTs, for the embedded blob store only: the
/// token in the path was signed by the store and names the one key it may write.
/// Public: the signed token is the credential.
pub fn local_upload_router(storage: Storage) -> Routes {
    Routes::new()
        .public_route(
            "/api/v1/storage/blobs/{token}",
            axum::routing::put(receive_local_upload)
                .get(serve_local_download)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .with_state(storage)
}

/// The embedded store's stand-in for a presigned S3 GET (plugin packages).
async fn serve_local_download(
    State(storage): State<Storage>,
    Path(token): Path<String>,
) -> Result<Response> {
    let Some(local) = storage.blobs().local() else {
        return Err(ApiError::not_found(
            "downloads come from the presigned S3 URL",
        ));
    };
    let key = local.verify_download_token(&token).map_err(|_| {
        ApiError::new(
            ErrorKind::Forbidden,
            "invalid_download_token",
            "the download URL is invalid or expired",
        )
    })?;
    let bytes = local
        .get(&key)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("the blob is gone"))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}

async fn receive_local_upload(
    State(storage): State<Storage>,
    Path(token): Path<String>,
    body: axum::body::Body,
) -> Result<StatusCode> {
    let Some(local) = storage.blobs().local() else {
        return Err(ApiError::not_found("uploads go to the presigned S3 URL"));
    };
    let grant = local.verify_upload_token(&token).map_err(|_| {
        ApiError::new(
            ErrorKind::Forbidden,
            "invalid_upload_token",
            "the upload URL is invalid or expired",
        )
    })?;
    // The token names one key; it writes only while an upload to that key is open (not
    // after its commit, when the record may since have moved on and the key been freed).
    if !storage.upload_open(&grant.key).await? {
        return Err(adiuva_storage::StorageError::UploadClosed.into());
    }
    local
        .put_upload(&grant, body.into_data_stream())
        .await
        .map_err(|err| match err {
            adiuva_blob::BlobError::Failed(source) if source.is::<adiuva_blob::BodyTooLarge>() => {
                ApiError::payload_too_large("more bytes than the upload announced")
            }
            adiuva_blob::BlobError::AlreadyExists => ApiError::new(
                ErrorKind::PreconditionFailed,
                "already_uploaded",
                "this upload URL was used already: start a new upload",
            ),
            adiuva_blob::BlobError::NotAnnounced(what) => ApiError::bad_request(
                "upload_mismatch",
                format!("not the announced bytes: {what}"),
            ),
            other => ApiError::internal(other),
        })?;
    Ok(StatusCode::OK)
}

fn octets(download: adiuva_storage::Download) -> adiuva_http::Octets {
    match download {
        adiuva_storage::Download::Inline(bytes) => adiuva_http::Octets::Bytes(bytes),
        adiuva_storage::Download::Url(url) => adiuva_http::Octets::At(url.url),
    }
}
