//! Reading a scoring request's body before it is admitted: bounded in size
//! (`--max-request-bytes`), in total time (`--request-body-deadline-secs`) and
//! in rate (`--request-body-min-rate`, after a grace period), so that a slow
//! client holds only its own connection, never an admission slot.

use std::time::Duration;

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::time::Instant;

/// Time every body gets before the minimum rate applies.
pub const RATE_GRACE: Duration = Duration::from_secs(10);

/// The limits on one scoring body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, bytes.
    pub max_bytes: usize,
    /// Longest the whole body may take.
    pub deadline: Duration,
    /// Slowest average rate accepted after the grace period, bytes per second (0: no minimum).
    pub min_rate: u64,
    /// Time every body gets before the minimum rate applies ([`RATE_GRACE`]).
    pub grace: Duration,
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the limit (declared or sent).
    #[error("The request body is larger than {limit} bytes (--max-request-bytes).")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// Slower than the minimum rate, or longer than the deadline.
    #[error(
        "The request body arrived too slowly: {received} bytes in {elapsed_ms} ms; a body must arrive within {deadline_secs} s (--request-body-deadline-secs) and, after the first {grace_secs} s, at {min_rate} bytes/s or faster (--request-body-min-rate)."
    )]
    TooSlow {
        /// Bytes received.
        received: usize,
        /// Time spent.
        elapsed_ms: u128,
        /// The deadline.
        deadline_secs: u64,
        /// The grace period.
        grace_secs: u64,
        /// The rate.
        min_rate: u64,
    },
    /// The client went away or the connection failed mid-body.
    #[error("The request body could not be read: {0}")]
    Broken(String),
}

impl BodyLimits {
    /// How long after the start a body that has `received` bytes so far may still take.
    pub fn allowed(&self, received: usize) -> Duration {
        if self.min_rate == 0 {
            return self.deadline;
        }
        let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        (self.grace + earned).min(self.deadline)
    }

    fn too_slow(&self, received: usize, elapsed: Duration) -> BodyError {
        BodyError::TooSlow {
            received,
            elapsed_ms: elapsed.as_millis(),
            deadline_secs: self.deadline.as_secs(),
            grace_secs: self.grace.as_secs(),
            min_rate: self.min_rate,
        }
    }
}

/// Reads `body` whole within `limits`; `declared` is the `Content-Length`, if any.
pub async fn read(
    body: Body,
    declared: Option<usize>,
    limits: BodyLimits,
) -> Result<Bytes, BodyError> {
    let too_large = BodyError::TooLarge {
        limit: limits.max_bytes,
    };
    if declared.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large);
    }
    let started = Instant::now();
    let mut stream = body.into_data_stream();
    // A body in one chunk (the usual case) is passed on without a copy.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    loop {
        let received = first.as_ref().map_or(0, Bytes::len) + buffer.len();
        let until = started + limits.allowed(received);
        let next = match tokio::time::timeout_at(until, stream.next()).await {
            Ok(next) => next,
            Err(_) => return Err(limits.too_slow(received, started.elapsed())),
        };
        match next {
            None if buffer.is_empty() => return Ok(first.unwrap_or_default()),
            None => return Ok(buffer.freeze()),
            Some(Ok(chunk)) => {
                if received + chunk.len() > limits.max_bytes {
                    return Err(too_large);
                }
                if first.is_none() && buffer.is_empty() {
                    first = Some(chunk);
                } else {
                    if let Some(head) = first.take() {
                        buffer.reserve(
                            declared
                                .unwrap_or(0)
                                .min(limits.max_bytes)
                                .max(head.len() + chunk.len()),
                        );
                        buffer.extend_from_slice(&head);
                    }
                    buffer.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) => {
                // The per-chunk stall limit of the listener reports here too.
                return Err(BodyError::Broken(e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min_rate: u64) -> BodyLimits {
        BodyLimits {
            max_bytes: 100,
            deadline: Duration::from_secs(60),
            min_rate,
            grace: RATE_GRACE,
        }
    }

    #[test]
    fn the_allowed_time_grows_with_the_bytes_received_up_to_the_deadline() {
        let l = limits(10);
        assert_eq!(l.allowed(0), RATE_GRACE);
        assert_eq!(l.allowed(50), RATE_GRACE + Duration::from_secs(5));
        assert_eq!(l.allowed(10_000), Duration::from_secs(60));
        assert_eq!(limits(0).allowed(0), Duration::from_secs(60));
    }

    fn trickle(chunks: Vec<&'static [u8]>, every: Duration) -> Body {
        let stream = futures_util::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(Bytes::from_static(c))
        });
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_slower_than_the_minimum_rate_is_refused() {
        // 1 byte per 40 ms against 100 bytes/s after a 100 ms grace: the
        // allowance (100 ms + 10 ms a byte) runs out after a few bytes.
        let l = BodyLimits {
            grace: Duration::from_millis(100),
            ..limits(100)
        };
        let body = trickle(vec![b"x"; 50], Duration::from_millis(40));
        let err = read(body, None, l).await.unwrap_err();
        match &err {
            BodyError::TooSlow { received, .. } => assert!(*received < 10, "{received}"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("--request-body-min-rate"));
    }

    #[tokio::test]
    async fn a_body_within_the_limits_is_read_whole() {
        let body = trickle(vec![b"ab", b"cd"], Duration::from_millis(10));
        assert_eq!(
            read(body, Some(4), limits(10)).await.unwrap(),
            Bytes::from_static(b"abcd")
        );
    }

    #[tokio::test]
    async fn a_body_past_the_deadline_is_refused() {
        let l = BodyLimits {
            deadline: Duration::from_millis(100),
            ..limits(0)
        };
        let body = trickle(vec![b"x"; 20], Duration::from_millis(20));
        assert!(matches!(
            read(body, None, l).await.unwrap_err(),
            BodyError::TooSlow { .. }
        ));
    }

    #[tokio::test]
    async fn a_large_body_is_refused_by_its_length_or_its_bytes() {
        let big = Body::from(vec![0u8; 101]);
        assert_eq!(
            read(big, Some(101), limits(0)).await.unwrap_err(),
            BodyError::TooLarge { limit: 100 }
        );
        let big = Body::from(vec![0u8; 101]);
        assert_eq!(
            read(big, None, limits(0)).await.unwrap_err(),
            BodyError::TooLarge { limit: 100 }
        );
    }
}
