//! The per-user vector store: encrypted blobs stored with a vector, searched by cosine similarity,
//! and never visible to another user.
//!
//! Two backends sit behind [`VectorStore`]:
//! - [`QdrantStore`] (production, `QDRANT_URL` set): one Qdrant collection per vector size, the
//!   user id as an `is_tenant` payload field, and a `user_id` filter on every read and delete;
//! - [`EmbeddedStore`] (the local default): exact brute-force search in process, one file per
//!   user under `data_dir/vectors/`.
//!
//! Only the sizes in [`DIMENSIONS`] are stored: every vector of another size is refused before a
//! backend sees it, so Qdrant never holds more than eight collections, and removing a user
//! ([`VectorStore::delete_user`]) visits at most those eight.
//!
//! Both see the same validated input: [`VectorStore`] checks dimensions and finiteness,
//! de-duplicates ids and L2-normalises every vector before a backend sees it, so the two backends
//! score the same way (cosine similarity of unit vectors) and reject the same malformed requests.
//! (A second size for one user is the exception: see [`VectorStore::upsert`].)
//!
//! This crate is an adapter and knows no database: which size a user's vectors have, how many
//! points they hold and what their tier allows is kept by the caller (`adiuva-vector-space`),
//! which asks for one size per user. Search and delete name the size they look at.
//!
//! The blobs are end-to-end encrypted by the client; this crate stores and returns them verbatim
//! and never logs them.

mod embedded;
mod qdrant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::PathBuf;

use adiuva_config::{Component, ConfigError, Context, Secret, Source};
use adiuva_error::ErrorKind;
use std::collections::HashSet;
use std::fmt;

pub use embedded::EmbeddedStore;
pub use qdrant::QdrantStore;

/// Dimension of [`derived_vector`], the reference deployment's vectors.
pub const DERIVED_DIMENSIONS: usize = 32;

/// The vector sizes accepted, smallest first: the reference's [`DERIVED_DIMENSIONS`] and the
/// common embedding sizes (MiniLM 384, BERT 768, OpenAI's 1536 and 3072, ...). Each has one
/// Qdrant collection at most; a fixed set keeps one account from making the store create (and
/// every purge walk) a collection per size.
pub const DIMENSIONS: [usize; 8] = [DERIVED_DIMENSIONS, 256, 384, 512, 768, 1024, 1536, 3072];

/// Whether vectors of this size are accepted (one of [`DIMENSIONS`]).
pub fn is_supported_dimension(dimensions: usize) -> bool {
    DIMENSIONS.contains(&dimensions)
}

/// [`DIMENSIONS`] as text for messages: `32, 256, 384, 512, 768, 1024, 1536, 3072`.
pub fn supported_dimensions_text() -> String {
    DIMENSIONS
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reference's vector: SHA-256 of the bytes, 32 bytes mapped to floats in [-1, 1]
/// ((b as f32 / 127.5) - 1.0), then L2-normalised. Deterministic.
///
/// Kept for compatibility with clients that send no vector. Because it hashes ciphertext, its
/// similarity carries no meaning; clients that want semantic search send their own vector.
pub fn derived_vector(bytes: &[u8]) -> Vec<f32> {
    let digest = adiuva_checksum::sha256(bytes);
    let raw: Vec<f32> = digest.iter().map(|&b| (b as f32 / 127.5) - 1.0).collect();
    // Never zero: that would need every byte to be 127.5.
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    raw.into_iter().map(|x| x / norm).collect()
}

/// One point to store: the client's id, its vector and the encrypted blob.
#[derive(Clone, PartialEq)]
pub struct VectorPoint {
    /// The client's id; unique per user, not globally.
    pub id: String,
    pub vector: Vec<f32>,
    /// Encrypted bytes, returned verbatim by search.
    pub blob: Vec<u8>,
}

/// One search result.
#[derive(Clone, PartialEq)]
pub struct SearchHit {
    pub id: String,
    /// Cosine similarity to the query, in [-1, 1].
    pub score: f32,
    /// The blob stored with the point, byte for byte.
    pub blob: Vec<u8>,
}

// Vectors and blobs are user content: Debug output (and so logs) shows only their sizes.
impl fmt::Debug for VectorPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorPoint")
            .field("id", &self.id)
            .field(
                "vector",
                &format_args!("<{} dimensions>", self.vector.len()),
            )
            .field("blob", &format_args!("<{} bytes>", self.blob.len()))
            .finish()
    }
}

