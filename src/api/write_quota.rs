//! The per-user write quota: how many readings one user id may write per hour
//! through `POST /api/bg/{userId}/readings`, so that one id (a runaway uploader,
//! a stolen token) cannot fill the store. A batch is admitted or refused whole.
//! Per process, like the request rate limits (docs/rate-limits.md).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{InsufficientCapacity, Quota, RateLimiter};

use super::error::ApiError;
use crate::domain::{FieldError, UserId};

/// Users whose quota has refilled are forgotten after this many checks.
const SWEEP_EVERY: u64 = 4096;

pub struct WriteQuota {
    limiter: governor::DefaultKeyedRateLimiter<UserId>,
    clock: DefaultClock,
    per_hour: u32,
    checks: AtomicU64,
}

impl WriteQuota {
    /// `per_hour` readings per user: all at once, then refilling evenly over the hour.
    pub fn per_hour(per_hour: u32) -> Self {
        let per_hour = per_hour.max(1);
        let quota = Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN));
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            per_hour,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes `readings` from `user`'s quota, or none of them: 429 with
    /// Retry-After (when the whole batch fits again) if they would cross it,
    /// 413 for a batch larger than the whole quota (it can never fit).
    pub fn admit(&self, user: &UserId, readings: usize) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let Some(n) = u32::try_from(readings).ok().and_then(NonZeroU32::new) else {
            return if readings == 0 {
                Ok(())
            } else {
                Err(self.too_large(readings))
            };
        };
        let per_hour = self.per_hour;
        match self.limiter.check_key_n(user, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                metrics::counter!("write_quota_refused_total").increment(1);
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ApiError::QuotaExceeded {
                    retry_after: retry_after.max(1),
                    message: format!(
                        "write quota exceeded: {user} may write {per_hour} readings per hour \
                         (WRITE_QUOTA_READINGS_PER_HOUR) and these {readings} would cross it; \
                         nothing was stored, retry after {} s",
                        retry_after.max(1)
                    ),
                })
            }
            Err(InsufficientCapacity(_)) => Err(self.too_large(readings)),
        }
    }

    fn too_large(&self, readings: usize) -> ApiError {
        metrics::counter!("write_quota_refused_total").increment(1);
        ApiError::Validation {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "a batch of {readings} readings is more than the hourly write quota ({}, \
                 WRITE_QUOTA_READINGS_PER_HOUR); split it",
                self.per_hour
            ),
            errors: vec![FieldError::new(
                "/readings",
                "more than the hourly write quota",
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_admitted_or_refused_whole() {
        let quota = WriteQuota::per_hour(10);
        let user = UserId::parse("quota-unit").unwrap();
        quota.admit(&user, 6).unwrap();
        let refused = quota.admit(&user, 5).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The refused batch took nothing: what is left still fits.
        quota.admit(&user, 4).unwrap();
        // Another user has a quota of their own.
        quota
            .admit(&UserId::parse("quota-other").unwrap(), 10)
            .unwrap();
        assert_eq!(
            quota.admit(&user, 11).unwrap_err().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
