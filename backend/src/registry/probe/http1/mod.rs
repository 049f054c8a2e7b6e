//! The hand-written HTTP/1.1 client of plain `http` heartbeats: a probe
//! runs in its prober's own task over a kept-alive connection; the request
//! is written once per registration and sent in one write, the answer read
//! into one small buffer and parsed with `httparse` (hyper's own parser):
//! no task per connection, no channels between tasks, no header maps, no URL
//! parsed again. A probe that fails on a kept connection before any byte of
//! an answer came is tried once more on a fresh one (a GET changes nothing).
//!
//! It is kept by hand for the figure the fleet benchmark measures (`bench
//! fleet`, 10,000 services, 1,000 names × 10, probed every second, against
//! a goal of at most 25 % of one core): through reqwest's pool a probe costs
//! 40–60 µs of CPU (31.4 % of one core), this way 20–23 µs (23.0 %). With
//! `hyper::client::conn::http1` (a task per connection) and
//! `http_body_util::Limited`, five runs gave 24.1–27.3 % (median 26.6 %,
//! RSS 85–134 MB), against 22.3–24.4 % (median 24.0 %, RSS 69–71 MB) for
//! this client in five runs on the same (busy) machine.
//!
//! - [`pool`]: the idle connections, by address;
//! - [`head`]: an answer's head, and how its body ends;
//! - [`body`]: reading a body to its end, or cutting it off;
//! - [`chunked`]: the chunked body decoder.

mod body;
mod chunked;
mod head;
mod pool;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::PROBE_BODY_LIMIT;
use body::Body;
use head::{Head, parse_head};
pub(in crate::registry) use pool::Connections;
use pool::{Address, Host, Idle};

/// Most of an answer's status line and headers the registry reads.
const HEAD_LIMIT: usize = 64 * 1024;

/// A plain `http` heartbeat: where to connect, the request, and the idle
/// connections to its address.
pub(super) struct Plain {
    pub(super) address: Address,
    pub(super) request: Box<[u8]>,
    idle: Arc<Idle>,
}

/// Why a probe failed, and whether trying again on a fresh connection may
/// help (it may when a kept connection failed before any answer came).
struct Failure {
    why: String,
    before_answer: bool,
}

impl Failure {
    fn new(why: impl Into<String>) -> Self {
        Self { why: why.into(), before_answer: false }
    }
}

impl Plain {
    /// None when the URL is not one this path takes (not `http`, or with
    /// credentials in it).
    pub(super) fn new(url: &reqwest::Url, proof: Option<&str>, connections: &Connections) -> Option<Self> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(name) => Host::Name(name.to_owned()),
            url::Host::Ipv4(ip) => Host::Ip(ip.into()),
            url::Host::Ipv6(ip) => Host::Ip(ip.into()),
        };
        let port = url.port_or_known_default()?;
        // Path and query (the fragment is not sent), already percent-encoded.
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        // The authority as written, without a default port (as reqwest sends it).
        let host_str = url.host_str()?;
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        // What a header can carry, checked as reqwest's headers are.
        let checked = |v: &str| HeaderValue::from_str(v).is_ok().then_some(());
        checked(target)?;
        checked(&authority)?;
        let mut request = format!("GET {target} HTTP/1.1\r\nhost: {authority}\r\naccept: */*\r\n");
        // A proof no header can carry is left out, as the shared client does.
        if let Some(proof) = proof.filter(|p| checked(p).is_some()) {
            request.push_str(&format!("{}: {proof}\r\n", gradebook_runtime::credential::PROBE_HEADER));
        }
        request.push_str("\r\n");
        let address = Address { host, port };
        Some(Self { idle: connections.idle(&address), address, request: request.into_bytes().into() })
    }

    /// One probe, on a kept connection if there is one.
    pub(super) async fn probe(&mut self) -> Result<(), String> {
        // A connection is taken out for the probe and put back only when it
        // can carry another: a probe dropped at its deadline drops it too.
        let outcome = match self.idle.take() {
            Some(kept) => match self.exchange(kept).await {
                Err(f) if f.before_answer => {
                    tracing::debug!(why = %f.why, "kept heartbeat connection failed, probing on a fresh one");
                    self.probe_fresh().await
                }
                other => other,
            },
            None => self.probe_fresh().await,
        };
        outcome.map_err(|f| f.why)
    }

    async fn probe_fresh(&mut self) -> Result<(), Failure> {
        let Address { host, port } = &self.address;
        let stream = match host {
            Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, *port)).await,
            // Every address the name resolves to, in turn.
            Host::Name(name) => TcpStream::connect((name.as_str(), *port)).await,
        };
        let stream = stream.map_err(|_| Failure::new("connection failed"))?;
        // The request goes out in one write; don't hold it back.
        stream.set_nodelay(true).map_err(|_| Failure::new("connection failed"))?;
        self.exchange(stream).await.map_err(|f| Failure { before_answer: false, ..f })
    }

    /// Sends the probe on `stream` and reads the answer; keeps `stream` for
    /// the next probe when it can carry one.
    async fn exchange(&mut self, mut stream: TcpStream) -> Result<(), Failure> {
        let lost = |e: std::io::Error| Failure { why: format!("error sending request: {e}"), before_answer: true };
        stream.write_all(&self.request).await.map_err(lost)?;
        let mut buf = Vec::with_capacity(1024);
        let (status, mut body, mut keep) = 'head: loop {
            let got = read_more(&mut stream, &mut buf).await;
            let got = got.map_err(|e| Failure {
                why: format!("error reading the answer: {e}"),
                before_answer: buf.is_empty(),
            })?;
            if got == 0 {
                let why = "connection closed before message completed";
                return Err(Failure { why: why.into(), before_answer: buf.is_empty() });
            }
            loop {
                match parse_head(&buf).map_err(Failure::new)? {
                    None if buf.len() > HEAD_LIMIT => return Err(Failure::new("answer head too large")),
                    None => continue 'head,
                    // 1xx (100 Continue, say) is followed by the real answer.
                    Some(Head::Interim(len)) => drop(buf.drain(..len)),
                    Some(Head::Final(status, framing, keep, len)) => {
                        break 'head (status, Body::new(framing, &buf[len..]).map_err(Failure::new)?, keep);
                    }
                }
            }
        };
        // The body: read to its end, or cut off past the limit.
        while !body.done() {
            if body.read > PROBE_BODY_LIMIT {
                keep = false;
                break;
            }
            buf.clear();
            let n = read_more(&mut stream, &mut buf)
                .await
                .map_err(|e| Failure::new(format!("error reading a body from connection: {e}")))?;
            if n == 0 {
                if !body.until_close() {
                    return Err(Failure::new("connection closed before message completed"));
                }
                keep = false;
                break;
            }
            body.take(&buf).map_err(Failure::new)?;
        }
        if keep && !body.overran {
            self.idle.put(stream, Instant::now());
        }
        if status.is_success() { Ok(()) } else { Err(Failure::new(format!("heartbeat answered {status}"))) }
    }
}

/// Reads what has arrived onto the end of `buf`: how much (0 at the end).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
    stream.read_buf(buf).await
}
