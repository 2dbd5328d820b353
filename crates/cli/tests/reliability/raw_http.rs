//! HTTP/1.1 spoken by hand over TCP, for what a polite client never does: requests the
//! protocol layer must refuse, and clients that hold connections open, dribble their
//! headers or body a byte at a time, or never stop sending headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw exchange may take before the test calls it hung.
const EXCHANGE_PATIENCE: Duration = Duration::from_secs(30);

/// Sends `request` on a fresh connection and reads the answer's status code: `None` when
/// the server closed the connection without answering. A server that answers early (e.g.
/// 431 half-way through a huge header) may close while we still write; the answer it sent is
/// still read.
pub async fn exchange(address: SocketAddr, request: &[u8]) -> Option<u16> {
    let attempt = async {
        let mut stream = TcpStream::connect(address)
            .await
            .expect("the relay accepts");
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if status_of(&answer).is_some() {
                        break;
                    }
                }
            }
        }
        status_of(&answer)
    };
    tokio::time::timeout(EXCHANGE_PATIENCE, attempt)
        .await
        .unwrap_or_else(|_| panic!("no answer and no close within {EXCHANGE_PATIENCE:?}"))
}

/// The status code of `HTTP/1.x NNN …`, once the status line is in.
fn status_of(answer: &[u8]) -> Option<u16> {
    let line_end = answer.windows(2).position(|pair| pair == b"\r\n")?;
    let line = std::str::from_utf8(&answer[..line_end]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// Counters the abusive clients keep, read after they stop.
#[derive(Debug, Default)]
pub struct AbuseCounters {
    /// Connections opened in all.
    pub connections: AtomicUsize,
    /// Connections the server closed (or answered and closed) while the abuser was at it.
    pub cut_off: AtomicUsize,
    /// Answers per class: 408, 431 and anything else.
    pub answered_408: AtomicUsize,
    /// 431 Request Header Fields Too Large.
    pub answered_431: AtomicUsize,
    /// Other answers.
    pub answered_other: AtomicUsize,
    /// The longest a dribbling connection was kept open before the server ended it.
    pub longest_held_ms: AtomicUsize,
}

impl AbuseCounters {
    fn answered(&self, status: Option<u16>) {
        match status {
            Some(408) => &self.answered_408,
            Some(431) => &self.answered_431,
            Some(_) => &self.answered_other,
            None => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn held(&self, since: Instant) {
        let held = since.elapsed().as_millis() as usize;
        self.longest_held_ms.fetch_max(held, Ordering::Relaxed);
    }
}

/// A set of abusive clients running until [`Abusers::stop`].
pub struct Abusers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Abusers {
    /// Nothing running yet.
    pub fn new() -> Self {
        Self {
            stop: Arc::default(),
            tasks: Vec::new(),
        }
    }

    /// `count` connections that connect and send nothing; each one the server closes is
    /// opened again.
    pub fn idle(&mut self, address: SocketAddr, count: usize, counters: Arc<AbuseCounters>) {
        for _ in 0..count {
            let (stop, counters) = (self.stop.clone(), counters.clone());
            self.tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(address).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let mut byte = [0u8; 1];
                    // Wait for the server to close it (or for the end of the test).
                    loop {
                        tokio::select! {
                            read = stream.read(&mut byte) => {
                                if matches!(read, Ok(0) | Err(_)) {
                                    counters.cut_off.fetch_add(1, Ordering::Relaxed);
                                }
                                break;
                            }
                            () = tokio::time::sleep(Duration::from_millis(200)) => {
                                if stop.load(Ordering::Relaxed) { return; }
                            }
                        }
                    }
                }
            }));
        }
    }

    /// `count` clients that send an endless stream of headers as fast as they can, on a new
    /// connection each time the server refuses one.
    pub fn header_flood(
        &mut self,
        address: SocketAddr,
        count: usize,
        counters: Arc<AbuseCounters>,
    ) {
        for _ in 0..count {
            let (stop, counters) = (self.stop.clone(), counters.clone());
            self.tasks.push(tokio::spawn(async move {
                let line = format!("x-flood: {}\r\n", "f".repeat(1000));
                while !stop.load(Ordering::Relaxed) {
                    let Ok(stream) = TcpStream::connect(address).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (mut reader, mut writer) = stream.into_split();
                    let flood = {
                        let (line, stop) = (line.clone(), stop.clone());
                        async move {
                            let _ = writer
                                .write_all(b"POST /webhooks/mykaarma HTTP/1.1\r\nhost: relay\r\n")
                                .await;
                            while !stop.load(Ordering::Relaxed)
                                && writer.write_all(line.as_bytes()).await.is_ok()
                            {
                            }
                            std::future::pending::<()>().await;
                        }
                    };
                    let answer = async {
                        let mut answer = Vec::new();
                        let mut buffer = [0u8; 1024];
                        while let Ok(n) = reader.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            answer.extend_from_slice(&buffer[..n]);
                        }
                        status_of(&answer)
                    };
                    tokio::select! {
                        () = flood => {}
                        status = answer => {
                            counters.cut_off.fetch_add(1, Ordering::Relaxed);
                            counters.answered(status);
                        }
                    }
                }
            }));
        }
    }

    /// `count` clients that send their request one byte every `gap`: headers only
    /// (`body: false`, slowloris) or full headers and then a body promised at 100 000 bytes.
    pub fn dribble(
        &mut self,
        address: SocketAddr,
        count: usize,
        body: bool,
        gap: Duration,
        counters: Arc<AbuseCounters>,
    ) {
        for _ in 0..count {
            let (stop, counters) = (self.stop.clone(), counters.clone());
            self.tasks.push(tokio::spawn(async move {
                let (head, dribbled) = if body {
                    (
                        "POST /webhooks/mykaarma HTTP/1.1\r\nhost: relay\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n".to_owned(),
                        "{\"id\":\"slow\",\"pad\":\"".to_owned() + &"s".repeat(99_980),
                    )
                } else {
                    (
                        String::new(),
                        "POST /webhooks/mykaarma HTTP/1.1\r\nhost: relay\r\n".to_owned()
                            + &"x-slow: s\r\n".repeat(10_000),
                    )
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(stream) = TcpStream::connect(address).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let opened = Instant::now();
                    let (mut reader, mut writer) = stream.into_split();
                    let drip = {
                        let (head, dribbled, stop) = (head.clone(), dribbled.clone(), stop.clone());
                        async move {
                            if writer.write_all(head.as_bytes()).await.is_ok() {
                                for byte in dribbled.as_bytes() {
                                    if stop.load(Ordering::Relaxed)
                                        || writer.write_all(&[*byte]).await.is_err()
                                    {
                                        break;
                                    }
                                    tokio::time::sleep(gap).await;
                                }
                            }
                            std::future::pending::<()>().await;
                        }
                    };
                    let answer = async {
                        let mut answer = Vec::new();
                        let mut buffer = [0u8; 1024];
                        while let Ok(n) = reader.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            answer.extend_from_slice(&buffer[..n]);
                        }
                        status_of(&answer)
                    };
                    tokio::select! {
                        () = drip => {}
                        status = answer => {
                            counters.cut_off.fetch_add(1, Ordering::Relaxed);
                            counters.answered(status);
                            counters.held(opened);
                        }
                        () = async { while !stop.load(Ordering::Relaxed) { tokio::time::sleep(Duration::from_millis(100)).await; } } => {}
                    }
                }
            }));
        }
    }

    /// Stops every abuser and waits for them.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}
