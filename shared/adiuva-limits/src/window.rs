//! A sliding window approximated by two fixed-window counters, as Cloudflare's rate limiter:
//! the estimate at a moment `e` (0..1) into the current window is
//! `previous * (1 - e) + current`. Both counters live in the shared store, keyed by the window's
//! index, so every instance counts the same requests, and each expires after two windows.
//!
//! Taking a unit is one conditional increment of the current counter: it succeeds only while
//! the estimate stays within the limit, so concurrent requests can never together pass it, and
//! refused requests are not counted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adiuva_kv::{Counted, KvError, KvStore};

/// One subject's sliding window in a namespace.
#[derive(Debug, Clone)]
pub struct Window {
    namespace: &'static str,
    subject: String,
    length_ms: u64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub previous: u64,
    pub current: u64,
    /// How far into the current window, 0..1.
    pub elapsed: f64,
    length_ms: u64,
}

/// What [`Window::take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub allowed: bool,
    /// The index of the window whose counter was raised: [`Window::give_back`] lowers that
    /// counter, also when the window has moved on in the meantime.
    pub index: u64,
    pub remaining: u64,
    pub reset_secs: u64,
    pub retry_after_secs: u64,
}

impl Estimate {
    fn weighted_previous(&self) -> f64 {
        self.previous as f64 * (1.0 - self.elapsed)
    }

    /// The estimated count in the sliding window.
    pub fn value(&self) -> f64 {
        self.weighted_previous() + self.current as f64
    }

    /// How many more units fit under `limit` now.
    pub fn room(&self, limit: u64) -> u64 {
        let room = limit as f64 - self.value();
        if room <= 0.0 { 0 } else { room.floor() as u64 }
    }

    /// Whole seconds until the current window ends.
    pub fn reset_secs(&self) -> u64 {
        let left_ms = (1.0 - self.elapsed) * self.length_ms as f64;
        (left_ms / 1000.0).ceil().max(1.0) as u64
    }

    /// `None` when one more unit fits under `limit`; else the whole seconds (rounded up, at
    /// least 1) until it will.
    pub fn retry_after(&self, limit: u64) -> Option<u64> {
        if self.value() + 1.0 <= limit as f64 {
            return None;
        }
        let length = self.length_ms as f64;
        let left_in_window = (1.0 - self.elapsed) * length;
        let needed = limit as f64 - 1.0 - self.current as f64;
        // Within this window, the previous window's weight decays linearly to zero.
        let wait_ms = if needed >= 0.0 && self.previous > 0 {
            // previous * (left - t) / length <= needed
            left_in_window - needed * length / self.previous as f64
        } else {
            // Only the next window helps: there, this window's count is the one that decays.
            let after = if self.current == 0 {
                0.0
            } else {
                ((1.0 - (limit as f64 - 1.0) / self.current as f64) * length).max(0.0)
            };
            left_in_window + after
        };
        Some(((wait_ms / 1000.0).ceil() as u64).max(1))
    }
}

impl Window {
    pub fn new(namespace: &'static str, subject: &str, length: Duration) -> Self {
        Self {
            namespace,
            subject: subject.to_owned(),
            length_ms: u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    fn key(&self, index: u64) -> String {
        format!("{}:{index}", self.subject)
    }

    /// Counters expire two windows after their own starts: long enough to be the previous one.
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.length_ms.saturating_mul(2))
    }

    fn position(&self) -> (u64, f64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            });
        let index = now / self.length_ms;
        let elapsed = (now % self.length_ms) as f64 / self.length_ms as f64;
        (index, elapsed)
    }

    /// Counts one unit unless that would take the estimate above `limit`.
    pub async fn take(&self, kv: &KvStore, limit: u64) -> Result<Taken, KvError> {
        let (index, elapsed) = self.position();
        let previous = kv
            .count(self.namespace, &self.key(index.saturating_sub(1)))
            .await?;
        let weighted = previous as f64 * (1.0 - elapsed);
        // The current counter may reach `max` and the estimate stays within the limit.
        let max = (limit as f64 - weighted).floor().max(0.0) as u64;
        let counted = kv
            .increment(self.namespace, &self.key(index), max, self.ttl())
            .await?;
        let (allowed, current) = match counted {
            Counted::Added(current) => (true, current),
            Counted::Full(current) => (false, current),
        };
        let estimate = Estimate {
            previous,
            current,
            elapsed,
            length_ms: self.length_ms,
        };
        Ok(Taken {
            allowed,
            index,
            remaining: estimate.room(limit),
            reset_secs: estimate.reset_secs(),
            retry_after_secs: if allowed {
                0
            } else {
                estimate.retry_after(limit).unwrap_or(1)
            },
        })
    }

    /// Gives back a unit [`Window::take`] counted in window `index` (its [`Taken::index`]).
    /// Lowering the counter that was raised, rather than the current one, keeps the estimate
    /// right when the window moved on while the attempt ran.
    pub async fn give_back(&self, kv: &KvStore, index: u64) -> Result<(), KvError> {
        kv.decrement(self.namespace, &self.key(index))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(previous: u64, current: u64, elapsed: f64) -> Estimate {
        Estimate {
            previous,
            current,
            elapsed,
            length_ms: 60_000,
        }
    }

    #[test]
    fn the_previous_window_weighs_what_is_left_of_it() {
        let e = estimate(20, 5, 0.75);
        assert_eq!(e.value(), 10.0);
        assert_eq!(e.room(20), 10);
        assert_eq!(e.retry_after(20), None);
        assert_eq!(e.reset_secs(), 15);
    }

    #[test]
    fn retry_after_is_when_one_more_fits() {
        // Full in this window alone at its start: the next window, where 20 decays to 19.
        let full = estimate(0, 20, 0.0);
        assert_eq!(full.retry_after(20), Some(60 + 3));
        // Full at 50 s: 10 s to the window's end, then 3 s of decay.
        assert_eq!(estimate(0, 20, 50.0 / 60.0).retry_after(20), Some(13));
        // Full because of the previous window: it decays within this one.
        // 20 * (1 - 0.5 - t/60) + 10 + 1 <= 20  =>  t >= 3 s.
        assert_eq!(estimate(20, 10, 0.5).retry_after(20), Some(3));
        // Never less than a second.
        assert_eq!(estimate(0, 20, 0.9999).retry_after(20), Some(4));
    }

    #[tokio::test]
    async fn take_counts_until_the_limit_and_refuses_after() {
        let kv = KvStore::Memory(adiuva_kv::MemoryStore::new());
        let window = Window::new("rate", "u1", Duration::from_secs(3600));
        for expected_left in (0..3).rev() {
            let taken = window.take(&kv, 3).await.unwrap();
            assert!(taken.allowed);
            assert_eq!(taken.remaining, expected_left);
        }
        let refused = window.take(&kv, 3).await.unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert!(refused.retry_after_secs >= 1);
        assert!(refused.retry_after_secs <= refused.reset_secs + 3600);
        // A higher limit (a tier upgrade) lets the next one through at once.
        let upgraded = window.take(&kv, 4).await.unwrap();
        assert!(upgraded.allowed);
        // A unit given back makes room for one more under the old limit.
        window.give_back(&kv, upgraded.index).await.unwrap();
        window.give_back(&kv, upgraded.index).await.unwrap();
        assert!(window.take(&kv, 3).await.unwrap().allowed);
        assert!(!window.take(&kv, 3).await.unwrap().allowed);
    }
}
