//! A decorator for fault-injection tests: wraps another store and fails chosen operations with
//! [`BlobError::Unavailable`], so tests can check that callers answer 503 and keep their state
//! consistent when the store goes away halfway through a request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::{BlobError, BlobInfo, BlobStore, PresignedDownload, PresignedUpload};

/// The operations of [`BlobStore`] a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    Head,
    Delete,
    List,
    Digest,
    Presign,
}

impl Op {
    const COUNT: usize = 7;

    fn index(self) -> usize {
        self as usize
    }
}

/// The cause inside the [`BlobError::Unavailable`] of an injected fault.
#[derive(Debug, thiserror::Error)]
#[error("injected fault in blob store operation {op:?}")]
pub struct InjectedFault {
    pub op: Op,
}

/// Which operations fail, shared between the test and the [`FaultyStore`].
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<[OpFaults; Op::COUNT]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct OpFaults {
    /// Calls still to fail, counting down.
    next: u32,
    /// Fail every call until cleared.
    all: bool,
}

impl Faults {
    /// The next call of `op` fails (calling this twice fails the next two).
    pub fn fail_next(&self, op: Op) {
        let mut state = self.lock();
        state[op.index()].next += 1;
    }

    /// Every call of `op` fails until [`Faults::clear`].
    pub fn fail_all(&self, op: Op) {
        self.lock()[op.index()].all = true;
    }

    /// Back to passing everything through.
    pub fn clear(&self) {
        *self.lock() = Default::default();
    }

    /// Decides whether this call fails, consuming one `fail_next` if so.
    fn check(&self, op: Op) -> Result<(), BlobError> {
        let mut state = self.lock();
        let faults = &mut state[op.index()];
        if faults.all {
            return Err(injected(op));
        }
        if faults.next > 0 {
            faults.next -= 1;
            return Err(injected(op));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [OpFaults; Op::COUNT]> {
        // A test that panicked while holding the lock left valid counters behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn injected(op: Op) -> BlobError {
    BlobError::Unavailable(Box::new(InjectedFault { op }))
}

/// A store that passes every call to `inner` unless [`Faults`] says it should fail.
#[derive(Clone, Debug)]
pub struct FaultyStore {
    /// Boxed behind an `Arc` because `BlobStore` contains `FaultyStore`.
    inner: Arc<BlobStore>,
    faults: Arc<Faults>,
}

/// The futures of the wrapped store are boxed: `BlobStore`'s methods call `FaultyStore`'s, which
/// call `BlobStore`'s, and a recursive `async fn` needs one indirection.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BlobError>> + Send + 'a>>;

impl FaultyStore {
    /// Wraps `inner`; keep the returned [`Faults`] to steer it.
    pub fn wrap(inner: BlobStore) -> (BlobStore, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let store = BlobStore::Faulty(Self {
            inner: Arc::new(inner),
            faults: Arc::clone(&faults),
        });
        (store, faults)
    }

    /// The wrapped store, which never fails on purpose.
    pub fn inner(&self) -> &BlobStore {
        &self.inner
    }

    pub(crate) fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        checksum_hex: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.faults.check(Op::Put)?;
            self.inner.put(key, bytes, checksum_hex).await
        })
    }

    pub(crate) fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            self.faults.check(Op::Get)?;
            self.inner.get(key).await
        })
    }

    pub(crate) fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<BlobInfo>> {
        Box::pin(async move {
            self.faults.check(Op::Head)?;
            self.inner.head(key).await
        })
    }

    pub(crate) fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.faults.check(Op::Delete)?;
            self.inner.delete(key).await
        })
    }

    pub(crate) fn list_page<'a>(
        &'a self,
        start_after: Option<&'a str>,
        max: usize,
    ) -> BoxFuture<'a, (Vec<BlobInfo>, bool)> {
        Box::pin(async move {
            self.faults.check(Op::List)?;
            self.inner.list_page(start_after, max).await
        })
    }

    pub(crate) fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Vec<BlobInfo>> {
        Box::pin(async move {
            self.faults.check(Op::List)?;
            self.inner.list(prefix).await
        })
    }

    pub(crate) fn digest<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<(u64, String)>> {
        Box::pin(async move {
            self.faults.check(Op::Digest)?;
            self.inner.digest(key).await
        })
    }

    pub(crate) fn presign_put<'a>(
        &'a self,
        key: &'a str,
        size: u64,
        sha256_hex: &'a str,
    ) -> BoxFuture<'a, PresignedUpload> {
        Box::pin(async move {
            self.faults.check(Op::Presign)?;
            self.inner.presign_put(key, size, sha256_hex).await
        })
    }

    pub(crate) fn presign_get<'a>(
        &'a self,
        key: &'a str,
        ttl: std::time::Duration,
    ) -> BoxFuture<'a, PresignedDownload> {
        Box::pin(async move {
            self.faults.check(Op::Presign)?;
            self.inner.presign_get(key, ttl).await
        })
    }
}
