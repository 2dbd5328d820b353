//! The yardstick: a bare hyper 1.x HTTP/1.1 server that reads each body to the end and
//! answers 200 with a tiny JSON, storing nothing. Whatever the relay costs beyond this is
//! verification, the envelope, the store and the fsync.
//!
//! Accepted sockets keep Nagle's algorithm on, as the relay's own server leaves them, so
//! the two servers differ only in what they do with a request.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Accepts connections on `listener` and serves each on its own task, until the runtime is
/// shut down.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read to the end, as the relay does, and hold the bytes until the answer is built.
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes());
    let status = match body {
        Ok(bytes) if !bytes.is_empty() => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(br#"{"status":"accepted"}"#)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    Ok(response)
}
