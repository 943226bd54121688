//! Vectors function: each user's encrypted vector store under `/api/v1/storage/vectors`.
//! Points carry an encrypted blob (returned verbatim by search) and either the client's own
//! vector (which may be secretly rotated: cosine similarity survives) or, for compatibility with
//! the reference, a 32-dim vector derived from the SHA-256 of the blob. Search only ever
//! sees the caller's points.
//!
//! The handlers translate JSON to and from `adiuva-vector-space`, which checks the requests,
//! keeps each user's vector size and quotas in the database, and writes the vector store.

use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{Base64, Function, Json, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
#[cfg(feature = "openapi")]
use adiuva_vector_space::{DIMENSIONS, MAX_BLOB_BYTES};
use adiuva_vector_space::{NewPoint, SearchHit, VectorSpaces};
use axum::extract::State;
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, Type};

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let spaces: VectorSpaces = context.get()?;
    let routes = Routes::new()
        .routes(routes!(upsert))
        .routes(routes!(search))
        .routes(routes!(delete))
        .with_state(spaces);
    adiuva_pipeline::authenticated("vectors", routes, context)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorItem {
    /// The client's id of the point, unique per user, 1 to 256 bytes (UTF-8).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub id: String,
    /// Encrypted vector metadata, standard base64, at most 256 KiB decoded; returned verbatim
    /// by search. Its decoded size counts against the tier's vector quota.
    #[cfg_attr(feature = "openapi", schema(schema_with = point_blob))]
    pub blob: Base64,
    /// Lowercase hex SHA-256 of the decoded blob.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub checksum: String,
    /// Optional client-computed vector of 32, 256, 384, 512, 768, 1024, 1536 or 3072
    /// dimensions; without it the reference's 32-dim SHA-256 vector is used. Every vector of
    /// an account has the size of its first.
    #[cfg_attr(feature = "openapi", schema(schema_with = vector))]
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorUpsertRequest {
    /// 1 to 500 points, all of one vector size.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub vectors: Vec<VectorItem>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upserted {
    pub upserted: usize,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorSearchRequest {
    /// Encrypted query, standard base64. Without `vector`, its SHA-256 vector is the query.
    #[cfg_attr(feature = "openapi", schema(schema_with = query_blob))]
    pub query_blob: Base64,
    /// 1 to 100, default 10.
    #[serde(default = "default_top_k")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, default = 10))]
    pub top_k: usize,
    /// Of the size of the account's vectors: 32, 256, 384, 512, 768, 1024, 1536 or 3072
    /// dimensions.
    #[cfg_attr(feature = "openapi", schema(schema_with = vector))]
    pub vector: Option<Vec<f32>>,
}

fn default_top_k() -> usize {
    10
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorSearchResult {
    pub id: String,
    pub score: f32,
    pub blob: Base64,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorSearchResponse {
    pub results: Vec<VectorSearchResult>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VectorDeleteRequest {
    /// At most 1000 ids.
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    pub ok: bool,
}

/// A point's blob: at most [`MAX_BLOB_BYTES`] decoded, so at most its base64 length.
#[cfg(feature = "openapi")]
fn point_blob() -> ObjectBuilder {
    adiuva_http::base64_schema(
        "Encrypted vector metadata, standard base64, at most 256 KiB decoded; returned \
         verbatim by search. Its decoded size counts against the tier's vector quota.",
    )
    .max_length(Some(MAX_BLOB_BYTES.div_ceil(3) * 4))
}

#[cfg(feature = "openapi")]
fn query_blob() -> ObjectBuilder {
    adiuva_http::base64_schema(
        "Encrypted query, standard base64. Without `vector`, its SHA-256 vector is the query.",
    )
}

/// A vector of one of the supported sizes ([`DIMENSIONS`]), of values an `f32` holds (larger
/// ones would round to infinity), or `null`.
#[cfg(feature = "openapi")]
fn vector() -> Schema {
    // The midpoint between `f32::MAX` and 2^128: anything from there on rounds to infinity.
    let bound = f64::from(f32::MAX) + 2f64.powi(103);
    let value = ObjectBuilder::new()
        .schema_type(Type::Number)
        .exclusive_minimum(Some(-bound))
        .exclusive_maximum(Some(bound))
        .build();
    let mut sizes = AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "A vector of 32, 256, 384, 512, 768, 1024, 1536 or 3072 dimensions, or null",
        ));
    for dimensions in DIMENSIONS {
        sizes = sizes.item(
            ArrayBuilder::new()
                .items(value.clone())
                .min_items(Some(dimensions))
                .max_items(Some(dimensions)),
        );
    }
    sizes.build().into()
}

/// Verifies checksums and stores the points (insert or replace by id).
#[adiuva_http::route(post, path = "/api/v1/storage/vectors/upsert", tag = "vectors",
    request_body = VectorUpsertRequest,
    responses(
        (status = 200, description = "Stored", body = Upserted),
        (status = 400, description = "A checksum does not match its blob", body = ErrorBody),
        (status = 401, description = "Missing or invalid token, or the account was deleted", body = ErrorBody),
        (status = 402, description = "Over the tier's vector quota (points or blob bytes); nothing was stored", body = ErrorBody),
        (status = 422, description = "Invalid id, size, checksum or vector; an unsupported vector size, or not the size of the account's vectors", body = ErrorBody),
        (status = 503, description = "The vector store or the database is unavailable", body = ErrorBody),
    ))]
async fn upsert(
    State(spaces): State<VectorSpaces>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorUpsertRequest>,
) -> Result<Json<Upserted>> {
    let points = request
        .vectors
        .into_iter()
        .map(|item| NewPoint {
            id: item.id,
            blob: item.blob.0,
            checksum: item.checksum,
            vector: item.vector,
        })
        .collect();
    let upserted = spaces.upsert(&caller, points).await?;
    Ok(Json(Upserted { upserted }))
}

/// The caller's nearest points by cosine similarity, best first.
#[adiuva_http::route(post, path = "/api/v1/storage/vectors/search", tag = "vectors",
    request_body = VectorSearchRequest,
    responses(
        (status = 200, description = "Results, best first; none for an account without vectors", body = VectorSearchResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid top_k or vector; an unsupported vector size, or not the size of the account's vectors", body = ErrorBody),
        (status = 503, description = "The vector store or the database is unavailable", body = ErrorBody),
    ))]
async fn search(
    State(spaces): State<VectorSpaces>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorSearchRequest>,
) -> Result<Json<VectorSearchResponse>> {
    let hits = spaces
        .search(
            &caller.id,
            &request.query_blob.0,
            request.vector,
            request.top_k,
        )
        .await?;
    let results = hits
        .into_iter()
        .map(|SearchHit { id, score, blob }| VectorSearchResult {
            id,
            score,
            blob: Base64(blob),
        })
        .collect();
    Ok(Json(VectorSearchResponse { results }))
}

/// Deletes the caller's points with these ids; other ids are ignored. Deleting the last point
/// frees the account's vector size.
#[adiuva_http::route(delete, path = "/api/v1/storage/vectors", tag = "vectors",
    request_body = VectorDeleteRequest,
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, description = "Missing or invalid token, or the account was deleted", body = ErrorBody),
        (status = 422, description = "Too many ids", body = ErrorBody),
        (status = 503, description = "The vector store or the database is unavailable", body = ErrorBody),
    ))]
async fn delete(
    State(spaces): State<VectorSpaces>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorDeleteRequest>,
) -> Result<Json<Deleted>> {
    spaces.delete(&caller.id, &request.ids).await?;
    Ok(Json(Deleted { ok: true }))
}
