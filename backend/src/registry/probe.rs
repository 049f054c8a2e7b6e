//! One heartbeat probe, as cheaply as it can be done: with 10,000 services
//! probed every second, the registry does little else.
//!
//! A plain `http` heartbeat is probed over a kept-alive HTTP/1.1 connection
//! in the prober's own task: the request is written once per registration
//! and sent in one write, the answer read into one small buffer and parsed
//! (with `httparse`, hyper's own parser): no task per connection, no
//! channels between tasks, no header maps, no URL parsed again. Idle
//! connections are kept by address, each address's found once per
//! registration: a service on its own address gets one connection that
//! stays, and registrations sharing an address share a few (so 10,000 of
//! them behind one port do not take 10,000 sockets). A connection that the
//! service closed meanwhile is replaced, one idle for 30 s is closed (as the
//! shared client's pool did), and a probe that fails on a kept connection
//! before any byte of an answer came is tried once more on a fresh one (a
//! GET changes nothing). An `https` heartbeat goes through the shared
//! client, as every probe did before.
//!
//! Either way the rules are the same: the caller sets one deadline for the
//! whole probe (connecting, asking, reading), redirects are never followed
//! (3xx is a failure), at most [`PROBE_BODY_LIMIT`] of the body is read (a
//! longer one is cut off, still counts, and its connection is dropped), 2xx
//! is success, and the cluster token goes with every probe when there is one
//! (a service on our runtime counts only such probes as the registry's).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::http::{HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most of a heartbeat answer's body the registry reads.
pub(super) const PROBE_BODY_LIMIT: usize = 64 * 1024;

/// Most of an answer's status line and headers the registry reads.
const HEAD_LIMIT: usize = 64 * 1024;

/// Headers an answer may have (as many as hyper allows).
const MAX_HEADERS: usize = 100;

/// How long an idle probe connection is kept (as long as the shared
/// client's pool keeps one).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle probe connections of every address the registry probes over
/// plain `http`, shared by its probers.
#[derive(Default)]
pub(super) struct Connections {
    inner: Mutex<Addresses>,
}

#[derive(Default)]
struct Addresses {
    /// An address's idle connections live as long as one of its probers.
    by_address: HashMap<Address, Weak<Idle>>,
    /// How many addresses were left after the last sweep of dead ones.
    swept: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Address {
    host: Host,
    port: u16,
}

/// The idle connections to one address, the most recently used last, each
/// with when it was put back.
#[derive(Default)]
struct Idle {
    conns: Mutex<VecDeque<(TcpStream, Instant)>>,
}

impl Connections {
    fn idle(&self, address: &Address) -> Arc<Idle> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idle) = inner.by_address.get(address).and_then(Weak::upgrade) {
            return idle;
        }
        let idle = Arc::new(Idle::default());
        inner.by_address.insert(address.clone(), Arc::downgrade(&idle));
        if inner.by_address.len() > 2 * inner.swept.max(64) {
            inner.by_address.retain(|_, idle| idle.strong_count() > 0);
            inner.swept = inner.by_address.len();
        }
        idle
    }
}

