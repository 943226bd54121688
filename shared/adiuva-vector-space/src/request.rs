//! What a request may ask for: counts, sizes, checksums and vector sizes, checked before the
//! database or the store is touched.

use std::collections::HashSet;
use std::fmt;

use adiuva_vectors::{
    VectorError, VectorPoint, derived_vector, is_supported_dimension, supported_dimensions_text,
};

use crate::VectorSpaceError;

/// Points in one upsert.
pub const MAX_POINTS_PER_REQUEST: usize = 500;
/// Ids in one delete.
pub const MAX_IDS_PER_REQUEST: usize = 1000;
/// Encrypted bytes of one point.
pub const MAX_BLOB_BYTES: usize = 256 * 1024;
/// Bytes of a point's id.
pub const MAX_ID_BYTES: usize = 256;
/// Results of one search.
pub const MAX_TOP_K: usize = 100;

/// A point as the client sends it.
#[derive(Clone)]
pub struct NewPoint {
    /// The client's id of the point, unique per user.
    pub id: String,
    /// Encrypted bytes, returned verbatim by search.
    pub blob: Vec<u8>,
    /// Lowercase hex SHA-256 of `blob`.
    pub checksum: String,
    /// The client's vector; `None` is the reference's 32-dimension vector derived from the
    /// blob's SHA-256.
    pub vector: Option<Vec<f32>>,
}

// Vectors and blobs are user content: Debug output (and so logs) shows only their sizes.
impl fmt::Debug for NewPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPoint")
            .field("id", &self.id)
            .field("blob", &format_args!("<{} bytes>", self.blob.len()))
            .field(
                "vector",
                &self
                    .vector
                    .as_ref()
                    .map(|vector| format!("<{} dimensions>", vector.len())),
            )
            .finish()
    }
}

/// The points of one upsert, checked: one supported size, finite values, verified checksums,
/// distinct ids (the last point with an id wins, as if they were upserted one by one).
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) dimensions: usize,
    pub(crate) points: Vec<VectorPoint>,
}

impl Batch {
    pub(crate) fn check(points: Vec<NewPoint>) -> Result<Self, VectorSpaceError> {
        if points.is_empty() || points.len() > MAX_POINTS_PER_REQUEST {
            return Err(VectorSpaceError::Invalid(format!(
                "send 1 to {MAX_POINTS_PER_REQUEST} vectors per request"
            )));
        }
        let mut checked = Vec::with_capacity(points.len());
        for (index, point) in points.into_iter().enumerate() {
            if point.id.is_empty() || point.id.len() > MAX_ID_BYTES {
                return Err(VectorSpaceError::Invalid(format!(
                    "vectors[{index}].id must be 1 to {MAX_ID_BYTES} bytes"
                )));
            }
            if point.blob.len() > MAX_BLOB_BYTES {
                return Err(VectorSpaceError::Invalid(format!(
                    "vectors[{index}].blob is larger than {MAX_BLOB_BYTES} bytes"
                )));
            }
            adiuva_checksum::verify(&point.blob, &point.checksum)
                .map_err(|error| VectorSpaceError::Checksum { index, error })?;
            let vector = match point.vector {
                Some(vector) => {
                    check_vector(&vector, &format!("vectors[{index}].vector"))?;
                    vector
                }
                None => derived_vector(&point.blob),
            };
            checked.push(VectorPoint {
                id: point.id,
                vector,
                blob: point.blob,
            });
        }
        let dimensions = checked[0].vector.len();
        if let Some(other) = checked.iter().find(|p| p.vector.len() != dimensions) {
            return Err(VectorError::DimensionMismatch {
                expected: dimensions,
                got: other.vector.len(),
            }
            .into());
        }
        let mut seen = HashSet::new();
        let mut points: Vec<VectorPoint> = checked
            .into_iter()
            .rev()
            .filter(|point| seen.insert(point.id.clone()))
            .collect();
        points.reverse();
        Ok(Self { dimensions, points })
    }
}

/// The vector a search ranks by: the client's, or the one derived from the query blob.
pub(crate) fn query_vector(
    query_blob: &[u8],
    vector: Option<Vec<f32>>,
    top_k: usize,
) -> Result<Vec<f32>, VectorSpaceError> {
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(VectorSpaceError::Invalid(format!(
            "top_k must be 1 to {MAX_TOP_K}"
        )));
    }
    match vector {
        Some(vector) => {
            check_vector(&vector, "vector")?;
            Ok(vector)
        }
        None => Ok(derived_vector(query_blob)),
    }
}

/// The distinct ids of a delete, in the order given.
pub(crate) fn delete_ids(ids: &[String]) -> Result<Vec<String>, VectorSpaceError> {
    if ids.len() > MAX_IDS_PER_REQUEST {
        return Err(VectorSpaceError::Invalid(format!(
            "send at most {MAX_IDS_PER_REQUEST} ids per request"
        )));
    }
    let mut seen = HashSet::new();
    Ok(ids
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect())
}

