//! Vectors function: each user's encrypted vector store under `/api/v1/storage/vectors`.
//! Points carry an encrypted blob (returned verbatim by search) and either the client's own
//! vector (which may be secretly rotated: cosine similarity survives) or, for compatibility with
//! the reference, a 32-dim vector derived from the SHA-256 of the blob. Search only ever
//! sees the caller's points.

use adiuva_config::{ConfigError, Context};
use adiuva_http::{ApiError, Base64, ErrorBody, Function, Json, Result, api_doc};
use adiuva_pipeline::CurrentUser;
use adiuva_vectors::{SearchHit, VectorPoint, VectorStore, derived_vector};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Points in one upsert.
pub const MAX_POINTS_PER_REQUEST: usize = 500;
/// Ids in one delete.
pub const MAX_IDS_PER_REQUEST: usize = 1000;
/// Encrypted bytes of one point.
pub const MAX_BLOB_BYTES: usize = 256 * 1024;
/// Dimensions of a client vector.
pub const MAX_VECTOR_DIMENSIONS: usize = 4096;
pub const MAX_TOP_K: usize = 100;
const MAX_ID_LEN: usize = 256;

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let vectors: VectorStore = context.get()?;
    let routes = OpenApiRouter::with_openapi(api_doc())
        .routes(routes!(upsert))
        .routes(routes!(search))
        .routes(routes!(delete))
        .with_state(vectors);
    adiuva_pipeline::authenticated(routes, context)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VectorItem {
    /// The client's id of the point, unique per user.
    pub id: String,
    /// Encrypted vector metadata, standard base64; returned verbatim by search.
    pub blob: Base64,
    /// Lowercase hex SHA-256 of the decoded blob.
    pub checksum: String,
    /// Optional client-computed vector; without it the reference's 32-dim SHA-256 vector is used.
    pub vector: Option<Vec<f32>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VectorUpsertRequest {
    pub vectors: Vec<VectorItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Upserted {
    pub upserted: usize,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VectorSearchRequest {
    /// Encrypted query, standard base64. Without `vector`, its SHA-256 vector is the query.
    pub query_blob: Base64,
    /// 1 to 100, default 10.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    pub vector: Option<Vec<f32>>,
}

fn default_top_k() -> usize {
    10
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorSearchResult {
    pub id: String,
    pub score: f32,
    pub blob: Base64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorSearchResponse {
    pub results: Vec<VectorSearchResult>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VectorDeleteRequest {
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub ok: bool,
}

fn invalid(detail: String) -> ApiError {
    ApiError::unprocessable("validation_error", detail)
}

fn check_vector(vector: &[f32], what: &str) -> Result<()> {
    if vector.is_empty() || vector.len() > MAX_VECTOR_DIMENSIONS {
        return Err(invalid(format!(
            "{what} must have 1 to {MAX_VECTOR_DIMENSIONS} dimensions"
        )));
    }
    Ok(())
}

/// Verifies checksums and stores the points (insert or replace by id).
#[utoipa::path(post, path = "/api/v1/storage/vectors/upsert", tag = "vectors", security(("bearer" = [])),
    request_body = VectorUpsertRequest,
    responses(
        (status = 200, description = "Stored", body = Upserted),
        (status = 400, description = "A checksum does not match its blob", body = ErrorBody),
        (status = 422, description = "Invalid id, size, vector or dimension mismatch", body = ErrorBody),
        (status = 503, description = "The vector store is unavailable", body = ErrorBody),
    ))]
async fn upsert(
    State(vectors): State<VectorStore>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorUpsertRequest>,
) -> Result<Json<Upserted>> {
    if request.vectors.is_empty() || request.vectors.len() > MAX_POINTS_PER_REQUEST {
        return Err(invalid(format!(
            "send 1 to {MAX_POINTS_PER_REQUEST} vectors per request"
        )));
    }
    let mut points = Vec::with_capacity(request.vectors.len());
    for (index, item) in request.vectors.into_iter().enumerate() {
        if item.id.is_empty() || item.id.len() > MAX_ID_LEN {
            return Err(invalid(format!(
                "vectors[{index}].id must be 1 to {MAX_ID_LEN} bytes"
            )));
        }
        if item.blob.0.len() > MAX_BLOB_BYTES {
            return Err(invalid(format!(
                "vectors[{index}].blob is larger than {MAX_BLOB_BYTES} bytes"
            )));
        }
        adiuva_checksum::verify(&item.blob.0, &item.checksum).map_err(|err| match err {
            adiuva_checksum::ChecksumError::Malformed => {
                ApiError::unprocessable("invalid_checksum", format!("vectors[{index}]: {err}"))
            }
            adiuva_checksum::ChecksumError::Mismatch => {
                ApiError::bad_request("checksum_mismatch", format!("vectors[{index}]: {err}"))
            }
        })?;
        let vector = match item.vector {
            Some(vector) => {
                check_vector(&vector, &format!("vectors[{index}].vector"))?;
                vector
            }
            None => derived_vector(&item.blob.0),
        };
        points.push(VectorPoint {
            id: item.id,
            vector,
            blob: item.blob.0,
        });
    }
    let upserted = vectors.upsert(&caller.id, points).await?;
    Ok(Json(Upserted { upserted }))
}

/// The caller's nearest points by cosine similarity, best first.
#[utoipa::path(post, path = "/api/v1/storage/vectors/search", tag = "vectors", security(("bearer" = [])),
    request_body = VectorSearchRequest,
    responses(
        (status = 200, description = "Results, best first", body = VectorSearchResponse),
        (status = 422, description = "Invalid top_k or vector", body = ErrorBody),
    ))]
async fn search(
    State(vectors): State<VectorStore>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorSearchRequest>,
) -> Result<Json<VectorSearchResponse>> {
    if request.top_k == 0 || request.top_k > MAX_TOP_K {
        return Err(invalid(format!("top_k must be 1 to {MAX_TOP_K}")));
    }
    let query = match request.vector {
        Some(vector) => {
            check_vector(&vector, "vector")?;
            vector
        }
        None => derived_vector(&request.query_blob.0),
    };
    let hits = vectors.search(&caller.id, &query, request.top_k).await?;
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

/// Deletes the caller's points with these ids; other ids are ignored.
#[utoipa::path(delete, path = "/api/v1/storage/vectors", tag = "vectors", security(("bearer" = [])),
    request_body = VectorDeleteRequest,
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 422, description = "Too many ids", body = ErrorBody),
    ))]
async fn delete(
    State(vectors): State<VectorStore>,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<VectorDeleteRequest>,
) -> Result<Json<Deleted>> {
    if request.ids.len() > MAX_IDS_PER_REQUEST {
        return Err(invalid(format!(
            "send at most {MAX_IDS_PER_REQUEST} ids per request"
        )));
    }
    vectors.delete(&caller.id, &request.ids).await?;
    Ok(Json(Deleted { ok: true }))
}