impl Idle {
    fn conns(&self) -> std::sync::MutexGuard<'_, VecDeque<(TcpStream, Instant)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is still open.
    fn take(&self) -> Option<TcpStream> {
        loop {
            let (conn, _) = self.conns().pop_back()?;
            // Checked (and, if closed, dropped) outside the lock.
            if still_open(&conn) {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the next probe; closes those idle too long.
    fn put(&self, conn: TcpStream, now: Instant) {
        let stale = {
            let mut conns = self.conns();
            conns.push_back((conn, now));
            let fresh = conns.iter().position(|(_, at)| now.duration_since(*at) < IDLE_TIMEOUT).unwrap_or(conns.len());
            conns.drain(..fresh).collect::<Vec<_>>()
        };
        drop(stale);
    }
}

/// Probes one heartbeat URL, again and again.
pub(super) struct Probe {
    how: How,
}

enum How {
    Plain(Plain),
    /// Through the shared client (`https`, or a URL the plain path does not
    /// take: one with credentials in it, say).
    Client(reqwest::Url),
}

/// A plain `http` heartbeat: where to connect, the request, and the idle
/// connections to its address.
struct Plain {
    address: Address,
    request: Box<[u8]>,
    idle: Arc<Idle>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(std::net::IpAddr),
    Name(String),
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

impl Probe {
    /// `token`: the cluster token, sent as `Authorization: Bearer` with
    /// every probe.
    pub fn new(url: &reqwest::Url, token: Option<&str>, connections: &Connections) -> Self {
        let how = match Plain::new(url, token, connections) {
            Some(plain) => How::Plain(plain),
            None => How::Client(url.clone()),
        };
        Self { how }
    }

    /// One probe, without a deadline of its own: the caller drops it when
    /// time is up (a connection caught mid-probe is dropped with it).
    pub async fn run(&mut self, client: &reqwest::Client) -> Result<(), String> {
        match &mut self.how {
            How::Plain(plain) => plain.probe().await,
            How::Client(url) => through_client(client, url).await,
        }
    }
}

impl Plain {
    fn new(url: &reqwest::Url, token: Option<&str>, connections: &Connections) -> Option<Self> {
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
        // A token no header can carry is left out, as the shared client does.
        if let Some(bearer) = token.map(|t| format!("Bearer {t}")).filter(|b| checked(b).is_some()) {
            request.push_str(&format!("authorization: {bearer}\r\n"));
        }
        request.push_str("\r\n");
        let address = Address { host, port };
        Some(Self { idle: connections.idle(&address), address, request: request.into_bytes().into() })
    }

    async fn probe(&mut self) -> Result<(), String> {
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
                match parse_head(&buf)? {
                    None if buf.len() > HEAD_LIMIT => return Err(Failure::new("answer head too large")),
                    None => continue 'head,
                    // 1xx (100 Continue, say) is followed by the real answer.
                    Some(Head::Interim(len)) => drop(buf.drain(..len)),
                    Some(Head::Final(status, framing, keep, len)) => {
                        break 'head (status, Body::new(framing, &buf[len..])?, keep);
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
            body.take(&buf)?;
        }
        if keep && !body.overran {
            self.idle.put(stream, Instant::now());
        }
        if status.is_success() { Ok(()) } else { Err(Failure::new(format!("heartbeat answered {status}"))) }
    }
}

/// Whether a kept connection can carry another probe: not closed by the
/// service, nothing unasked sent on it. Without a syscall when the socket
/// has not been readable since its last read.
fn still_open(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads what has arrived onto the end of `buf`: how much (0 at the end).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
    stream.read_buf(buf).await
}

enum Head {
    /// A 1xx answer of this length, to skip.
    Interim(usize),
    /// The answer: its status, how its body is delimited, whether the
    /// connection may be kept, and the length of the head.
    Final(StatusCode, Framing, bool, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the service closes the connection.
    Close,
}

/// The head at the start of `buf`, if all of it is there.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let bad = |why: String| Failure::new(format!("invalid answer: {why}"));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let len = match answer.parse(buf).map_err(|e| bad(e.to_string()))? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let code = answer.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| bad(format!("status {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some(Head::Interim(len)));
    }
    let mut keep = answer.version == Some(1) && status != StatusCode::SWITCHING_PROTOCOLS;
    let (mut chunked, mut encoded, mut length) = (false, false, None::<u64>);
    for h in answer.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or_default();
        if h.name.eq_ignore_ascii_case("connection") {
            keep &= !value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding.
            encoded = true;
            chunked = value.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for v in value.split(',') {
                let v = v.trim();
                let n = v.parse().ok().filter(|_| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                match (n, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(l)) if n == l => {}
                    _ => return Err(bad("content-length".into())),
                }
            }
        }
    }
    // Both: the coding wins, and the connection is not trusted further.
    keep &= !(encoded && length.is_some());
    let framing =
        if [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED, StatusCode::SWITCHING_PROTOCOLS].contains(&status) {
            Framing::Length(0)
        } else if encoded {
            if chunked { Framing::Chunked } else { Framing::Close }
        } else {
            length.map_or(Framing::Close, Framing::Length)
        };
    Ok(Some(Head::Final(status, framing, keep && framing != Framing::Close, len)))
}

/// How much of an answer's body has been read, and where its end is.
struct Body {
    framing: Framing,
    /// Bytes of content read.
    read: usize,
    /// Bytes past the end of the body arrived (unasked): the connection is
    /// not used again.
    overran: bool,
    chunks: Chunks,
}

impl Body {
    fn new(framing: Framing, first: &[u8]) -> Result<Self, Failure> {
        let mut body = Self { framing, read: 0, overran: false, chunks: Chunks::Size { digits: 0, size: 0 } };
        body.take(first)?;
        Ok(body)
    }

    fn until_close(&self) -> bool {
        self.framing == Framing::Close
    }

    fn done(&self) -> bool {
        match self.framing {
            Framing::Length(n) => self.read as u64 >= n,
            Framing::Chunked => self.chunks == Chunks::Done,
            Framing::Close => false,
        }
    }

    /// Counts `bytes` that arrived after what came before.
    fn take(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match self.framing {
            Framing::Length(n) => {
                let left = n.saturating_sub(self.read as u64);
                self.overran |= bytes.len() as u64 > left;
                self.read += bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            Framing::Close => self.read += bytes.len(),
            Framing::Chunked => {
                let (content, rest) =
                    self.chunks.take(bytes).map_err(|why| Failure::new(format!("invalid chunked body: {why}")))?;
                self.read += content;
                self.overran |= rest > 0;
            }
        }
        Ok(())
    }
}

/// Where a chunked body's reader is (RFC 9112, section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// In a chunk's size (hex digits so far, and their value).
    Size {
        digits: u8,
        size: u64,
    },
    /// In the extensions after a size, up to the line's end.
    Extension {
        size: u64,
    },
    /// The size line's CR was read.
    SizeLf {
        size: u64,
    },
    /// In a chunk's data: what is left of it.
    Data {
        left: u64,
    },
    /// After a chunk's data: its CRLF.
    DataCr,
    DataLf,
    /// After the last chunk: in the trailer section, at the start of a line
    /// (`fresh`) or inside one.
    Trailer {
        fresh: bool,
    },
    TrailerLf {
        fresh: bool,
    },
    Done,
}

impl Chunks {
    /// Reads `bytes`: how many were content, and how many came after the end.
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, usize), &'static str> {
        let mut content = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            *self = match *self {
                Chunks::Done => return Ok((content, bytes.len() - i)),
                Chunks::Data { left } => {
                    let n = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    content += n;
                    i += n;
                    let left = left - n as u64;
                    *self = if left == 0 { Chunks::DataCr } else { Chunks::Data { left } };
                    continue;
                }
                Chunks::Size { digits, size } => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => Chunks::Size { digits: digits + 1, size: size * 16 + u64::from(d) },
                    Some(_) => return Err("chunk size too large"),
                    None if digits == 0 => return Err("chunk size missing"),
                    None => match b {
                        b'\r' => Chunks::SizeLf { size },
                        b';' | b' ' | b'\t' => Chunks::Extension { size },
                        _ => return Err("bad chunk size"),
                    },
                },
                Chunks::Extension { size } => match b {
                    b'\r' => Chunks::SizeLf { size },
                    b'\n' => return Err("bare LF in chunk size line"),
                    _ => Chunks::Extension { size },
                },
                Chunks::SizeLf { size } => match b {
                    b'\n' if size == 0 => Chunks::Trailer { fresh: true },
                    b'\n' => Chunks::Data { left: size },
                    _ => return Err("bad chunk size line end"),
                },
                Chunks::DataCr => match b {
                    b'\r' => Chunks::DataLf,
                    _ => return Err("chunk data longer than its size"),
                },
                Chunks::DataLf => match b {
                    b'\n' => Chunks::Size { digits: 0, size: 0 },
                    _ => return Err("bad chunk data end"),
                },
                Chunks::Trailer { fresh } => match b {
                    b'\r' => Chunks::TrailerLf { fresh },
                    b'\n' => return Err("bare LF in trailer"),
                    _ => Chunks::Trailer { fresh: false },
                },
                Chunks::TrailerLf { fresh } => match b {
                    b'\n' if fresh => Chunks::Done,
                    b'\n' => Chunks::Trailer { fresh: true },
                    _ => return Err("bad trailer line end"),
                },
            };
            i += 1;
        }
        Ok((content, 0))
    }
}

