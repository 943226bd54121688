//! Backup function: `PUT /api/v1/backup` (the encrypted bytes as the body, metadata in
//! `X-Backup-*` headers), `GET /api/v1/backup` (latest, with `If-Modified-Since`),
//! `GET /api/v1/backup/history` and `DELETE /api/v1/backup/{backup_id}`. Backups too large for
//! one request go through the storage function's upload flow with `"purpose": "backup"`.

use std::time::{Duration, UNIX_EPOCH};

use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{
    ApiError, Function, Json, Path, Query, RawBody, Result, Routes, StatusCode, routes,
};
use adiuva_pipeline::CurrentUser;
use adiuva_storage::{BackupMeta, NewBackup, Storage};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let storage: Storage = context.get()?;
    let routes = Routes::new()
        .routes(routes!(put_backup, latest_backup))
        .routes(routes!(backup_history))
        .routes(routes!(delete_backup))
        .with_state(storage);
    adiuva_pipeline::authenticated("backup", routes, context)
}

const VERSION: &str = "x-backup-version";
const TIMESTAMP: &str = "x-backup-timestamp";
const CHECKSUM: &str = "x-backup-checksum";
const CHUNK_COUNT: &str = "x-backup-chunk-count";

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stored {
    pub ok: bool,
    #[serde(flatten)]
    pub backup: BackupMeta,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub ok: bool,
}

/// The encrypted backup, as raw bytes.
#[derive(Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Binary))]
pub struct BackupBytes(pub Vec<u8>);

fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("missing_header", format!("the {name} header is required"))
        })
}

fn header_number(headers: &HeaderMap, name: &'static str) -> Result<i64> {
    header_text(headers, name)?
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_header",
                format!("{name} must be a non-negative integer"),
            )
        })
}

/// Uploads an encrypted backup.
#[adiuva_http::route(put, path = "/api/v1/backup", tag = "backup",
    params(
        ("X-Backup-Version" = i64, Header, minimum = 0,
         description = "The client's backup format version, a non-negative integer"),
        ("X-Backup-Timestamp" = i64, Header, minimum = 0, maximum = 253_402_300_799_999_i64,
         description = "When the backup was made, ms since the epoch, before the year 10000"),
        ("X-Backup-Checksum" = String, Header, pattern = "^[0-9a-f]{64}$",
         description = "Lowercase hex SHA-256 of the body"),
        ("X-Backup-Chunk-Count" = Option<i64>, Header, nullable = false, minimum = 1, maximum = 100_000,
         description = "Chunks in the backup, 1 to 100000 (default 1)"),
    ),
    request_body(content = BackupBytes, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = Stored),
        (status = 400, description = "Missing header or checksum mismatch", body = ErrorBody),
        (status = 402, description = "No backups in this tier, or over the backup quota", body = ErrorBody),
        (status = 413, description = "Too large for one request: use the upload flow", body = ErrorBody),
        (status = 422, description = "A header that is not a number in its range (`invalid_header`, `validation_error`), or a malformed checksum", body = ErrorBody),
    ))]
async fn put_backup(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Stored>)> {
    let backup = NewBackup {
        version: header_number(&headers, VERSION)?,
        timestamp: header_number(&headers, TIMESTAMP)?,
        checksum: header_text(&headers, CHECKSUM)?.to_owned(),
        chunk_count: if headers.contains_key(CHUNK_COUNT) {
            header_number(&headers, CHUNK_COUNT)?
        } else {
            1
        },
    };
    let backup = storage.put_backup(&caller, backup, body).await?;
    Ok((StatusCode::CREATED, Json(Stored { ok: true, backup })))
}

/// Downloads the latest backup; `If-Modified-Since` answers 304 when it is not newer. A backup
/// larger than a Lambda answer may carry is a 307 to a short-lived URL of its bytes (fetch
/// follows it; the `X-Backup-*` headers are on the 307 and in the history).
#[adiuva_http::route(get, path = "/api/v1/backup", tag = "backup",
    params(("If-Modified-Since" = Option<String>, Header, nullable = false,
        description = "An HTTP date; one that does not parse is ignored")),
    responses(
        (status = 200, description = "The latest backup's bytes, metadata in X-Backup-* headers",
         content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified since the given date"),
        (status = 307, description = "A large backup: its bytes are at Location for five minutes"),
        (status = 404, description = "No backup yet", body = ErrorBody),
    ))]
