//! The idle probe connections, kept by address and shared by that address's
//! probers: a service on its own address gets one connection that stays,
//! and registrations sharing an address share a few (so 10,000 of them
//! behind one port do not take 10,000 sockets). An address's connections
//! live as long as one of its probers; one idle for 30 s is closed (as the
//! shared client's pool does), and one the service closed meanwhile is
//! passed over.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long an idle probe connection is kept (as long as the shared
/// client's pool keeps one).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The idle probe connections of every address the registry probes over
/// plain `http`, shared by its probers.
#[derive(Default)]
pub(in crate::registry) struct Connections {
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
pub(in crate::registry::probe) struct Address {
    pub host: Host,
    pub port: u16,
}

/// The idle connections to one address, the most recently used last, each
/// with when it was put back.
#[derive(Default)]
pub(in crate::registry::probe) struct Idle {
    conns: Mutex<VecDeque<(TcpStream, Instant)>>,
}

impl Connections {
    /// The idle connections of `address`, shared with its other probers.
    pub(super) fn idle(&self, address: &Address) -> Arc<Idle> {
        let mut inner = self.inner.lock();
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

#[cfg(test)]
impl Connections {
    /// The idle connections kept for `address`, while one of its probers lives.
    pub(in crate::registry::probe) fn kept_for(&self, address: &Address) -> Option<Arc<Idle>> {
        self.inner.lock().by_address.get(address).and_then(Weak::upgrade)
    }
}

impl Idle {
    fn conns(&self) -> MutexGuard<'_, VecDeque<(TcpStream, Instant)>> {
        self.conns.lock()
    }

    /// The most recently used idle connection that is still open.
    pub(super) fn take(&self) -> Option<TcpStream> {
        loop {
            let (conn, _) = self.conns().pop_back()?;
            // Checked (and, if closed, dropped) outside the lock.
            if still_open(&conn) {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the next probe; closes those idle too long.
    pub(super) fn put(&self, conn: TcpStream, now: Instant) {
        let stale = {
            let mut conns = self.conns();
            conns.push_back((conn, now));
            let fresh = conns.iter().position(|(_, at)| now.duration_since(*at) < IDLE_TIMEOUT).unwrap_or(conns.len());
            conns.drain(..fresh).collect::<Vec<_>>()
        };
        drop(stale);
    }
}

/// Where a plain `http` heartbeat connects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(in crate::registry::probe) enum Host {
    Ip(std::net::IpAddr),
    Name(String),
}

/// Whether a kept connection can carry another probe: not closed by the
/// service, nothing unasked sent on it. Without a syscall when the socket
/// has not been readable since its last read.
fn still_open(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;

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
