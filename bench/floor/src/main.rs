//! The HTTP floor for `bench/scoring_compare.sh`: the least a Rust HTTP/1.1 server can do for
//! a scoring request. `POST /score` answers 200 with the request body as `application/json`;
//! anything else answers 404. Prints `listening on 127.0.0.1:PORT` once bound.
//!
//! Usage: `berth-bench-floor [ADDR]` (default `127.0.0.1:0`).

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Bodies above this are refused (the benchmark sends 347 bytes).
const MAX_BODY: usize = 1 << 20;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/score" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match body.collect().await {
        Ok(collected) => Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(collected.to_bytes()))
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))),
        Err(_) => Ok(status(StatusCode::PAYLOAD_TOO_LARGE)),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