impl fmt::Debug for SearchHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchHit")
            .field("id", &self.id)
            .field("score", &self.score)
            .field("blob", &format_args!("<{} bytes>", self.blob.len()))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The vectors of one call differ in size, or (embedded store, whose file holds one size
    /// per user; and `adiuva-vector-space`, which keeps each user's size) the user's vectors
    /// have another size; the API answers 422.
    #[error("vector has {got} dimensions, but this account's vectors have {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    /// A vector whose size is not one of [`DIMENSIONS`]; the API answers 422.
    #[error(
        "vector has {got} dimensions; accepted sizes are {}",
        supported_dimensions_text()
    )]
    InvalidDimensions { got: usize },
    /// NaN or an infinity; the API answers 422.
    #[error("vector contains a value that is not a finite number")]
    NotFinite,
    /// The backend could not be reached or timed out; the API answers 503.
    #[error("vector store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else that went wrong in the backend; the API answers 500.
    #[error("vector store operation failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The store the rest of the API uses. Cloning is cheap and shares the connection or the
/// in-memory state.
#[derive(Clone, Debug)]
pub enum VectorStore {
    Qdrant(QdrantStore),
    Embedded(EmbeddedStore),
}

impl adiuva_error::DomainError for VectorError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::DimensionMismatch { .. } | Self::InvalidDimensions { .. } | Self::NotFinite => {
                ErrorKind::Invalid
            }
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Failed(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::DimensionMismatch { .. } | Self::InvalidDimensions { .. } | Self::NotFinite => {
                "invalid_vector"
            }
            Self::Unavailable(_) => "dependency_unavailable",
            Self::Failed(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        matches!(self, Self::Unavailable(_)).then(|| adiuva_error::unavailable("the vector store"))
    }
}

/// `QDRANT_URL` (unset: exact in-process search under `ADIUVA_DATA_DIR`), `QDRANT_API_KEY` and
/// `QDRANT_COLLECTION` (the prefix of the collection names).
#[derive(Debug, Clone)]
pub struct VectorSettings {
    pub qdrant: Option<QdrantSettings>,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct QdrantSettings {
    pub url: String,
    pub api_key: Option<Secret>,
    pub collection: String,
}

impl VectorSettings {
    pub fn from_source(source: &Source) -> Self {
        Self {
            qdrant: source.optional("QDRANT_URL").map(|url| QdrantSettings {
                url,
                api_key: source.secret("QDRANT_API_KEY"),
                collection: source.string("QDRANT_COLLECTION", "adiuva_vectors"),
            }),
            data_dir: source.data_dir(),
        }
    }
}

impl Component for VectorStore {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Self::from_settings(&VectorSettings::from_source(context.source()))
            .map_err(|err| ConfigError::unusable("the vector store", err))
    }
}

impl VectorStore {
    /// Qdrant when a URL is set, else embedded. No network I/O here (Lambda cold start): the
    /// Qdrant client connects lazily and collections are created on first use.
    pub fn from_settings(settings: &VectorSettings) -> Result<Self, VectorError> {
        match &settings.qdrant {
            None => Ok(Self::Embedded(EmbeddedStore::new(
                settings.data_dir.join("vectors"),
            ))),
            Some(qdrant) => Ok(Self::Qdrant(QdrantStore::new(
                &qdrant.url,
                qdrant.api_key.as_ref().map_or("", Secret::expose),
                &qdrant.collection,
            )?)),
        }
    }

    /// Inserts or replaces the user's points (by id) in the space of their size. All points of
    /// one call must have the same size, one of [`DIMENSIONS`], else nothing is written. Cosine
    /// similarity.
    ///
    /// The caller keeps one size per user: Qdrant writes to the collection of this size without
    /// looking at the others; the embedded store, whose file holds one size per user, refuses
    /// another with DimensionMismatch.
    ///
    /// When one call repeats an id, the last point with that id wins. Returns the number of
    /// distinct ids written.
    pub async fn upsert(
        &self,
        user_id: &str,
        points: Vec<VectorPoint>,
    ) -> Result<usize, VectorError> {
        let Some(batch) = Batch::prepare(points)? else {
            return Ok(0);
        };
        match self {
            Self::Qdrant(store) => store.upsert(user_id, batch).await,
            Self::Embedded(store) => store.upsert(user_id, batch).await,
        }
    }