/// A probe through the shared client (which follows no redirects and sends
/// the token itself).
async fn through_client(client: &reqwest::Client, url: &reqwest::Url) -> Result<(), String> {
    let describe = |e: reqwest::Error| gradebook_runtime::http::describe(&e);
    let mut response = client.get(url.clone()).send().await.map_err(describe)?;
    let status = response.status();
    // Reading the (tiny) body lets the connection go back to the pool; a
    // huge or endless one is cut off (and its connection dropped).
    let mut read = 0;
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        read += chunk.len();
        if read > PROBE_BODY_LIMIT {
            break;
        }
    }
    if status.is_success() { Ok(()) } else { Err(format!("heartbeat answered {status}")) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// What the service does with the `request`-th request on its `conn`-th
    /// connection (both from 0): the bytes it answers, and whether it then
    /// closes the connection.
    type Script = fn(conn: usize, request: usize) -> (Vec<u8>, bool);

    /// A heartbeat served by hand, so that the test sees every connection
    /// and every request head.
    struct Service {
        url: reqwest::Url,
        connections: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    async fn service(path: &str, script: Script) -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap()).parse().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(vec![]));
        let (count, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for request in 0.. {
                        // One request head (probes have no body).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0; 1024];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        seen.lock().unwrap().push(String::from_utf8_lossy(&buf[..end]).into_owned());
                        buf.drain(..end);
                        let (answer, close) = script(conn, request);
                        if stream.write_all(&answer).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        Service { url, connections, heads }
    }

    async fn probe(probe: &mut Probe) -> Result<(), String> {
        let client = reqwest::Client::new();
        tokio::time::timeout(Duration::from_secs(2), probe.run(&client)).await.unwrap_or(Err("timed out".into()))
    }

    #[tokio::test]
    async fn a_probe_asks_for_the_path_and_query_with_the_host_and_the_token() {
        let svc = service("/svc/7/heartbeat?x=1", |_, _| (OK.into(), false)).await;
        let mut p = Probe::new(&svc.url, Some("s3cret"), &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        let head = svc.heads.lock().unwrap()[0].to_lowercase();
        let port = svc.url.port().unwrap();
        assert!(head.starts_with("get /svc/7/heartbeat?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{head}");
        assert!(head.contains("\r\nauthorization: bearer s3cret\r\n"), "{head}");

        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert!(!svc.heads.lock().unwrap()[1].to_lowercase().contains("authorization"));
    }

    #[tokio::test]
    async fn probes_share_one_kept_connection() {
        let svc = service("/heartbeat", |_, _| (OK.into(), false)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        for _ in 0..5 {
            assert_eq!(probe(&mut p).await, Ok(()));
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        assert_eq!(svc.heads.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_connection_the_service_closed_between_probes_is_replaced() {
        // Answers as if it kept the connection, then closes it.
        let svc = service("/heartbeat", |_, _| (OK.into(), true)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        for _ in 0..3 {
            assert_eq!(probe(&mut p).await, Ok(()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_kept_connection_closed_as_the_probe_goes_out_is_probed_again_on_a_fresh_one() {
        // The second request on a connection is read and never answered.
        let svc =
            service("/heartbeat", |_, request| if request == 0 { (OK.into(), false) } else { (vec![], true) }).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
        assert_eq!(svc.heads.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_service_that_never_answers_fails_without_a_second_try_on_a_fresh_connection() {
        let svc = service("/heartbeat", |_, _| (vec![], true)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        let why = probe(&mut p).await.unwrap_err();
        assert!(why.contains("connection closed before message completed"), "{why}");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_redirect_is_a_failure_and_is_not_followed() {
        let svc = service("/heartbeat", |_, _| {
            (b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n".to_vec(), false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Err("heartbeat answered 302 Found".into()));
        assert_eq!(probe(&mut p).await, Err("heartbeat answered 302 Found".into()));
        let heads = svc.heads.lock().unwrap();
        assert!(heads.iter().all(|h| h.starts_with("GET /heartbeat ")), "{heads:?}");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1, "a whole answer keeps its connection");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_cut_off_still_counts_and_its_connection_is_dropped() {
        let svc = service("/heartbeat", |_, _| {
            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
            answer.resize(answer.len() + 1_000_000, b'x');
            (answer, false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_chunked_answer_read_to_its_end_keeps_its_connection() {
        let svc = service("/heartbeat", |_, _| {
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n".to_vec(), false)
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_whose_body_stalls_is_not_a_success() {
        let svc =
            service("/heartbeat", |_, _| (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok".to_vec(), false)).await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        let client = reqwest::Client::new();
        assert!(tokio::time::timeout(Duration::from_millis(300), p.run(&client)).await.is_err());
        // The connection caught mid-answer is not used again.
        assert!(probe(&mut p).await.is_err());
        assert_eq!(svc.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_fails_as_before() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/heartbeat", listener.local_addr().unwrap()).parse().unwrap();
        drop(listener);
        assert_eq!(probe(&mut Probe::new(&url, None, &Connections::default())).await, Err("connection failed".into()));
    }

    #[test]
    fn https_and_odd_urls_go_through_the_shared_client() {
        let plain =
            |u: &str| matches!(Probe::new(&u.parse().unwrap(), None, &Connections::default()).how, How::Plain(_));
        assert!(plain("http://127.0.0.1:8080/heartbeat"));
        assert!(plain("http://[::1]:8080/heartbeat"));
        assert!(plain("http://localhost/heartbeat"));
        assert!(!plain("https://127.0.0.1:8443/heartbeat"));
        assert!(!plain("http://user:pw@127.0.0.1:8080/heartbeat"));
    }

    #[test]
    fn the_request_is_written_once_with_the_host_as_reqwest_sends_it() {
        let request = |u: &str, token| match Probe::new(&u.parse().unwrap(), token, &Connections::default()).how {
            How::Plain(p) => String::from_utf8(p.request.into()).unwrap(),
            How::Client(_) => unreachable!(),
        };
        assert_eq!(
            request("http://localhost:80/heartbeat#x", None),
            "GET /heartbeat HTTP/1.1\r\nhost: localhost\r\naccept: */*\r\n\r\n"
        );
        assert_eq!(
            request("http://[::1]:8080/a%20b?q=1", Some("t0k")),
            "GET /a%20b?q=1 HTTP/1.1\r\nhost: [::1]:8080\r\naccept: */*\r\nauthorization: Bearer t0k\r\n\r\n"
        );
        assert!(!request("http://localhost:8080/", Some("bad\r\ntoken")).contains("authorization"));
    }

    fn head(answer: &str) -> Result<Option<(u16, Framing, bool, usize)>, String> {
        match parse_head(answer.as_bytes()) {
            Ok(Some(Head::Final(status, framing, keep, len))) => Ok(Some((status.as_u16(), framing, keep, len))),
            Ok(Some(Head::Interim(len))) => Ok(Some((100, Framing::Length(0), false, len))),
            Ok(None) => Ok(None),
            Err(f) => Err(f.why),
        }
    }

    #[test]
    fn answer_heads_say_how_their_body_ends_and_whether_the_connection_stays() {
        let h = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(head(h), Ok(Some((200, Framing::Length(2), true, h.len()))));
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-len"), Ok(None));
        let close = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\n");
        assert!(matches!(close, Ok(Some((200, Framing::Length(2), false, _)))));
        let old = head("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n");
        assert!(matches!(old, Ok(Some((200, Framing::Length(2), false, _)))));
        let until_close = head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(until_close, Ok(Some((200, Framing::Close, false, _)))));
        let chunked = head("HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: gzip, Chunked\r\n\r\n");
        assert!(matches!(chunked, Ok(Some((503, Framing::Chunked, true, _)))));
        let both = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(both, Ok(Some((200, Framing::Chunked, false, _)))));
        let gzip = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(gzip, Ok(Some((200, Framing::Close, false, _)))));
        let empty = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert!(matches!(empty, Ok(Some((204, Framing::Length(0), true, _)))));
        let same = head("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n");
        assert!(matches!(same, Ok(Some((200, Framing::Length(3), true, _)))));
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n").is_err());
        assert!(head("SMTP ready\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 099 Odd\r\n\r\n").is_err());
        assert!(matches!(head("HTTP/1.1 100 Continue\r\n\r\n"), Ok(Some((100, _, _, 25)))));
    }

    #[test]
    fn a_chunked_body_is_read_to_its_end_in_pieces_of_any_size() {
        let body = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nExpires: never\r\n\r\n";
        for piece in 1..=body.len() {
            let mut chunks = Chunks::Size { digits: 0, size: 0 };
            let mut content = 0;
            for part in body.chunks(piece) {
                let (n, rest) = chunks.take(part).unwrap();
                content += n;
                assert_eq!(rest, 0);
            }
            assert_eq!((chunks, content), (Chunks::Done, 31), "pieces of {piece}");
        }
        let mut chunks = Chunks::Size { digits: 0, size: 0 };
        assert_eq!(chunks.take(b"0\r\n\r\nHTTP/1.1"), Ok((0, 8)), "bytes after the end are told apart");
        for bad in [&b"x\r\n"[..], b"\r\n", b"2\r\nabc\r\n", b"2\nab", b"fffffffffffffffff\r\n", b"2\r\nab\n\n"] {
            assert!(Chunks::Size { digits: 0, size: 0 }.take(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_odd_but_whole_answers_are_read() {
        let svc = service("/heartbeat", |conn, _| match conn {
            0 => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(), false),
            // Its end is its connection's close.
            1 => (b"HTTP/1.1 200 OK\r\n\r\nstill fine".to_vec(), true),
            _ => (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec(), false),
        })
        .await;
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()), "read until close");
        let mut p = Probe::new(&svc.url, None, &Connections::default());
        assert_eq!(probe(&mut p).await, Ok(()));
        assert_eq!(probe(&mut p).await, Ok(()), "a connection the answer closed is not reused");
        assert_eq!(svc.connections.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_garbled_answer_is_a_failure() {
        let svc = service("/heartbeat", |_, _| (b"hello there\r\n\r\n".to_vec(), false)).await;
        let why = probe(&mut Probe::new(&svc.url, None, &Connections::default())).await.unwrap_err();
        assert!(why.starts_with("invalid answer"), "{why}");
    }

    #[tokio::test]
    async fn probers_of_one_address_share_its_idle_connections_while_one_of_them_lives() {
        let svc = service("/svc/1/heartbeat", |_, _| (OK.into(), false)).await;
        let connections = Connections::default();
        let mut other_path = svc.url.clone();
        other_path.set_path("/svc/2/heartbeat");
        let mut first = Probe::new(&svc.url, None, &connections);
        let mut second = Probe::new(&other_path, None, &connections);
        for _ in 0..3 {
            assert_eq!(probe(&mut first).await, Ok(()));
            assert_eq!(probe(&mut second).await, Ok(()));
        }
        assert_eq!(svc.connections.load(Ordering::SeqCst), 1);
        let heads = svc.heads.lock().unwrap().clone();
        assert!(heads[1].starts_with("GET /svc/2/heartbeat "), "{heads:?}");

        let address = match &first.how {
            How::Plain(plain) => plain.address.clone(),
            How::Client(_) => unreachable!(),
        };
        drop(first);
        let idle = |c: &Connections| c.inner.lock().unwrap().by_address[&address].upgrade();
        assert!(idle(&connections).is_some());
        drop(second);
        assert!(idle(&connections).is_none(), "the idle connections go with the last prober");
        // Another address gets its own.
        let elsewhere = service("/heartbeat", |_, _| (OK.into(), false)).await;
        assert_eq!(probe(&mut Probe::new(&elsewhere.url, None, &connections)).await, Ok(()));
        assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_idle_for_30_s_is_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let idle = Idle::default();
        let t0 = Instant::now();
        idle.put(TcpStream::connect(addr).await.unwrap(), t0);
        idle.put(TcpStream::connect(addr).await.unwrap(), t0 + Duration::from_secs(29));
        assert_eq!(idle.conns().len(), 2);
        idle.put(TcpStream::connect(addr).await.unwrap(), t0 + Duration::from_secs(31));
        let left: Vec<Instant> = idle.conns().iter().map(|(_, at)| *at).collect();
        assert_eq!(left, [t0 + Duration::from_secs(29), t0 + Duration::from_secs(31)]);
        assert!(idle.take().is_some(), "the most recent one, still open");
    }
}
