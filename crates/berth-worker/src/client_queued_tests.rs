//! Requests queued behind others with a start-by deadline ([`WorkerConn::score_queued`]):
//! when they start, when they are given up, and that one whose predecessor was answered in
//! time is never given up. The worker side is driven by hand, like the shim's serial loop.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{ConnError, PendingConn, Queued, ScoreAnswer, Start, WorkerConn};
use crate::protocol::{
    self, DEFAULT_MAX_FRAME, FLAG_RUN_RETURNED, GatewayMessage, ScoreRequest, ScoreResult,
    WorkerMessage,
};

/// The worker end of the socket, answering only when told to.
struct Worker {
    stream: UnixStream,
    buf: BytesMut,
}

impl Worker {
    async fn next(&mut self) -> GatewayMessage {
        loop {
            if let Some((kind, payload)) =
                protocol::split_frame(&mut self.buf, DEFAULT_MAX_FRAME).unwrap()
            {
                return protocol::decode_gateway(kind, payload).unwrap();
            }
            assert!(self.stream.read_buf(&mut self.buf).await.unwrap() > 0);
        }
    }

    async fn answer(&mut self, seq: u64, body: &'static [u8]) {
        let wire = protocol::encode_worker(&WorkerMessage::ScoreResult(ScoreResult {
            seq,
            status: 200,
            exec_us: 1,
            flags: FLAG_RUN_RETURNED,
            headers: Vec::new(),
            body: Bytes::from_static(body),
        }))
        .unwrap();
        self.stream.write_all(&wire).await.unwrap();
    }

    /// What the shim does with a SCORE_BY: expire it past its deadline, else run it.
    async fn serve_score_by(&mut self, body: &'static [u8]) -> bool {
        let GatewayMessage::ScoreBy { seq, start_by, .. } = self.next().await else {
            panic!("a request queued behind another goes out as SCORE_BY");
        };
        if protocol::monotonic_ns() >= start_by {
            let wire = protocol::encode_worker(&WorkerMessage::ScoreExpired(seq)).unwrap();
            self.stream.write_all(&wire).await.unwrap();
            false
        } else {
            self.answer(seq, body).await;
            true
        }
    }
}

fn connected() -> (WorkerConn, Worker) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let conn = PendingConn::new(ours, DEFAULT_MAX_FRAME).into_conn();
    let worker = Worker {
        stream: theirs,
        buf: BytesMut::new(),
    };
    (conn, worker)
}

fn post(body: &'static [u8]) -> ScoreRequest {
    ScoreRequest {
        method: "POST".into(),
        body: Bytes::from_static(body),
        ..ScoreRequest::default()
    }
}

/// Request 1 (to an idle worker: a plain SCORE, which the worker takes off the socket and
/// holds) and request 2 queued behind it with `start_by`; returns both and request 1's seq.
async fn one_running_one_queued(
    conn: &WorkerConn,
    worker: &mut Worker,
    start_by: u64,
) -> (Queued, Queued, u64) {
    let first = conn
        .score_queued(post(b"a"), u64::MAX, u64::MAX, in_ms(10_000))
        .unwrap();
    let second = conn
        .score_queued(post(b"b"), u64::MAX, u64::MAX, start_by)
        .unwrap();
    let GatewayMessage::Score { seq, .. } = worker.next().await else {
        panic!("nothing is queued before request 1: a plain SCORE");
    };
    (first, second, seq)
}

fn in_ms(ms: u64) -> u64 {
    protocol::monotonic_ns() + ms * 1_000_000
}

fn body(answer: ScoreAnswer) -> Bytes {
    match answer {
        ScoreAnswer::Whole(result) => result.body,
        ScoreAnswer::Streamed(_) => panic!("small answers come whole"),
    }
}

#[tokio::test]
async fn to_an_idle_worker_a_request_is_a_plain_score_that_starts_at_once() {
    let (conn, mut worker) = connected();
    let before = Instant::now();
    let mut first = conn
        .score_queued(post(b"a"), u64::MAX, u64::MAX, in_ms(10_000))
        .unwrap();
    let GatewayMessage::Score { seq, .. } = worker.next().await else {
        panic!("nothing is queued before it: a plain SCORE");
    };
    match first.start() {
        Start::Started(at) => assert!(at >= before),
        other => panic!("{other:?}"),
    }
    worker.answer(seq, b"a").await;
    let (answer, started) = first.answer().await.unwrap();
    assert_eq!(body(answer), Bytes::from_static(b"a"));
    assert!(started.is_some());
}

#[tokio::test]
async fn a_queued_request_starts_when_the_answer_before_it_is_read() {
    let (conn, mut worker) = connected();
    let (mut first, mut second, seq) =
        one_running_one_queued(&conn, &mut worker, in_ms(10_000)).await;
    assert_eq!(second.start(), Start::Waiting);
    assert_eq!(conn.in_flight(), 2);
    worker.answer(seq, b"a").await;
    let answered_first = first.answer().await.unwrap();
    assert_eq!(body(answered_first.0), Bytes::from_static(b"a"));
    let Start::Started(at) = second.start() else {
        panic!("answer 1 is read: request 2 has started");
    };
    assert!(worker.serve_score_by(b"b").await);
    let (answer, started) = second.answer().await.unwrap();
    assert_eq!(body(answer), Bytes::from_static(b"b"));
    assert_eq!(started, Some(at));
    assert_eq!(conn.in_flight(), 0);
}

