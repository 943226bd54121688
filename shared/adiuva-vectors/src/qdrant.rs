//! The Qdrant backend (gRPC, `qdrant-client`).
//!
//! Layout: Qdrant fixes the vector size per collection, so there is one collection per size,
//! `{prefix}_{dimensions}`, created on first use with cosine distance, a keyword payload index on
//! `user_id` with `is_tenant: true` (Qdrant stores each tenant's points together), and HNSW
//! graphs built per tenant only (`m: 0`, `payload_m: 16`), because every query filters on one
//! user. Every search and delete carries a `must` condition on `user_id`.
//!
//! Point ids: Qdrant accepts only UUIDs and integers, and client ids are unique per user only, so
//! a point's id is a UUID v5 of (user id, client id). The client id, the user id and the blob
//! (standard base64) are kept in the payload.
//!
//! Sizes: collections exist only for the sizes in [`DIMENSIONS`](crate::DIMENSIONS) (the store
//! refuses every other size before it gets here), so there are at most eight. Which size a user's
//! points have is not this module's business: the caller (`adiuva-vector-space`) keeps it in the
//! database and asks for one size per user. An upsert writes to the collection of its size, a
//! search and a delete look in the one collection they name, and nothing here lists the
//! collections or counts points to find a user's size. Only [`QdrantStore::delete_user`] (account
//! deletion, which must not depend on a database row that is gone with the account) visits the
//! collection of every accepted size.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder,
    Distance, FieldType, Filter, HnswConfigDiffBuilder, KeywordIndexParamsBuilder, PointId,
    PointStruct, QueryPointsBuilder, ScoredPoint, UpsertPointsBuilder, Value, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use tonic::Code;
use uuid::Uuid;

use crate::{Batch, ContextError, DIMENSIONS, SearchHit, VectorError};

/// Long enough for a TLS handshake to a managed cluster, short enough that an API request
/// answers 503 well inside API Gateway's 29-second limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Namespace of the point-id UUIDs. Changing it orphans every stored point.
const POINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xa918_1d8c_f280_400e_8656_6b1e_c395_75ea);

const USER_FIELD: &str = "user_id";
const ID_FIELD: &str = "id";
const BLOB_FIELD: &str = "blob";

/// The Qdrant backend. Clones share the connection.
#[derive(Clone)]
pub struct QdrantStore {
    client: Qdrant,
    /// `QDRANT_COLLECTION`: collection names are `{prefix}_{dimensions}`.
    prefix: String,
    /// Sizes whose collection and tenant index this process has made sure of, so that each is
    /// set up once per process rather than once per request.
    ready: Arc<Mutex<HashSet<usize>>>,
}

