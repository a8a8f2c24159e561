//! The replica's side of the remote connection: accept gateways over TLS,
//! authenticate each (AUTH frame with the revision's secret, constant time),
//! relay the worker's HELLO and INIT_OK, then multiplex every gateway's
//! requests onto the replica's one worker connection.
//!
//! Request ids are rewritten for free: each request goes through the worker
//! connection ([`WorkerConn`], which numbers its own frames), and the answer is
//! written back to the connection that asked under the id it used. Answers on
//! one gateway connection leave in the order its requests came (as the worker
//! protocol requires). SHUTDOWN from a gateway ends that gateway's connection
//! once its answers are written, never the worker: other servers may still use
//! it; the replica's owner stops the replica itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_worker::protocol::{self, GatewayMessage, WorkerMessage};
use berth_worker::{ConnError, Hello, InitOk, WorkerConn};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::wire;

/// Longest a gateway may take for the TLS handshake and its AUTH frame.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most requests one gateway connection may have in flight here.
const MAX_IN_FLIGHT: usize = 4096;

/// The worker the replica serves.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The connection to it.
    pub conn: WorkerConn,
    /// Its HELLO, relayed to every gateway.
    pub hello: Hello,
    /// Its INIT_OK, relayed to every gateway.
    pub init: InitOk,
}

/// Accepts gateways on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    secret: Arc<str>,
    upstream: Upstream,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a gateway connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, secret, upstream) = (acceptor.clone(), secret.clone(), upstream.clone());
        tokio::spawn(async move {
            let authed = tokio::time::timeout(AUTH_TIMEOUT, async {
                let mut tls = acceptor.accept(tcp).await.ok()?;
                authenticate(&mut tls, &secret).await.then_some(tls)
            })
            .await
            .ok()
            .flatten();
            let Some(tls) = authed else {
                tracing::warn!(%peer, "refused a connection: no TLS, or no valid AUTH frame first");
                return;
            };
            tracing::info!(%peer, "gateway connected");
            if let Err(reason) = relay(tls, &upstream).await {
                tracing::info!(%peer, %reason, "gateway connection ended");
            }
        });
    }
}

/// Reads the first frame; true when it is AUTH with `secret`.
async fn authenticate<S: AsyncRead + Unpin>(stream: &mut S, secret: &str) -> bool {
    let mut head = [0u8; protocol::FRAME_HEADER_LEN];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if head[4] != wire::AUTH_FRAME || len == 0 || len > wire::MAX_AUTH_FRAME {
        return false;
    }
    let mut presented = vec![0u8; len as usize - 1];
    if stream.read_exact(&mut presented).await.is_err() {
        return false;
    }
    presented.len() == secret.len() && bool::from(presented.ct_eq(secret.as_bytes()))
}

type Answer = Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>;

fn encoded(message: &WorkerMessage) -> Result<Bytes, String> {
    protocol::encode_worker(message).map_err(|e| e.to_string())
}

fn closed(e: ConnError) -> String {
    format!("the worker connection failed: {e}")
}

/// What to do for one gateway frame: the answer to write, in order.
fn answer(upstream: &Upstream, message: GatewayMessage) -> Option<Answer> {
    let conn = upstream.conn.clone();
    Some(match message {
        GatewayMessage::Score { seq, request } => Box::pin(async move {
            let mut result = conn.score(request).await.map_err(closed)?;
            result.seq = seq;
            encoded(&WorkerMessage::ScoreResult(result))
        }),
        // Deadlines are on the gateway's monotonic clock, which this machine does not share;
        // gateways send SCORE_BY only over a local Unix socket.
        GatewayMessage::ScoreBy { .. } => Box::pin(async {
            Err(
                "SCORE_BY is not accepted over TCP: its deadline is on another machine's clock"
                    .to_string(),
            )
        }),
        GatewayMessage::Ping(nonce) => Box::pin(async move {
            conn.ping().await.map_err(closed)?;
            encoded(&WorkerMessage::Pong(nonce))
        }),
        GatewayMessage::Swagger(version) => Box::pin(async move {
            let result = conn.swagger(&version).await.map_err(closed)?;
            encoded(&WorkerMessage::SwaggerResult(result))
        }),
        GatewayMessage::Shutdown => return None,
    })
}

/// Serves one authenticated gateway until it leaves, sends SHUTDOWN, or the worker goes.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    upstream: &Upstream,
) -> Result<(), String> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    for message in [
        WorkerMessage::Hello(upstream.hello.clone()),
        WorkerMessage::InitOk(upstream.init),
    ] {
        writer
            .write_all(&encoded(&message)?)
            .await
            .map_err(|e| e.to_string())?;
    }
    writer.flush().await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut pending: FuturesOrdered<Answer> = FuturesOrdered::new();
    let mut reading = true;
    let max_frame = upstream.conn.max_frame();
    loop {
        if !reading && pending.is_empty() {
            let _ = writer.shutdown().await;
            return Ok(());
        }
        tokio::select! {
            read = reader.read_buf(&mut buf), if reading && pending.len() < MAX_IN_FLIGHT => {
                match read {
                    Ok(0) => reading = false,
                    Ok(_) => {
                        while let Some((kind, payload)) =
                            protocol::split_frame(&mut buf, max_frame).map_err(|e| e.to_string())?
                        {
                            let message =
                                protocol::decode_gateway(kind, payload).map_err(|e| e.to_string())?;
                            match answer(upstream, message) {
                                Some(future) => pending.push_back(future),
                                None => {
                                    reading = false;
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Some(done) = pending.next() => {
                let frame = done?;
                writer.write_all(&frame).await.map_err(|e| e.to_string())?;
                if pending.is_empty() {
                    writer.flush().await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
}