#[tokio::test]
async fn past_its_deadline_a_request_the_worker_has_not_reached_is_given_up_and_skipped() {
    let (conn, mut worker) = connected();
    let (mut first, mut second, seq) = one_running_one_queued(&conn, &mut worker, in_ms(20)).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(second.start(), Start::Expired);
    assert_eq!(
        conn.in_flight(),
        1,
        "a request given up is no longer in flight"
    );
    // The worker finishes the first request, then skips the second without running it.
    worker.answer(seq, b"a").await;
    assert!(!worker.serve_score_by(b"b").await);
    assert_eq!(
        body(first.answer().await.unwrap().0),
        Bytes::from_static(b"a")
    );
    assert!(matches!(second.answer().await, Err(ConnError::Expired)));
    assert_eq!(conn.in_flight(), 0);
    // The connection goes on.
    let mut third = conn
        .score_queued(post(b"c"), u64::MAX, u64::MAX, in_ms(10_000))
        .unwrap();
    let GatewayMessage::Score { seq, .. } = worker.next().await else {
        panic!("the worker is idle again: a plain SCORE");
    };
    worker.answer(seq, b"c").await;
    assert_eq!(
        body(third.answer().await.unwrap().0),
        Bytes::from_static(b"c")
    );
}

#[tokio::test]
async fn the_worker_expires_a_request_it_reaches_late_even_when_nobody_asked() {
    let (conn, mut worker) = connected();
    let (mut first, mut second, seq) = one_running_one_queued(&conn, &mut worker, in_ms(5)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    worker.answer(seq, b"a").await;
    assert!(!worker.serve_score_by(b"b").await);
    first.answer().await.unwrap();
    assert!(matches!(second.answer().await, Err(ConnError::Expired)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_predecessor_was_answered_in_time_is_never_given_up() {
    // The worker answers request 1 just before request 2's deadline, then runs request 2; the
    // gateway asks at the deadline. Whatever the interleaving, it must never call request 2
    // given up when the worker ran it.
    for round in 0..200u64 {
        let (conn, mut worker) = connected();
        let deadline = in_ms(2);
        let (mut first, mut second, seq) =
            one_running_one_queued(&conn, &mut worker, deadline).await;
        // Answer 1 lands at various points around the deadline.
        let lead_us = round % 40 * 50;
        while protocol::monotonic_ns() + lead_us * 1000 < deadline {
            std::hint::spin_loop();
        }
        worker.answer(seq, b"a").await;
        let ran = worker.serve_score_by(b"b").await;
        while protocol::monotonic_ns() < deadline {
            tokio::task::yield_now().await;
        }
        // Ask as the gateway does: until the answer itself is in, if it is unsure.
        let verdict = loop {
            match second.start() {
                Start::Unsure => {
                    let answered =
                        tokio::time::timeout(Duration::from_millis(1), second.answer()).await;
                    if let Ok(answer) = answered {
                        break Err(answer);
                    }
                }
                verdict => break Ok(verdict),
            }
        };
        match (ran, verdict) {
            (true, Ok(Start::Started(_))) => {
                assert_eq!(
                    body(second.answer().await.unwrap().0),
                    Bytes::from_static(b"b")
                );
            }
            (true, Err(answer)) => {
                assert_eq!(body(answer.unwrap().0), Bytes::from_static(b"b"));
            }
            (false, Ok(Start::Started(_) | Start::Expired)) => {
                assert!(matches!(second.answer().await, Err(ConnError::Expired)));
            }
            (false, Err(answer)) => assert!(matches!(answer, Err(ConnError::Expired))),
            (ran, verdict) => panic!(
                "round {round}: the worker {} request 2 but the gateway says {verdict:?}",
                if ran { "ran" } else { "skipped" }
            ),
        }
        first.answer().await.unwrap();
    }
}

#[tokio::test]
async fn a_connection_that_closes_before_a_queued_request_started_says_so() {
    let (conn, mut worker) = connected();
    let (mut first, mut second, _) =
        one_running_one_queued(&conn, &mut worker, in_ms(10_000)).await;
    drop(worker);
    assert!(matches!(first.answer().await, Err(ConnError::Closed(_))));
    assert!(matches!(
        second.answer().await,
        Err(ConnError::ClosedBeforeStart(_))
    ));
}

#[tokio::test]
async fn a_connection_that_closes_with_a_request_given_up_counts_nothing_in_flight() {
    let (conn, mut worker) = connected();
    let (mut first, second, _) = one_running_one_queued(&conn, &mut worker, in_ms(5)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(second.start(), Start::Expired);
    drop(worker);
    assert!(matches!(first.answer().await, Err(ConnError::Closed(_))));
    assert_eq!(conn.in_flight(), 0);
}
