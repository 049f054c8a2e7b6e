//! Grading's change feed (`GET /changes`; the protocol is in
//! [`gradebook_shared::grading::changes`]): the subscribers (the portal)
//! keep grading's answers and are told of every change before the write
//! behind it is answered, so they need not ask "is it still this?" on every
//! request.
//!
//! This module owns the subscribers: each one's connection task, what it
//! has acknowledged, and the wait of a write for their acknowledgements
//! ([`Feed::reached`]). A subscriber that does not acknowledge in time is
//! cut off. One whose connection ended may still trust what it kept until
//! its lease runs out, so writes wait that out too (once, for
//! [`ACK_LIMIT`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use gradebook_shared::grading::changes::{ACK_LIMIT, Line, MAX_LINE};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Subscribers held at most; past that, 503.
pub const MAX_SUBSCRIBERS: usize = 64;

pub struct Feed {
    /// What grading serves now: its generation, or `None` while it cannot
    /// tell when other instances write (then nobody may subscribe).
    now: watch::Sender<Option<u64>>,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

/// One subscriber, as writes see it.
#[derive(Clone)]
struct Subscriber {
    /// The newest generation it acknowledged; closed when its task ends.
    acked: watch::Receiver<u64>,
    /// Ends its connection.
    cut: CancellationToken,
    /// Once its connection ended: when it can trust nothing any more.
    distrusts_at: Arc<OnceLock<Instant>>,
}

/// Why a subscription is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Grading cannot tell when other instances write.
    Deaf,
    Full,
}

/// A subscription accepted, before its connection is handed over.
pub struct Accepted {
    feed: Arc<Feed>,
    acked: watch::Sender<u64>,
    cut: CancellationToken,
    distrusts_at: Arc<OnceLock<Instant>>,
}

impl Feed {
    pub fn new(now: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            now: watch::Sender::new(now),
            subscribers: Mutex::default(),
            next_id: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        })
    }

    /// Ends every subscription (grading is stopping).
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Grading now serves `generation` (or newer: concurrent writes may
    /// report theirs out of order).
    pub fn moved_to(&self, generation: u64) {
        self.now.send_if_modified(|now| match now {
            Some(at) if *at >= generation => false,
            _ => {
                *now = Some(generation);
                true
            }
        });
    }

    /// Grading cannot tell when other instances write: every subscription
    /// ends, and none is taken until [`Feed::moved_to`].
    pub fn deaf(&self) {
        self.now.send_replace(None);
    }

    /// Takes a subscriber; its acknowledgements are waited for from now on.
    pub fn subscribe(self: &Arc<Self>) -> Result<Accepted, Refused> {
        if self.now.borrow().is_none() {
            return Err(Refused::Deaf);
        }
        let mut subscribers = self.subscribers();
        let now = Instant::now();
        subscribers.retain(|_, s| s.distrusts_at.get().is_none_or(|at| *at > now));
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(Refused::Full);
        }
        let (acked, acked_rx) = watch::channel(0);
        let (cut, distrusts_at) = (CancellationToken::new(), Arc::new(OnceLock::new()));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        subscribers.insert(id, Subscriber { acked: acked_rx, cut: cut.clone(), distrusts_at: distrusts_at.clone() });
        Ok(Accepted { feed: self.clone(), acked, cut, distrusts_at })
    }

    /// Resolves once every subscriber has acknowledged `generation` or can
    /// no longer trust anything older; one that does not acknowledge within
    /// [`ACK_LIMIT`] is cut off.
    pub async fn reached(&self, generation: u64) {
        let subscribers: Vec<Subscriber> = {
            let mut subscribers = self.subscribers();
            let now = Instant::now();
            subscribers.retain(|_, s| s.distrusts_at.get().is_none_or(|at| *at > now));
            subscribers.values().cloned().collect()
        };
        let deadline = Instant::now() + ACK_LIMIT;
        for mut subscriber in subscribers {
            let acked = subscriber.acked.wait_for(|acked| *acked >= generation);
            // (The value's guard is not held over an await.)
            let acked = tokio::time::timeout_at(deadline, async { acked.await.map(drop) }).await;
            match acked {
                Ok(Ok(_)) => {}
                // Its connection ended: wait out its lease.
                Ok(Err(_)) => {
                    if let Some(at) = subscriber.distrusts_at.get() {
                        tokio::time::sleep_until(*at).await;
                    }
                }
                Err(_) => {
                    // Not acknowledged in time: it has stopped trusting by
                    // now (see the protocol), so no need to wait further.
                    let _ = subscriber.distrusts_at.set(deadline);
                    if !subscriber.cut.is_cancelled() {
                        tracing::warn!(generation, "a change feed subscriber did not acknowledge in time; cut off");
                    }
                    subscriber.cut.cancel();
                }
            }
        }
    }
}