impl fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStore")
            .field("url", &self.client.config.uri)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl QdrantStore {
    /// No network I/O: the gRPC channel connects on the first request.
    pub(crate) fn new(url: &str, api_key: &str, prefix: &str) -> Result<Self, VectorError> {
        let mut builder = Qdrant::from_url(&grpc_url(url))
            .api_key((!api_key.is_empty()).then_some(api_key))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // The compatibility check is a health request made while building the client.
            .skip_compatibility_check();
        // One HTTP/2 connection multiplexes the requests of a Lambda instance; a pool would
        // open (and handshake) several.
        builder.set_pool_size(1);
        let client = builder.build().map_err(|err| {
            VectorError::Failed(ContextError::new(
                format!("invalid QDRANT_URL {url:?}"),
                err,
            ))
        })?;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            ready: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    pub(crate) async fn upsert(&self, user_id: &str, batch: Batch) -> Result<usize, VectorError> {
        let dimensions = batch.dimensions;
        self.ensure_collection(dimensions).await?;
        let written = batch.points.len();
        let points: Vec<PointStruct> = batch
            .points
            .into_iter()
            .map(|point| {
                PointStruct::new(
                    point_id(user_id, &point.id),
                    point.vector,
                    payload(user_id, &point.id, &point.blob),
                )
            })
            .collect();
        let collection = self.collection(dimensions);
        self.client
            .upsert_points(UpsertPointsBuilder::new(&collection, points).wait(true))
            .await
            .map_err(|err| classify(format!("failed to upsert into {collection}"), err))?;
        Ok(written)
    }

    /// The collection of the query's size only; none yet means no points.
    pub(crate) async fn search(
        &self,
        user_id: &str,
        query: &[f32],
        top_k: usize,
    ) -> Result<Vec<SearchHit>, VectorError> {
        let collection = self.collection(query.len());
        let request = QueryPointsBuilder::new(&collection)
            .query(query.to_vec())
            .filter(user_filter(user_id))
            .limit(u64::try_from(top_k).unwrap_or(u64::MAX))
            .with_payload(true);
        match self.client.query(request).await {
            Ok(response) => response
                .result
                .into_iter()
                .map(|point| hit(user_id, point))
                .collect(),
            Err(err) if is_not_found(&err) => Ok(Vec::new()),
            Err(err) => Err(classify(format!("failed to search {collection}"), err)),
        }
    }

    pub(crate) async fn delete(
        &self,
        user_id: &str,
        dimensions: usize,
        ids: &[String],
    ) -> Result<usize, VectorError> {
        let point_ids: Vec<PointId> = ids.iter().map(|id| point_id(user_id, id).into()).collect();
        self.delete_points(dimensions, user_ids_filter(user_id, point_ids))
            .await?;
        Ok(ids.len())
    }

    /// Every accepted size, at most eight requests; a collection that does not exist holds
    /// nothing to delete.
    pub(crate) async fn delete_user(&self, user_id: &str) -> Result<(), VectorError> {
        for dimensions in DIMENSIONS {
            self.delete_points(dimensions, user_filter(user_id)).await?;
        }
        Ok(())
    }

    /// The sizes that have a collection under this store's prefix, smallest first, read from
    /// the server. Only for tests and operators: no request path lists collections.
    pub async fn collection_sizes(&self) -> Result<Vec<usize>, VectorError> {
        let response = self
            .client
            .list_collections()
            .await
            .map_err(|err| classify("failed to list collections".to_owned(), err))?;
        let mut sizes: Vec<usize> = response
            .collections
            .iter()
            .filter_map(|collection| collection_size(&self.prefix, &collection.name))
            .collect();
        sizes.sort_unstable();
        Ok(sizes)
    }

    fn collection(&self, dimensions: usize) -> String {
        collection_name(&self.prefix, dimensions)
    }

    /// Deletes what the filter selects (it always includes the user) in one size's collection.
    async fn delete_points(&self, dimensions: usize, filter: Filter) -> Result<(), VectorError> {
        let collection = self.collection(dimensions);
        let request = DeletePointsBuilder::new(&collection)
            .points(filter)
            .wait(true);
        match self.client.delete_points(request).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(classify(format!("failed to delete from {collection}"), err)),
        }
    }

    /// Creates the collection for this size unless this process already made sure of it, then
    /// (re)declares the tenant index, which Qdrant treats as a no-op when it exists. Two
    /// instances may do this at once: the loser's "already exists" is success.
    async fn ensure_collection(&self, dimensions: usize) -> Result<(), VectorError> {
        if self.is_ready(dimensions) {
            return Ok(());
        }
        let collection = self.collection(dimensions);
        let request = CreateCollectionBuilder::new(&collection)
            .vectors_config(VectorParamsBuilder::new(
                dimensions as u64,
                Distance::Cosine,
            ))
            .hnsw_config(HnswConfigDiffBuilder::default().m(0).payload_m(16));
        match self.client.create_collection(request).await {
            Ok(_) => tracing::info!(collection, "created qdrant collection"),
            Err(err) if is_already_exists(&err) => {}
            Err(err) => {
                return Err(classify(format!("failed to create {collection}"), err));
            }
        }
        let index =
            CreateFieldIndexCollectionBuilder::new(&collection, USER_FIELD, FieldType::Keyword)
                .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                .wait(true);
        self.client.create_field_index(index).await.map_err(|err| {
            classify(format!("failed to index {USER_FIELD} in {collection}"), err)
        })?;
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(dimensions);
        Ok(())
    }

    fn is_ready(&self, dimensions: usize) -> bool {
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&dimensions)
    }
}

/// The reference deployment's `QDRANT_URL` points at Qdrant's REST port, 6333; this client
/// speaks gRPC, which Qdrant serves on 6334. An explicit `:6333` is moved to `:6334` so that an
/// existing `.env` keeps working; any other URL is used as written.
fn grpc_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.strip_suffix(":6333") {
        Some(host) => {
            tracing::info!("QDRANT_URL uses the REST port 6333; connecting to gRPC on 6334");
            format!("{host}:6334")
        }
        None => trimmed.to_owned(),
    }
}

fn collection_name(prefix: &str, dimensions: usize) -> String {
    format!("{prefix}_{dimensions}")
}

