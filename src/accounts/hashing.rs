//! Argon2id password hashing off the async runtime, in a bounded pool: at most
//! `concurrency` hashes run at once (each on a `spawn_blocking` thread), at most
//! `queue` requests wait for a slot, and none waits longer than `timeout`. A
//! login storm then costs a fixed number of threads and answers the rest with
//! 503 instead of piling up blocking work that would starve the API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::AccountError;

/// The Argon2id cost of new hashes (stored hashes carry their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashCost {
    fn argon2(self) -> Result<Argon2<'static>, AccountError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| AccountError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// An Argon2id PHC string of `password` with a fresh 16-byte salt
    /// (blocking: 50-100 ms at the default cost).
    pub fn hash_blocking(self, password: &str) -> Result<String, AccountError> {
        let salt: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| AccountError::Internal(format!("argon2 salt: {e}")))?;
        Ok(self
            .argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccountError::Internal(format!("argon2 hash: {e}")))?
            .to_string())
    }
}

/// Does `password` match the PHC string `stored` (at the cost stored with it)?
/// An unparseable hash is an error, not a mismatch. Blocking.
pub fn verify_blocking(stored: &str, password: &str) -> Result<bool, AccountError> {
    let parsed = PasswordHash::new(stored)
        .map_err(|e| AccountError::Internal(format!("stored password hash: {e}")))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// The bounded pool.
pub struct HashPool {
    cost: HashCost,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    timeout: Duration,
}

impl HashPool {
    pub fn new(cost: HashCost, concurrency: usize, queue: usize, timeout: Duration) -> Self {
        Self {
            cost,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
            timeout,
        }
    }

    pub fn cost(&self) -> HashCost {
        self.cost
    }

    /// Hashes a new password in the pool.
    pub async fn hash(&self, password: String) -> Result<String, AccountError> {
        let cost = self.cost;
        self.run(move || cost.hash_blocking(&password)).await?
    }

    /// Verifies a password against a stored hash in the pool.
    pub async fn verify(&self, stored: String, password: String) -> Result<bool, AccountError> {
        self.run(move || verify_blocking(&stored, &password))
            .await?
    }

    /// Runs `work` on a blocking thread once a slot is free: at once if one
    /// is, after waiting in the queue (bounded in length and time) otherwise,
    /// `Busy` when the queue is full or the wait too long.
    async fn run<T, F>(&self, work: F) -> Result<T, AccountError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    metrics::counter!("cgm_password_hash_refused_total").increment(1);
                    return Err(AccountError::Busy);
                }
                let waited =
                    tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        metrics::counter!("cgm_password_hash_refused_total").increment(1);
                        return Err(AccountError::Busy);
                    }
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|e| AccountError::Internal(format!("password hashing task: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let hash = CHEAP.hash_blocking("correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{hash}");
        assert!(verify_blocking(&hash, "correct horse battery staple").unwrap());
        assert!(!verify_blocking(&hash, "Correct horse battery staple").unwrap());
        assert!(verify_blocking("not a hash", "x").is_err());
        // A fresh salt each time.
        assert_ne!(
            hash,
            CHEAP.hash_blocking("correct horse battery staple").unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        // One slot, no queue: while one hash holds the slot, the next is Busy.
        let pool = Arc::new(HashPool::new(CHEAP, 1, 0, Duration::from_secs(5)));
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let busy = pool.clone();
        let holder = tokio::spawn(async move {
            busy.run(move || {
                let _ = started_tx.send(());
                let _ = hold_rx.recv();
            })
            .await
        });
        started_rx.await.unwrap();
        assert!(matches!(
            pool.hash("another password".into()).await,
            Err(AccountError::Busy)
        ));
        hold_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert!(pool.hash("another password".into()).await.is_ok());
    }
}
