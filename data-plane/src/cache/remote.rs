//! The shared store: Redis, through one multiplexed connection that reconnects by itself
//! (`redis::aio::ConnectionManager`, created lazily so a node starts without Redis). Every
//! call is bounded by a short timeout; after a failure the store is skipped for a second (no
//! request waits on a Redis known to be away), and one log line per ten seconds at most says
//! it is unreachable. Callers serve uncached on any error: the store never fails a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thiserror::Error;

use super::key::Key;
use crate::time::now_ms;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the cache store's address is invalid: {0}")]
    Address(#[source] redis::RedisError),
    #[error("the cache store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the cache store failed: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("the cache store is skipped after a recent failure")]
    Skipped,
}

pub struct Remote {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// Until when (unix ms) the store is skipped after a failure.
    down_until: AtomicU64,
    /// When (unix ms) the last "unreachable" line was logged.
    logged_at: AtomicU64,
}

/// How long a failed store is skipped before it is tried again.
const SKIP_MS: u64 = 1000;
/// At most one "unreachable" log line per this many ms.
const LOG_EVERY_MS: u64 = 10_000;

impl Remote {
    /// A store at `url` (`redis://host:port/db`), keys under `prefix`. Connects on first use.
    pub fn new(url: &str, prefix: String, timeout: Duration) -> Result<Remote, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::Address)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(StoreError::Address)?;
        Ok(Remote {
            conn,
            prefix,
            timeout,
            down_until: AtomicU64::new(0),
            logged_at: AtomicU64::new(0),
        })
    }

    fn name(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    /// The stored value under `key` and how long it still lives.
    pub async fn get(&self, key: &Key) -> Result<Option<(Bytes, Duration)>, StoreError> {
        let name = self.name(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&name).cmd("PTTL").arg(&name);
        let (value, ttl_ms): (Option<Vec<u8>>, i64) = self.run(pipe).await?;
        // PTTL is -2 when the key is gone (expired between the two) and -1 without an expiry
        // (never written so by us): neither is served.
        Ok(value
            .filter(|_| ttl_ms > 0)
            .map(|v| (Bytes::from(v), Duration::from_millis(ttl_ms.unsigned_abs()))))
    }

    pub async fn set(&self, key: &Key, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.name(key))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .ignore();
        self.run::<()>(pipe).await
    }

    async fn run<T: redis::FromRedisValue>(&self, pipe: redis::Pipeline) -> Result<T, StoreError> {
        let now = now_ms_u64();
        if now < self.down_until.load(Ordering::Relaxed) {
            return Err(StoreError::Skipped);
        }
        let mut conn = self.conn.clone();
        let result =
            match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => StoreError::Redis(e),
                Err(_) => StoreError::Timeout(self.timeout),
            };
        self.down_until.store(now + SKIP_MS, Ordering::Relaxed);
        let last = self.logged_at.load(Ordering::Relaxed);
        if now >= last + LOG_EVERY_MS
            && self
                .logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %result, "response cache store unreachable: serving uncached");
        }
        Err(result)
    }
}

fn now_ms_u64() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}
