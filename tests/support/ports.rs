//! Ports and sockets for test servers: bound ahead and handed over, or free
//! ports outside the kernel's ephemeral range for child processes; and a
//! stand-in served on a port of its own.

use axum::Router;
use tokio::net::TcpListener;

/// Where a server listens: an address it binds itself, or a socket bound
/// already and handed over, so that no one can take its port in between.
pub enum Bind {
    Addr(std::net::SocketAddr),
    /// Bound, not yet listening (see [`Reserved`]).
    Reserved(tokio::net::TcpSocket),
    /// Listening already; connections it queued are served too.
    Listener(std::net::TcpListener),
}

impl From<std::net::SocketAddr> for Bind {
    fn from(addr: std::net::SocketAddr) -> Self {
        Bind::Addr(addr)
    }
}

impl From<Reserved> for Bind {
    fn from(reserved: Reserved) -> Self {
        Bind::Reserved(reserved.socket)
    }
}

impl From<std::net::TcpListener> for Bind {
    fn from(listener: std::net::TcpListener) -> Self {
        Bind::Listener(listener)
    }
}

impl From<TcpListener> for Bind {
    fn from(listener: TcpListener) -> Self {
        Bind::Listener(listener.into_std().expect("a tokio listener converts back"))
    }
}

impl Bind {
    pub(crate) async fn listen(self) -> std::io::Result<TcpListener> {
        match self {
            Bind::Addr(addr) => TcpListener::bind(addr).await,
            Bind::Reserved(socket) => socket.listen(1024),
            Bind::Listener(listener) => {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            }
        }
    }
}

/// A port on 127.0.0.1 for a server that binds it itself later (a child
/// process): free when returned, never returned twice by this process, and
/// outside the kernel's ephemeral range, so that neither a listener on port 0
/// nor the source port of an outgoing connection (parallel tests make many)
/// can be handed it in between. Another process can still take it: start
/// processes with [`process::Proc::start_listening`], which tries another
/// port then. In-process servers take a [`Reserved`] socket instead.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// Ports the browser tests and the Go original use, whatever the range.
    const TAKEN: [u16; 4] = [3000, 4000, 5005, 6000];
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = non_ephemeral_range();
    let span = u32::from(high - low);
    if span == 0 {
        // Every port is ephemeral here: the kernel's choice is all there is.
        return std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    // Each process starts somewhere else, so concurrent test runs rarely meet.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) ^ std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if !TAKEN.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// The larger stretch of ports (from 10,000 up) beside the kernel's
/// ephemeral range (`ip_local_port_range`, Linux's default 32768–60999).
fn non_ephemeral_range() -> (u16, u16) {
    let range: Vec<u16> = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let (low, high) = match range[..] {
        [low, high] => (low, high),
        _ => (32768, 60999),
    };
    let below = (10_000, low.max(10_000));
    let above = (high.saturating_add(1).max(10_000), u16::MAX);
    if below.1 - below.0 >= above.1 - above.0 { below } else { above }
}

/// An address on 127.0.0.1 bound but not yet listening: connections to it
/// are refused, as if nothing were there, yet no one else can take it. Hand
/// it to a server (e.g. [`TestRegistry::spawn_on`]) to start listening.
pub struct Reserved {
    socket: tokio::net::TcpSocket,
    pub addr: std::net::SocketAddr,
}

impl Reserved {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("port 0 binds");
        let addr = socket.local_addr().unwrap();
        Self { socket, addr }
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `app` on a port of its own, on the calling runtime, and returns
/// its base URL: for stand-ins (a registry of the original, a heartbeat
/// that misbehaves, ...).
pub async fn serve_app(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port on loopback");
    let url = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
