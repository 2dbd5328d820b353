//! A load balancer in miniature: a round-robin HTTP proxy in front of the replicas. A request
//! goes to the next replica in turn; if that one refuses the connection (it was killed), the
//! proxy tries the others, as a balancer with passive health checks would. With none left it
//! answers 502.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running proxy.
pub struct RoundRobin {
    /// Where it listens.
    pub address: SocketAddr,
    upstreams: Arc<Upstreams>,
    task: tokio::task::JoinHandle<()>,
}

struct Upstreams {
    urls: Mutex<Vec<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
}

impl RoundRobin {
    /// Starts a proxy to `urls` (`http://host:port`) on a random loopback port.
    pub async fn start(urls: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address");
        let upstreams = Arc::new(Upstreams {
            urls: Mutex::new(urls),
            next: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("a client"),
        });
        let shared = upstreams.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let upstreams = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| forward(upstreams.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            upstreams,
            task,
        }
    }

    /// The ingest URL through the proxy.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/mykaarma", self.address)
    }

    /// Adds a replica to the rotation.
    pub fn add(&self, url: String) {
        self.upstreams.urls.lock().unwrap().push(url);
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    upstreams: Arc<Upstreams>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let urls = upstreams.urls.lock().unwrap().clone();
    let first = upstreams.next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..urls.len() {
        let url = &urls[(first + offset) % urls.len()];
        let mut forwarded = upstreams
            .client
            .request(parts.method.clone(), format!("{url}{}", parts.uri))
            .body(body.clone());
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
                forwarded = forwarded.header(name, value);
            }
        }
        match forwarded.send().await {
            Ok(answer) => {
                let status = answer.status();
                let content_type = answer.headers().get(hyper::header::CONTENT_TYPE).cloned();
                let bytes = answer.bytes().await.unwrap_or_default();
                let mut response = Response::new(Full::new(bytes));
                *response.status_mut() = status;
                if let Some(content_type) = content_type {
                    response
                        .headers_mut()
                        .insert(hyper::header::CONTENT_TYPE, content_type);
                }
                return Ok(response);
            }
            // Refused: the replica is gone, nothing was sent; the next one gets it.
            Err(error) if error.is_connect() => continue,
            // The replica died with the request in flight: the sender retries, as it would
            // behind a real balancer.
            Err(_) => break,
        }
    }
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"{\"status\":\"bad_gateway\"}",
    )));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    Ok(response)
}