async fn latest_backup(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    headers: HeaderMap,
) -> Result<Response> {
    let (meta, blob) = storage
        .latest_backup(&caller.id)
        .await?
        .ok_or_else(|| ApiError::not_found("no backup yet"))?;
    let made_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(meta.timestamp).unwrap_or(0));
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    // HTTP dates have second precision: not modified unless newer by a whole second.
    let not_modified = since.is_some_and(|since| {
        made_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            <= since
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
    });
    let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(made_at)).ok();
    // The blob is touched only when its bytes are wanted.
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        octets(storage.download(&blob).await?).into_response()
    };
    let out = response.headers_mut();
    if let Some(value) = last_modified {
        out.insert(header::LAST_MODIFIED, value);
    }
    for (name, value) in [
        (VERSION, meta.version.to_string()),
        (TIMESTAMP, meta.timestamp.to_string()),
        (CHECKSUM, meta.checksum.clone()),
        (CHUNK_COUNT, meta.chunk_count.to_string()),
        ("x-backup-id", meta.id.clone()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

/// `?page` (from 1) or `?cursor`, and `?limit` (1 to 500, default 100) of the history.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HistoryQuery {
    /// Page number, from 1, by offset (what older clients send). Not with `cursor`.
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 4_294_967_295_i64))]
    pub page: Option<u32>,
    /// The page after this cursor: the `X-Next-Cursor` of the page before. Without `page` and
    /// `cursor`, the first page.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^[A-Za-z0-9_-]{1,512}$"))]
    pub cursor: Option<String>,
    /// Backups per page, 1 to 500 (default 100).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 500))]
    pub limit: Option<u32>,
}

/// Metadata of the backups, newest first, a page at a time (100 by default): when more follow,
/// the next page's cursor is in `X-Next-Cursor` and `Link` (`rel="next"`).
#[adiuva_http::route(get, path = "/api/v1/backup/history", tag = "backup",
    params(HistoryQuery),
    responses(
        (status = 200, description = "Backups, newest first", body = Vec<BackupMeta>, headers(
            ("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last"),
            ("Link" = String, description = "`<the next page>; rel=\"next\"`; absent on the last"),
        )),
        (status = 422, description = "Invalid page, cursor or limit, or both page and cursor", body = ErrorBody),
    ))]
async fn backup_history(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    uri: axum::http::Uri,
    Query(query): Query<HistoryQuery>,
) -> Result<(axum::http::HeaderMap, Json<Vec<BackupMeta>>)> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 500",
        ));
    }
    let listing = storage
        .backup_history(&caller.id, query.page, query.cursor.as_deref(), limit)
        .await?;
    Ok((
        adiuva_http::paging::next_page(&uri, listing.next.as_deref()),
        Json(listing.items),
    ))
}

/// Deletes one backup.
#[adiuva_http::route(delete, path = "/api/v1/backup/{backup_id}", tag = "backup",
    params(("backup_id" = String, Path, description = "An id from the history")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such backup of yours", body = ErrorBody),
    ))]
async fn delete_backup(
    State(storage): State<Storage>,
    CurrentUser(caller): CurrentUser,
    Path(backup_id): Path<String>,
) -> Result<Json<Deleted>> {
    storage.delete_backup(&caller.id, &backup_id).await?;
    Ok(Json(Deleted { ok: true }))
}

fn octets(download: adiuva_storage::Download) -> adiuva_http::Octets {
    match download {
        adiuva_storage::Download::Inline(bytes) => adiuva_http::Octets::Bytes(bytes),
        adiuva_storage::Download::Url(url) => adiuva_http::Octets::At(url.url),
    }
}