    /// The user's top_k nearest points of the query's size by cosine similarity, best first.
    /// Only ever the caller's points, and only the one collection of that size. A user with no
    /// points of that size gets an empty list from Qdrant; the embedded store answers
    /// DimensionMismatch when the user's points have another size.
    pub async fn search(
        &self,
        user_id: &str,
        query: &[f32],
        top_k: usize,
    ) -> Result<Vec<SearchHit>, VectorError> {
        check_vector(query)?;
        if top_k == 0 {
            return Ok(Vec::new());
        }
        let query = normalized(query);
        match self {
            Self::Qdrant(store) => store.search(user_id, &query, top_k).await,
            Self::Embedded(store) => store.search(user_id, &query, top_k).await,
        }
    }

    /// Deletes these ids of this user among their points of this size (one Qdrant collection);
    /// ids that do not exist or belong to someone else are ignored. Returns how many were
    /// deleted if the backend knows (embedded), else the number of distinct ids requested
    /// (Qdrant does not report it).
    pub async fn delete(
        &self,
        user_id: &str,
        dimensions: usize,
        ids: &[String],
    ) -> Result<usize, VectorError> {
        if !is_supported_dimension(dimensions) {
            return Err(VectorError::InvalidDimensions { got: dimensions });
        }
        let ids = distinct(ids);
        if ids.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Qdrant(store) => store.delete(user_id, dimensions, &ids).await,
            Self::Embedded(store) => store.delete(user_id, dimensions, &ids).await,
        }
    }

    /// Deletes every point of the user, of every size (account deletion). Needs no record of
    /// the user's size: on Qdrant it visits the collection of each of the [`DIMENSIONS`].
    pub async fn delete_user(&self, user_id: &str) -> Result<(), VectorError> {
        match self {
            Self::Qdrant(store) => store.delete_user(user_id).await,
            Self::Embedded(store) => store.delete_user(user_id).await,
        }
    }
}

/// Points of one upsert, checked: at least one, one dimension, finite, unit length (or zero),
/// distinct ids.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) dimensions: usize,
    pub(crate) points: Vec<VectorPoint>,
}

impl Batch {
    /// `None` for an empty upsert, which writes nothing and checks nothing.
    fn prepare(points: Vec<VectorPoint>) -> Result<Option<Self>, VectorError> {
        let Some(first) = points.first() else {
            return Ok(None);
        };
        let dimensions = first.vector.len();
        for point in &points {
            check_vector(&point.vector)?;
            if point.vector.len() != dimensions {
                return Err(VectorError::DimensionMismatch {
                    expected: dimensions,
                    got: point.vector.len(),
                });
            }
        }
        // The last point with an id wins, as if the points were upserted one by one.
        let mut seen = HashSet::new();
        let mut points: Vec<VectorPoint> = points
            .into_iter()
            .rev()
            .filter(|point| seen.insert(point.id.clone()))
            .map(|point| VectorPoint {
                vector: normalized(&point.vector),
                ..point
            })
            .collect();
        points.reverse();
        Ok(Some(Self { dimensions, points }))
    }
}

fn check_vector(vector: &[f32]) -> Result<(), VectorError> {
    if !is_supported_dimension(vector.len()) {
        return Err(VectorError::InvalidDimensions { got: vector.len() });
    }
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(VectorError::NotFinite);
    }
    Ok(())
}

/// The unit vector in the same direction; the zero vector stays zero (it scores 0 against
/// everything). The norm is computed in f64 so that large finite values do not overflow.
fn normalized(vector: &[f32]) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return vector.to_vec();
    }
    vector
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect()
}

