//! Exact in-process search, the local default.
//!
//! Each user's points live in memory behind their own lock and in one file under the store's
//! directory, named by the hex SHA-256 of the user id (a user id can never become a path). A
//! file is loaded on the user's first access and rewritten whole, atomically (temporary file,
//! fsync, rename), after every change. That is linear in the user's data per write, which is fine
//! for the thousands of points a desktop user has. One process owns a directory: two processes
//! writing the same directory would overwrite each other's changes.
//!
//! A user's file holds vectors of one size, so a point of another size is DimensionMismatch.
//! The API never asks for one (`adiuva-vector-space` keeps each user's size), so this is a
//! second line of defence, not the rule.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::RwLock;

use crate::{Batch, ContextError, SearchHit, VectorError};

/// First bytes of every user file; the last byte is the format version.
const MAGIC: &[u8; 8] = b"ADVVEC\0\x01";

/// The embedded backend. Clones share the same in-memory state.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// One slot per user seen by this process. `None` inside the lock until the user's file has
    /// been read. The outer mutex is held only to find or add a slot, never across an await.
    users: Mutex<HashMap<String, Arc<RwLock<Option<UserPoints>>>>>,
    /// Makes temporary file names unique within the process.
    next_temp: AtomicU64,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// One user's points by client id. Every vector has the same length (the user's dimension) and
/// is a unit vector or zero, so a dot product is the cosine similarity.
#[derive(Default)]
struct UserPoints {
    points: BTreeMap<String, Stored>,
}

#[derive(Clone, PartialEq)]
struct Stored {
    vector: Vec<f32>,
    blob: Vec<u8>,
}

impl UserPoints {
    fn dimensions(&self) -> Option<usize> {
        self.points.values().next().map(|point| point.vector.len())
    }

    /// Brute force: the dot product with every point, best first.
    fn search(&self, query: &[f32], top_k: usize) -> Result<Vec<SearchHit>, VectorError> {
        let Some(expected) = self.dimensions() else {
            return Ok(Vec::new());
        };
        if expected != query.len() {
            return Err(VectorError::DimensionMismatch {
                expected,
                got: query.len(),
            });
        }
        let mut scored: Vec<(f32, &String, &Stored)> = self
            .points
            .iter()
            .map(|(id, point)| (dot(query, &point.vector), id, point))
            .collect();
        // Best first; equal scores by id, so that results are reproducible.
        scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.truncate(top_k);
        Ok(scored
            .into_iter()
            .map(|(score, id, point)| SearchHit {
                id: id.clone(),
                score,
                blob: point.blob.clone(),
            })
            .collect())
    }
}

impl EmbeddedStore {
    /// No I/O: the directory is created by the first write.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                users: Mutex::new(HashMap::new()),
                next_temp: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) async fn upsert(&self, user_id: &str, batch: Batch) -> Result<usize, VectorError> {
        let slot = self.slot(user_id);
        let mut guard = slot.write().await;
        let user = self.loaded(user_id, &mut guard).await?;
        if let Some(expected) = user.dimensions()
            && expected != batch.dimensions
        {
            return Err(VectorError::DimensionMismatch {
                expected,
                got: batch.dimensions,
            });
        }
        let written = batch.points.len();
        // Applied in memory first; undone if the file cannot be written, so memory and disk agree.
        let mut previous = Vec::with_capacity(written);
        for point in batch.points {
            let stored = Stored {
                vector: point.vector,
                blob: point.blob,
            };
            let old = user.points.insert(point.id.clone(), stored);
            previous.push((point.id, old));
        }
        if let Err(err) = self.persist(user_id, user).await {
            for (id, old) in previous.into_iter().rev() {
                match old {
                    Some(old) => user.points.insert(id, old),
                    None => user.points.remove(&id),
                };
            }
            return Err(err);
        }
        Ok(written)
    }

    pub(crate) async fn search(
        &self,
        user_id: &str,
        query: &[f32],
        top_k: usize,
    ) -> Result<Vec<SearchHit>, VectorError> {
        let slot = self.slot(user_id);
        {
            let guard = slot.read().await;
            if let Some(user) = guard.as_ref() {
                return user.search(query, top_k);
            }
        }
        // First access: load under the write lock, then let other readers in.
        let mut guard = slot.write().await;
        self.loaded(user_id, &mut guard).await?;
        let guard = guard.downgrade();
        guard
            .as_ref()
            .map_or(Ok(Vec::new()), |user| user.search(query, top_k))
    }

    /// Deletes among the user's points of this size: none when their points have another.
    pub(crate) async fn delete(
        &self,
        user_id: &str,
        dimensions: usize,
        ids: &[String],
    ) -> Result<usize, VectorError> {
        let slot = self.slot(user_id);
        let mut guard = slot.write().await;
        let user = self.loaded(user_id, &mut guard).await?;
        if user.dimensions() != Some(dimensions) {
            return Ok(0);
        }
        let removed: Vec<(String, Stored)> = ids
            .iter()
            .filter_map(|id| user.points.remove_entry(id))
            .collect();
        if removed.is_empty() {
            return Ok(0);
        }
        if let Err(err) = self.persist(user_id, user).await {
            user.points.extend(removed);
            return Err(err);
        }
        Ok(removed.len())
    }

    pub(crate) async fn delete_user(&self, user_id: &str) -> Result<(), VectorError> {
        let slot = self.slot(user_id);
        let mut guard = slot.write().await;
        let path = self.path(user_id);
        blocking(move || remove_file(&path)).await?;
        *guard = Some(UserPoints::default());
        Ok(())
    }

    fn slot(&self, user_id: &str) -> Arc<RwLock<Option<UserPoints>>> {
        let mut users = self
            .inner
            .users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        users.entry(user_id.to_owned()).or_default().clone()
    }

    /// The user's points, read from disk on first access.
    async fn loaded<'a>(
        &self,
        user_id: &str,
        slot: &'a mut Option<UserPoints>,
    ) -> Result<&'a mut UserPoints, VectorError> {
        if slot.is_none() {
            let path = self.path(user_id);
            *slot = Some(blocking(move || read_user_file(&path)).await?);
        }
        Ok(slot.get_or_insert_default())
    }

    fn path(&self, user_id: &str) -> PathBuf {
        let name = adiuva_checksum::sha256_hex(user_id.as_bytes());
        self.inner.dir.join(format!("{name}.vec"))
    }

    async fn persist(&self, user_id: &str, user: &UserPoints) -> Result<(), VectorError> {
        let path = self.path(user_id);
        if user.points.is_empty() {
            return blocking(move || remove_file(&path)).await;
        }
        let bytes = encode(user);
        let temp = self.inner.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("user"),
            std::process::id(),
            self.inner.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        blocking(move || write_atomically(&path, &temp, &bytes)).await
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum::<f64>() as f32
}