impl Accepted {
    /// The subscription's connection, until it ends, is cut off, grading
    /// goes deaf or shuts down.
    pub async fn run(self, io: impl AsyncRead + AsyncWrite + Send) {
        let Accepted { feed, acked, cut, distrusts_at } = &self;
        let (read, mut write) = tokio::io::split(io);
        let (pongs, mut to_pong) = mpsc::channel::<u64>(16);
        let reading = async {
            let mut reader = BufReader::new(read);
            let mut line = Vec::with_capacity(MAX_LINE);
            loop {
                line.clear();
                let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line).await;
                match read.ok().filter(|n| *n > 0).and_then(|_| Line::parse(&line)) {
                    Some(Line::Ack(n)) => {
                        acked.send_if_modified(|at| {
                            let newer = n > *at;
                            if newer {
                                *at = n;
                            }
                            newer
                        });
                    }
                    // A subscriber that does not read its pongs stops here.
                    Some(Line::Ping(k)) if pongs.send(k).await.is_ok() => {}
                    _ => return,
                }
            }
        };
        let writing = async {
            let mut now = feed.now.subscribe();
            loop {
                let Some(generation) = *now.borrow_and_update() else { return };
                if !write_line(&mut write, Line::Changed(generation)).await {
                    return;
                }
                loop {
                    tokio::select! {
                        changed = now.changed() => match changed {
                            Ok(()) => break,
                            Err(_) => return,
                        },
                        pong = to_pong.recv() => match pong {
                            Some(k) if write_line(&mut write, Line::Pong(k)).await => {}
                            _ => return,
                        },
                    }
                }
            }
        };
        tokio::select! {
            () = reading => {}
            () = writing => {}
            () = cut.cancelled() => {}
            () = feed.shutdown.cancelled() => {}
        }
        let _ = distrusts_at.set(Instant::now() + ACK_LIMIT);
    }
}

impl Drop for Accepted {
    /// Never run (its upgrade failed), it was never trusted.
    fn drop(&mut self) {
        let _ = self.distrusts_at.set(Instant::now());
    }
}

/// Writes `line`; false when it could not be written in time (a subscriber
/// that never reads cannot hold the task).
async fn write_line(write: &mut (impl AsyncWrite + Unpin), line: Line) -> bool {
    matches!(tokio::time::timeout(ACK_LIMIT, write.write_all(&line.to_bytes())).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, DuplexStream};

    struct Subscriber {
        lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<DuplexStream>>>,
        write: tokio::io::WriteHalf<DuplexStream>,
    }

    impl Subscriber {
        async fn next(&mut self) -> Option<Line> {
            let line = self.lines.next_line().await.ok()??;
            Line::parse(line.as_bytes())
        }

        async fn send(&mut self, line: Line) {
            self.write.write_all(&line.to_bytes()).await.expect("grading reads");
        }
    }

    fn subscribed(feed: &Arc<Feed>) -> Subscriber {
        let (ours, theirs) = tokio::io::duplex(1024);
        tokio::spawn(feed.subscribe().expect("taken").run(ours));
        let (read, write) = tokio::io::split(theirs);
        Subscriber { lines: BufReader::new(read).lines(), write }
    }

    #[tokio::test]
    async fn a_write_waits_for_the_acknowledgement_of_its_generation() {
        let feed = Feed::new(Some(1));
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));

        feed.moved_to(2);
        let reached = tokio::spawn({
            let feed = feed.clone();
            async move { feed.reached(2).await }
        });

        assert_eq!(portal.next().await, Some(Line::Changed(2)));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!reached.is_finished(), "not before the acknowledgement");
        portal.send(Line::Ack(2)).await;
        tokio::time::timeout(ACK_LIMIT / 2, reached).await.expect("answered once acknowledged").expect("no panic");
    }

    #[tokio::test]
    async fn pings_are_answered_in_order_after_the_changes_sent_before_them() {
        let feed = Feed::new(Some(5));
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(5)));

        portal.send(Line::Ping(41)).await;
        assert_eq!(portal.next().await, Some(Line::Pong(41)));
        feed.moved_to(6);
        assert_eq!(portal.next().await, Some(Line::Changed(6)));
        feed.moved_to(4);
        portal.send(Line::Ping(42)).await;
        assert_eq!(portal.next().await, Some(Line::Pong(42)), "a generation never goes back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_does_not_acknowledge_is_cut_off_after_the_limit() {
        let feed = Feed::new(Some(1));
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));
        feed.moved_to(2);
        let started = Instant::now();

        feed.reached(2).await;

        assert_eq!(started.elapsed(), ACK_LIMIT);
        assert_eq!(portal.next().await, Some(Line::Changed(2)));
        assert_eq!(portal.next().await, None, "its connection is closed");
        let started = Instant::now();
        feed.moved_to(3);
        feed.reached(3).await;
        assert!(started.elapsed() < ACK_LIMIT, "cut off, it is not waited for again");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_subscriber_hangs_up_writes_wait_out_its_lease_once() {
        let feed = Feed::new(Some(1));
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));
        drop(portal);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let started = Instant::now();

        feed.moved_to(2);
        feed.reached(2).await;

        let waited = started.elapsed();
        assert!(waited > ACK_LIMIT / 2 && waited <= ACK_LIMIT, "waited {waited:?}");
        let started = Instant::now();
        feed.reached(2).await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO, "and only once");
    }

    #[tokio::test]
    async fn nobody_subscribes_while_grading_cannot_hear_other_instances_and_deafness_ends_subscriptions() {
        let feed = Feed::new(Some(1));
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));

        feed.deaf();

        assert_eq!(portal.next().await, None);
        assert_eq!(feed.subscribe().err(), Some(Refused::Deaf));
        feed.moved_to(3);
        assert!(feed.subscribe().is_ok());
    }

    #[tokio::test]
    async fn a_line_too_long_or_unknown_ends_the_subscription() {
        for garbage in [vec![b'1'; MAX_LINE + 1], b"hello 1\n".to_vec()] {
            let feed = Feed::new(Some(1));
            let mut portal = subscribed(&feed);
            assert_eq!(portal.next().await, Some(Line::Changed(1)));

            portal.write.write_all(&garbage).await.expect("written");

            assert_eq!(portal.next().await, None);
        }
    }
}