/// One of the supported sizes (anything else would be a collection of its own), finite values.
fn check_vector(vector: &[f32], what: &str) -> Result<(), VectorSpaceError> {
    if !is_supported_dimension(vector.len()) {
        return Err(VectorSpaceError::Invalid(format!(
            "{what} has {} dimensions; accepted sizes are {}",
            vector.len(),
            supported_dimensions_text()
        )));
    }
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(VectorError::NotFinite.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adiuva_error::DomainError;

    fn new_point(id: &str, blob: &[u8], vector: Option<Vec<f32>>) -> NewPoint {
        NewPoint {
            id: id.to_owned(),
            blob: blob.to_vec(),
            checksum: adiuva_checksum::sha256_hex(blob),
            vector,
        }
    }

    fn code_of(result: Result<impl fmt::Debug, VectorSpaceError>) -> (&'static str, String) {
        let err = result.unwrap_err();
        (err.code(), err.to_string())
    }

    #[test]
    fn points_without_a_vector_get_the_derived_one() {
        let batch = Batch::check(vec![new_point("a", b"cipher", None)]).unwrap();
        assert_eq!(batch.dimensions, 32);
        assert_eq!(batch.points[0].vector, derived_vector(b"cipher"));
    }

    #[test]
    fn only_supported_sizes_are_accepted() {
        for size in [32, 256, 384, 512, 768, 1024, 1536, 3072] {
            let point = new_point("a", b"x", Some(vec![0.5; size]));
            assert_eq!(Batch::check(vec![point]).unwrap().dimensions, size);
        }
        for size in [0, 1, 3, 33, 100, 4096] {
            let point = new_point("a", b"x", Some(vec![0.5; size]));
            let (code, message) = code_of(Batch::check(vec![point]));
            assert_eq!(code, "validation_error");
            assert_eq!(
                message,
                format!(
                    "vectors[0].vector has {size} dimensions; accepted sizes are \
                     32, 256, 384, 512, 768, 1024, 1536, 3072"
                )
            );
            let (code, _) = code_of(query_vector(b"q", Some(vec![0.5; size]), 10));
            assert_eq!(code, "validation_error");
        }
    }

    #[test]
    fn a_batch_has_one_size_and_finite_values() {
        let (code, message) = code_of(Batch::check(vec![
            new_point("a", b"x", None),
            new_point("b", b"y", Some(vec![1.0; 256])),
        ]));
        assert_eq!(code, "invalid_vector");
        assert!(
            message.contains("256") && message.contains("32"),
            "{message}"
        );
        let mut bad = vec![1.0; 32];
        bad[3] = f32::INFINITY;
        let (code, _) = code_of(Batch::check(vec![new_point("a", b"x", Some(bad.clone()))]));
        assert_eq!(code, "invalid_vector");
        let (code, _) = code_of(query_vector(b"q", Some(bad), 10));
        assert_eq!(code, "invalid_vector");
    }

    #[test]
    fn counts_ids_blobs_and_checksums_are_checked() {
        assert_eq!(code_of(Batch::check(Vec::new())).0, "validation_error");
        let many = (0..=MAX_POINTS_PER_REQUEST)
            .map(|i| new_point(&i.to_string(), b"x", None))
            .collect();
        assert_eq!(code_of(Batch::check(many)).0, "validation_error");
        let long_id = "i".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            code_of(Batch::check(vec![new_point(&long_id, b"x", None)])).0,
            "validation_error"
        );
        let (code, message) = code_of(Batch::check(vec![
            new_point("ok", b"x", None),
            new_point("big", &vec![0; MAX_BLOB_BYTES + 1], None),
        ]));
        assert_eq!(code, "validation_error");
        assert!(message.starts_with("vectors[1].blob"), "{message}");
        let mut wrong = new_point("a", b"x", None);
        wrong.checksum = adiuva_checksum::sha256_hex(b"y");
        assert_eq!(code_of(Batch::check(vec![wrong])).0, "checksum_mismatch");
        let mut malformed = new_point("a", b"x", None);
        malformed.checksum = "xyz".into();
        assert_eq!(code_of(Batch::check(vec![malformed])).0, "invalid_checksum");
    }

    #[test]
    fn the_last_point_of_a_repeated_id_wins() {
        let batch = Batch::check(vec![
            new_point("a", b"first", None),
            new_point("b", b"other", None),
            new_point("a", b"second", None),
        ])
        .unwrap();
        let ids: Vec<&str> = batch.points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(batch.points[1].blob, b"second");
    }

    #[test]
    fn searches_and_deletes_are_bounded() {
        for top_k in [0, MAX_TOP_K + 1] {
            assert_eq!(
                code_of(query_vector(b"q", None, top_k)).0,
                "validation_error"
            );
        }
        assert_eq!(
            query_vector(b"q", None, 5).unwrap(),
            derived_vector(b"q"),
            "no vector: the derived one"
        );
        let ids: Vec<String> = ["a", "b", "a"].map(String::from).to_vec();
        assert_eq!(delete_ids(&ids).unwrap(), ["a", "b"]);
        let too_many = vec!["x".to_owned(); MAX_IDS_PER_REQUEST + 1];
        assert_eq!(code_of(delete_ids(&too_many)).0, "validation_error");
    }

    #[test]
    fn debug_output_hides_blobs_and_vectors() {
        let text = format!("{:?}", new_point("id-1", b"secret", Some(vec![0.25; 32])));
        assert!(text.contains("id-1") && text.contains("<32 dimensions>"));
        assert!(!text.contains("secret") && !text.contains("0.25"));
    }
}