/// Runs file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, VectorError> + Send + 'static,
) -> Result<T, VectorError> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        VectorError::Failed(ContextError::new(
            "embedded vector store file task failed",
            err,
        ))
    })?
}

fn failed(context: String, err: io::Error) -> VectorError {
    VectorError::Failed(ContextError::new(context, err))
}

fn read_user_file(path: &Path) -> Result<UserPoints, VectorError> {
    match fs::read(path) {
        Ok(bytes) => decode(&bytes).map_err(|reason| {
            VectorError::Failed(ContextError::message(format!(
                "vector file {} is corrupt: {reason}",
                path.display()
            )))
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(UserPoints::default()),
        Err(err) => Err(failed(format!("failed to read {}", path.display()), err)),
    }
}

fn remove_file(path: &Path) -> Result<(), VectorError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(failed(format!("failed to remove {}", path.display()), err))
        }
        _ => Ok(()),
    }
}

/// Readers see the old file or the new one, never a partial write, even after a crash.
fn write_atomically(path: &Path, temp: &Path, bytes: &[u8]) -> Result<(), VectorError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut file = fs::File::create(temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(temp, path)?;
        // Makes the rename itself durable. Opening a directory fails on some platforms, where
        // the rename is all we can do.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|err| {
        let _ = fs::remove_file(temp);
        failed(format!("failed to write {}", path.display()), err)
    })
}

// File format, little-endian: MAGIC, u32 dimensions, u64 point count, then per point (in id
// order) u32 id length, id bytes (UTF-8), dimensions x f32, u64 blob length, blob bytes.

fn encode(user: &UserPoints) -> Vec<u8> {
    let dimensions = user.dimensions().unwrap_or(0);
    let size: usize = user
        .points
        .iter()
        .map(|(id, point)| 12 + id.len() + 4 * dimensions + point.blob.len())
        .sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(dimensions as u32).to_le_bytes());
    out.extend_from_slice(&(user.points.len() as u64).to_le_bytes());
    for (id, point) in &user.points {
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
        for value in &point.vector {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&(point.blob.len() as u64).to_le_bytes());
        out.extend_from_slice(&point.blob);
    }
    out
}

fn decode(bytes: &[u8]) -> Result<UserPoints, String> {
    let mut reader = Reader(bytes);
    if reader.take(MAGIC.len())? != MAGIC {
        return Err("unknown format".to_owned());
    }
    let dimensions = reader.u32()? as usize;
    let count = reader.u64()?;
    let mut user = UserPoints::default();
    for _ in 0..count {
        let id_len = reader.u32()? as usize;
        let id = std::str::from_utf8(reader.take(id_len)?)
            .map_err(|_| "an id is not UTF-8".to_owned())?
            .to_owned();
        let vector = reader
            .take(dimensions.checked_mul(4).ok_or("too many dimensions")?)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let blob_len = usize::try_from(reader.u64()?).map_err(|_| "blob too large")?;
        let blob = reader.take(blob_len)?.to_vec();
        user.points.insert(id, Stored { vector, blob });
    }
    if !reader.0.is_empty() {
        return Err("trailing bytes".to_owned());
    }
    Ok(user)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".to_owned());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(points: &[(&str, &[f32], &[u8])]) -> UserPoints {
        UserPoints {
            points: points
                .iter()
                .map(|(id, vector, blob)| {
                    (
                        (*id).to_owned(),
                        Stored {
                            vector: vector.to_vec(),
                            blob: blob.to_vec(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn file_format_round_trips() {
        let original = user(&[
            ("a", &[0.6, -0.8], b"\x00\xffblob"),
            ("é-id", &[1.0, 0.0], b""),
        ]);
        let decoded = decode(&encode(&original)).unwrap();
        assert!(decoded.points == original.points);
        assert_eq!(
            decode(&encode(&UserPoints::default()))
                .unwrap()
                .points
                .len(),
            0
        );
    }

    #[test]
    fn corrupt_files_are_rejected_not_misread() {
        let bytes = encode(&user(&[("a", &[0.6, -0.8], b"blob")]));
        for cut in [0, 3, MAGIC.len() + 5, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut wrong_magic = bytes;
        wrong_magic[0] = b'X';
        assert!(decode(&wrong_magic).is_err());
    }

    #[test]
    fn file_names_are_hashes_not_user_ids() {
        let store = EmbeddedStore::new(PathBuf::from("/data/vectors"));
        let path = store.path("../../etc/passwd");
        assert_eq!(path.parent(), Some(Path::new("/data/vectors")));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 64 + ".vec".len());
        assert!(
            name.trim_end_matches(".vec")
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert_ne!(store.path("alice"), store.path("bob"));
    }
}