/// The size of a collection named `{prefix}_{digits}`; `None` for any other collection.
fn collection_size(prefix: &str, name: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?.strip_prefix('_')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A UUID v5 of the user id's length, the user id and the client id. The length prefix keeps
/// ("ab", "c") and ("a", "bc") apart.
fn point_id(user_id: &str, id: &str) -> String {
    let mut name = Vec::with_capacity(8 + user_id.len() + id.len());
    name.extend_from_slice(&(user_id.len() as u64).to_le_bytes());
    name.extend_from_slice(user_id.as_bytes());
    name.extend_from_slice(id.as_bytes());
    Uuid::new_v5(&POINT_ID_NAMESPACE, &name).to_string()
}

fn payload(user_id: &str, id: &str, blob: &[u8]) -> Payload {
    let mut payload = Payload::with_capacity(3);
    payload.insert(USER_FIELD, user_id);
    payload.insert(ID_FIELD, id);
    payload.insert(BLOB_FIELD, BASE64.encode(blob));
    payload
}

fn user_filter(user_id: &str) -> Filter {
    Filter::must([Condition::matches(USER_FIELD, user_id.to_owned())])
}

/// The user's points among these ids. The ids already include the user, and the user condition
/// keeps a delete scoped even if they did not.
fn user_ids_filter(user_id: &str, point_ids: Vec<PointId>) -> Filter {
    Filter::must([
        Condition::matches(USER_FIELD, user_id.to_owned()),
        Condition::has_id(point_ids),
    ])
}

fn string_field<'a>(point: &'a ScoredPoint, field: &str) -> Option<&'a str> {
    match point.payload.get(field) {
        Some(Value {
            kind: Some(Kind::StringValue(value)),
        }) => Some(value),
        _ => None,
    }
}

/// A search result back as the client stored it. A point of another user (which the filter
/// makes impossible) is an error rather than a leak.
fn hit(user_id: &str, point: ScoredPoint) -> Result<SearchHit, VectorError> {
    let malformed = |what: &str| {
        VectorError::Failed(ContextError::message(format!(
            "qdrant returned a point with {what}"
        )))
    };
    if string_field(&point, USER_FIELD) != Some(user_id) {
        return Err(malformed("another user's id"));
    }
    let id = string_field(&point, ID_FIELD).ok_or_else(|| malformed("no id"))?;
    let blob = string_field(&point, BLOB_FIELD)
        .and_then(|blob| BASE64.decode(blob).ok())
        .ok_or_else(|| malformed("no valid blob"))?;
    Ok(SearchHit {
        id: id.to_owned(),
        score: point.score,
        blob,
    })
}

fn status_code(err: &QdrantError) -> Option<Code> {
    match err {
        QdrantError::ResponseError { status } => Some(status.code()),
        QdrantError::ResourceExhaustedError { .. } => Some(Code::ResourceExhausted),
        _ => None,
    }
}

fn is_not_found(err: &QdrantError) -> bool {
    status_code(err) == Some(Code::NotFound)
}

/// Qdrant answers a duplicate create with ALREADY_EXISTS; older servers said "already exists"
/// in an INVALID_ARGUMENT.
fn is_already_exists(err: &QdrantError) -> bool {
    match err {
        QdrantError::ResponseError { status } => {
            status.code() == Code::AlreadyExists || status.message().contains("already exists")
        }
        _ => false,
    }
}

