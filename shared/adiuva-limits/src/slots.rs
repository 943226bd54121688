//! Chats in flight per user: `max` slots in the shared store, each taken with a conditional
//! put and given back when the chat ends. A slot whose process died expires after its TTL.

use std::time::Duration;

use adiuva_kv::KvStore;
use serde_json::json;

use crate::LimitError;

const NAMESPACE: &str = "chat-slots";

/// A taken slot. [`ChatSlot::release`] gives it back; dropping it (a client that left, a
/// cancelled future) gives it back in the background.
#[derive(Debug)]
pub struct ChatSlot {
    held: Option<(KvStore, String)>,
}

impl ChatSlot {
    /// Gives the slot back now.
    pub async fn release(mut self) {
        if let Some((kv, key)) = self.held.take() {
            release(kv, key).await;
        }
    }
}

impl Drop for ChatSlot {
    fn drop(&mut self) {
        if let Some((kv, key)) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(release(kv, key));
        }
    }
}

async fn release(kv: KvStore, key: String) {
    if let Err(err) = kv.delete(NAMESPACE, &key).await {
        tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not give back a chat slot; it expires on its own");
    }
}

pub(crate) async fn acquire(
    kv: &KvStore,
    user_id: &str,
    max: u32,
    ttl: Duration,
) -> Result<ChatSlot, LimitError> {
    for slot in 0..max {
        let key = format!("{user_id}:{slot}");
        match kv
            .put_if_absent(NAMESPACE, &key, &json!(1), Some(ttl))
            .await
        {
            Ok(true) => {
                return Ok(ChatSlot {
                    held: Some((kv.clone(), key)),
                });
            }
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "chat slot store failed; chat let through");
                return Ok(ChatSlot { held: None });
            }
        }
    }
    tracing::info!(user_id, max, "chat refused: all chat slots in use");
    Err(LimitError::TooManyChats { max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_max_slots_and_released_ones_come_back() {
        let kv = KvStore::Memory(adiuva_kv::MemoryStore::new());
        let ttl = Duration::from_secs(60);
        let first = acquire(&kv, "u1", 2, ttl).await.unwrap();
        let second = acquire(&kv, "u1", 2, ttl).await.unwrap();
        assert_eq!(
            acquire(&kv, "u1", 2, ttl).await.unwrap_err(),
            LimitError::TooManyChats { max: 2 }
        );
        // Another user has slots of their own.
        acquire(&kv, "u2", 2, ttl).await.unwrap().release().await;
        first.release().await;
        let third = acquire(&kv, "u1", 2, ttl).await.unwrap();
        drop(second);
        // The drop gives the slot back in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
        acquire(&kv, "u1", 2, ttl).await.unwrap();
        drop(third);
    }
}