fn distinct(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// A cause with a sentence saying which step failed, for the `#[source]` of
/// [`VectorError::Failed`] and [`VectorError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub(crate) struct ContextError {
    context: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ContextError {
    pub(crate) fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Box<Self> {
        Box::new(Self {
            context: context.into(),
            source: Some(source.into()),
        })
    }

    pub(crate) fn message(context: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            context: context.into(),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `values`, then zeros up to `dimensions`.
    fn padded(values: &[f32], dimensions: usize) -> Vec<f32> {
        let mut vector = values.to_vec();
        vector.resize(dimensions, 0.0);
        vector
    }

    fn point_of(id: &str, vector: Vec<f32>) -> VectorPoint {
        VectorPoint {
            id: id.to_owned(),
            vector,
            blob: id.as_bytes().to_vec(),
        }
    }

    /// A point of 32 dimensions whose first values are `values`.
    fn point(id: &str, values: &[f32]) -> VectorPoint {
        point_of(id, padded(values, DERIVED_DIMENSIONS))
    }

    #[test]
    fn only_the_fixed_sizes_are_supported() {
        assert_eq!(DIMENSIONS.len(), 8, "purges visit every size");
        assert!(DIMENSIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_supported_dimension(DERIVED_DIMENSIONS));
        for size in [256, 384, 512, 768, 1024, 1536, 3072] {
            assert!(is_supported_dimension(size), "{size}");
        }
        for size in [0, 1, 3, 31, 33, 100, 4096, 65_536] {
            assert!(!is_supported_dimension(size), "{size}");
        }
        let message = VectorError::InvalidDimensions { got: 3 }.to_string();
        assert_eq!(
            message,
            "vector has 3 dimensions; accepted sizes are 32, 256, 384, 512, 768, 1024, 1536, 3072"
        );
    }

    #[test]
    fn derived_vector_is_32_unit_floats_and_deterministic() {
        let a = derived_vector(b"ciphertext one");
        assert_eq!(a.len(), DERIVED_DIMENSIONS);
        assert_eq!(a, derived_vector(b"ciphertext one"));
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        assert_ne!(a, derived_vector(b"ciphertext two"));
        assert_ne!(a, derived_vector(b""));
    }

    #[test]
    fn derived_vector_matches_the_reference_formula() {
        // SHA-256("") starts with e3 b0 c4 42; the reference maps b to b / 127.5 - 1, then
        // divides by the L2 norm of all 32 values.
        let digest = adiuva_checksum::sha256(b"");
        let raw: Vec<f32> = digest.iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
        let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
        let vector = derived_vector(b"");
        assert_eq!(digest[0], 0xe3);
        assert!((vector[0] - (0xe3 as f32 / 127.5 - 1.0) / norm).abs() < 1e-7);
        for (got, raw) in vector.iter().zip(&raw) {
            assert!((got - raw / norm).abs() < 1e-7);
        }
    }

    #[test]
    fn batch_rejects_mixed_dimensions_empty_and_non_finite_vectors() {
        let err = Batch::prepare(vec![
            point("a", &[1.0, 0.0]),
            point_of("b", padded(&[1.0], 256)),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                VectorError::DimensionMismatch {
                    expected: 32,
                    got: 256
                }
            ),
            "{err:?}"
        );
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = Batch::prepare(vec![point("a", &[1.0, bad])]).unwrap_err();
            assert!(matches!(err, VectorError::NotFinite), "{err:?}");
        }
        let err = Batch::prepare(vec![point_of("a", Vec::new())]).unwrap_err();
        assert!(
            matches!(err, VectorError::InvalidDimensions { got: 0 }),
            "{err:?}"
        );
        for size in [3, 33, 4096] {
            let err = Batch::prepare(vec![point_of("a", vec![1.0; size])]).unwrap_err();
            assert!(
                matches!(err, VectorError::InvalidDimensions { got } if got == size),
                "{err:?}"
            );
        }
        assert!(Batch::prepare(Vec::new()).unwrap().is_none());
    }

    #[test]
    fn batch_normalises_and_keeps_the_last_point_of_a_repeated_id() {
        let batch = Batch::prepare(vec![
            point("a", &[3.0, 4.0]),
            point("b", &[0.0, 2.0]),
            VectorPoint {
                blob: b"second".to_vec(),
                ..point("a", &[0.0, 0.0])
            },
        ])
        .unwrap()
        .unwrap();
        assert_eq!(batch.dimensions, 32);
        let ids: Vec<&str> = batch.points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(batch.points[0].vector, padded(&[0.0, 1.0], 32));
        assert_eq!(batch.points[1].vector, [0.0; 32], "zero stays zero");
        assert_eq!(batch.points[1].blob, b"second");
    }

    #[test]
    fn normalising_huge_finite_values_does_not_overflow() {
        let vector = normalized(&[f32::MAX, f32::MAX]);
        let expected = std::f32::consts::FRAC_1_SQRT_2;
        assert!(
            vector.iter().all(|x| (x - expected).abs() < 1e-6),
            "{vector:?}"
        );
    }

    #[test]
    fn debug_output_hides_vectors_and_blobs() {
        let text = format!("{:?}", point("id-1", &[0.25, 0.5]));
        assert!(text.contains("id-1") && text.contains("<32 dimensions>"));
        assert!(!text.contains("0.25"));
    }
}