/// Unreachable, timed out, overloaded or rate-limited: Unavailable (503, worth a retry).
/// Anything else: Failed.
fn classify(context: String, err: QdrantError) -> VectorError {
    let unavailable = match &err {
        QdrantError::ResourceExhaustedError { .. } => true,
        QdrantError::ResponseError { status } => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted => true,
            // The client reports a failed connect as INTERNAL "Failed to connect to ...".
            Code::Internal => status.message().starts_with("Failed to connect"),
            _ => false,
        },
        _ => false,
    };
    let source = ContextError::new(context, err);
    if unavailable {
        VectorError::Unavailable(source)
    } else {
        VectorError::Failed(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use qdrant_client::qdrant::r#match::MatchValue;
    use qdrant_client::qdrant::point_id::PointIdOptions;

    #[test]
    fn point_ids_are_uuid_v5_per_user_and_id() {
        let a = point_id("user-a", "note-1");
        assert_eq!(a, point_id("user-a", "note-1"), "deterministic");
        let uuid = Uuid::parse_str(&a).unwrap();
        assert_eq!(uuid.get_version_num(), 5);
        assert_ne!(a, point_id("user-b", "note-1"), "same client id, two users");
        assert_ne!(a, point_id("user-a", "note-2"));
        assert_ne!(point_id("ab", "c"), point_id("a", "bc"), "no ambiguity");
    }

    #[test]
    fn collections_are_named_and_recognised_by_size() {
        assert_eq!(collection_name("adiuva_vectors", 32), "adiuva_vectors_32");
        assert_eq!(
            collection_size("adiuva_vectors", "adiuva_vectors_32"),
            Some(32)
        );
        assert_eq!(
            collection_size("adiuva_vectors", "adiuva_vectors_1536"),
            Some(1536)
        );
        for other in [
            "adiuva_vectors",
            "adiuva_vectors_",
            "adiuva_vectors_meta",
            "adiuva_vectors_032",
            "adiuva_vectors_1_32",
            "adiuva_vectors32",
            "other_32",
        ] {
            assert_eq!(collection_size("adiuva_vectors", other), None, "{other}");
        }
    }

    #[test]
    fn payload_keeps_user_id_and_blob() {
        let payload: std::collections::HashMap<String, Value> =
            payload("user-a", "note-1", b"\x00\xffcipher").into();
        let text = |key: &str| match &payload[key].kind {
            Some(Kind::StringValue(value)) => value.clone(),
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(text(USER_FIELD), "user-a");
        assert_eq!(text(ID_FIELD), "note-1");
        assert_eq!(BASE64.decode(text(BLOB_FIELD)).unwrap(), b"\x00\xffcipher");
        assert_eq!(payload.len(), 3);
    }

    fn keyword(condition: &Condition) -> Option<(&str, &str)> {
        match &condition.condition_one_of {
            Some(ConditionOneOf::Field(field)) => {
                match field.r#match.as_ref()?.match_value.as_ref()? {
                    MatchValue::Keyword(value) => Some((field.key.as_str(), value.as_str())),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    #[test]
    fn filters_always_require_the_user() {
        let filter = user_filter("user-a");
        assert_eq!(filter.must.len(), 1);
        assert!(filter.should.is_empty() && filter.must_not.is_empty());
        assert_eq!(keyword(&filter.must[0]), Some((USER_FIELD, "user-a")));

        let ids = vec![PointId::from(point_id("user-a", "note-1"))];
        let filter = user_ids_filter("user-a", ids);
        assert_eq!(filter.must.len(), 2);
        assert!(filter.should.is_empty() && filter.must_not.is_empty());
        assert_eq!(keyword(&filter.must[0]), Some((USER_FIELD, "user-a")));
        let Some(ConditionOneOf::HasId(has_id)) = &filter.must[1].condition_one_of else {
            panic!("{:?}", filter.must[1]);
        };
        assert_eq!(
            has_id.has_id[0].point_id_options,
            Some(PointIdOptions::Uuid(point_id("user-a", "note-1")))
        );
    }

    fn scored(payload: Payload, score: f32) -> ScoredPoint {
        ScoredPoint {
            payload: payload.into(),
            score,
            ..Default::default()
        }
    }

    #[test]
    fn hits_come_back_verbatim_and_never_for_another_user() {
        let hit = hit(
            "user-a",
            scored(payload("user-a", "note-1", b"\x01\x02"), 0.5),
        )
        .unwrap();
        assert_eq!((hit.id.as_str(), hit.score), ("note-1", 0.5));
        assert_eq!(hit.blob, b"\x01\x02");

        let err = super::hit("user-a", scored(payload("user-b", "x", b""), 0.9)).unwrap_err();
        assert!(matches!(err, VectorError::Failed(_)), "{err:?}");
        let mut no_blob = payload("user-a", "x", b"");
        no_blob.insert(BLOB_FIELD, "not base64!");
        assert!(super::hit("user-a", scored(no_blob, 0.9)).is_err());
    }

    #[test]
    fn errors_are_classified_by_status() {
        use tonic::Status;
        let response = |status: Status| QdrantError::ResponseError { status };
        for status in [
            Status::unavailable("down"),
            Status::deadline_exceeded("slow"),
            Status::cancelled("Timeout expired"),
            Status::internal("Failed to connect to http://127.0.0.1:1/: tcp connect error"),
        ] {
            let err = classify("x".into(), response(status));
            assert!(matches!(err, VectorError::Unavailable(_)), "{err:?}");
        }
        for status in [
            Status::invalid_argument("bad"),
            Status::internal("panic in the server"),
            Status::permission_denied("api key"),
        ] {
            let err = classify("x".into(), response(status));
            assert!(matches!(err, VectorError::Failed(_)), "{err:?}");
        }
        assert!(is_not_found(&response(Status::not_found(
            "Collection x doesn't exist"
        ))));
        assert!(is_already_exists(&response(Status::already_exists("x"))));
        assert!(is_already_exists(&response(Status::invalid_argument(
            "Wrong input: Collection `x` already exists!"
        ))));
        assert!(!is_already_exists(&response(Status::invalid_argument(
            "bad"
        ))));
    }

    #[test]
    fn the_rest_port_is_moved_to_grpc() {
        assert_eq!(grpc_url("http://qdrant:6333"), "http://qdrant:6334");
        assert_eq!(grpc_url("http://qdrant:6333/"), "http://qdrant:6334");
        assert_eq!(grpc_url("https://x.cloud:6334"), "https://x.cloud:6334");
        assert_eq!(grpc_url("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }

    #[tokio::test]
    async fn building_the_client_does_no_network_io() {
        // Nothing listens on port 1; a health check at build time would fail or hang here.
        let store = QdrantStore::new("http://127.0.0.1:1", "key", "adiuva_vectors").unwrap();
        assert!(format!("{store:?}").contains("adiuva_vectors"));
        assert!(
            !format!("{store:?}").contains("key\""),
            "api key not in Debug"
        );
    }
}
