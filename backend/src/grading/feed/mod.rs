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
//! the lease of the last `pong` written to it runs out, so writes wait that
//! out too (at most [`LEASE`], and never past their own limit).
//!
//! A `pong` is written only while grading knows it has heard every write
//! (see `trust` in [`Feed::new`]): when it cannot tell, its subscribers'
//! leases run out, as its own read snapshots stop being served.
//!
//! - [`connection`]: one subscription's connection, its lines either way.

pub mod connection;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use gradebook_shared::grading::changes::ACK_LIMIT;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;
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
    /// Whether grading knows, right now, that it has heard every write.
    trust: Box<dyn Fn() -> bool + Send + Sync>,
}

/// One subscriber, as writes see it.
#[derive(Clone)]
struct Subscriber {
    /// The newest generation it acknowledged; closed when its task ends.
    acked: watch::Receiver<u64>,
    /// Ends its connection.
    cut: CancellationToken,
    /// Once its connection ended: when it can trust nothing any more (the
    /// lease of the last `pong` written to it has run out).
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
    /// A feed at generation `now` (`None`: not taking subscribers until
    /// [`Feed::listening`]); `trust` says whether grading knows, at that
    /// moment, that it has heard every write.
    pub fn new(now: Option<u64>, trust: impl Fn() -> bool + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            now: watch::Sender::new(now),
            subscribers: Mutex::default(),
            next_id: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            trust: Box::new(trust),
        })
    }

    /// Ends every subscription (grading is stopping).
    pub fn close(&self) {
        self.shutdown.cancel();
    }

    /// The subscribers that may still trust something (those whose lease
    /// ran out are dropped first).
    fn subscribers(&self) -> MutexGuard<'_, HashMap<u64, Subscriber>> {
        let mut subscribers = self.subscribers.lock();
        let now = Instant::now();
        subscribers.retain(|_, s| s.distrusts_at.get().is_none_or(|at| *at > now));
        subscribers
    }

    /// Grading now serves `generation` (or newer: concurrent writes may
    /// report theirs out of order). While deaf, nothing changes.
    pub fn moved_to(&self, generation: u64) {
        self.now.send_if_modified(|now| match now {
            Some(at) if *at < generation => {
                *now = Some(generation);
                true
            }
            _ => false,
        });
    }

    /// Grading hears the other instances' writes (again), from `generation`.
    pub fn listening(&self, generation: u64) {
        self.now.send_replace(Some(generation));
    }

    /// Grading cannot tell when other instances write: every subscription
    /// ends, and none is taken until [`Feed::listening`].
    pub fn deaf(&self) {
        self.now.send_replace(None);
    }

    /// Takes a subscriber; its acknowledgements are waited for from now on.
    pub fn subscribe(self: &Arc<Self>) -> Result<Accepted, Refused> {
        if self.now.borrow().is_none() || !(self.trust)() {
            return Err(Refused::Deaf);
        }
        let mut subscribers = self.subscribers();
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
    /// no longer trust anything older, at most [`ACK_LIMIT`] from now; one
    /// that does not acknowledge by then is cut off. (At that limit, one that
    /// did not read the change has stopped trusting: its last lease came
    /// from a `pong` written before the change, which is less than [`LEASE`]
    /// old. A `pong` is never written after a change not yet written.)
    pub async fn reached(&self, generation: u64) {
        let subscribers: Vec<Subscriber> = self.subscribers().values().cloned().collect();
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
                        tokio::time::sleep_until((*at).min(deadline)).await;
                    }
                }
                Err(_) => {
                    if !subscriber.cut.is_cancelled() {
                        tracing::warn!(generation, "a change feed subscriber did not acknowledge in time; cut off");
                    }
                    subscriber.cut.cancel();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradebook_shared::grading::changes::{LEASE, Line, MAX_LINE};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

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
        let feed = Feed::new(Some(1), || true);
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
        let feed = Feed::new(Some(5), || true);
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
        let feed = Feed::new(Some(1), || true);
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
    async fn after_a_subscriber_hangs_up_writes_wait_out_the_lease_of_its_last_pong_once() {
        let feed = Feed::new(Some(1), || true);
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));
        portal.send(Line::Ping(1)).await;
        assert_eq!(portal.next().await, Some(Line::Pong(1)));
        drop(portal);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let started = Instant::now();

        feed.moved_to(2);
        feed.reached(2).await;

        let waited = started.elapsed();
        assert!(waited > LEASE / 2 && waited <= LEASE, "waited {waited:?}");
        let started = Instant::now();
        feed.reached(2).await;
        assert_eq!(started.elapsed(), std::time::Duration::ZERO, "and only once");
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_hanging_up_one_after_another_never_hold_a_write_past_its_limit() {
        let feed = Feed::new(Some(1), || true);
        let mut portals = vec![];
        for _ in 0..3 {
            let mut portal = subscribed(&feed);
            assert_eq!(portal.next().await, Some(Line::Changed(1)));
            portals.push(portal);
        }
        feed.moved_to(2);
        let started = Instant::now();
        let reached = tokio::spawn({
            let feed = feed.clone();
            async move {
                feed.reached(2).await;
                started.elapsed()
            }
        });
        // Each renews its lease and hangs up just before the lease of the
        // one before runs out: waited out one after another, their leases
        // would hold the write for about three leases.
        for mut portal in portals {
            portal.send(Line::Ping(1)).await;
            while portal.next().await != Some(Line::Pong(1)) {}
            drop(portal);
            tokio::time::sleep(LEASE - std::time::Duration::from_millis(10)).await;
        }
        let waited = reached.await.expect("no panic");

        assert!(waited <= ACK_LIMIT, "waited {waited:?}");
    }

    #[tokio::test]
    async fn a_grading_that_cannot_tell_whether_it_heard_every_write_answers_no_ping() {
        let trusted = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let feed = Feed::new(Some(1), {
            let trusted = trusted.clone();
            move || trusted.load(Ordering::SeqCst)
        });
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));

        trusted.store(false, Ordering::SeqCst);
        portal.send(Line::Ping(1)).await;

        assert_eq!(portal.next().await, None, "no pong: the subscription ends");
        assert_eq!(feed.subscribe().err(), Some(Refused::Deaf));
    }

    #[tokio::test]
    async fn nobody_subscribes_while_grading_cannot_hear_other_instances_and_deafness_ends_subscriptions() {
        let feed = Feed::new(Some(1), || true);
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));

        feed.deaf();

        assert_eq!(portal.next().await, None);
        assert_eq!(feed.subscribe().err(), Some(Refused::Deaf));
        feed.moved_to(3);
        assert_eq!(feed.subscribe().err(), Some(Refused::Deaf), "a local write does not make it hear");
        feed.listening(4);
        assert!(feed.subscribe().is_ok());
    }

    #[tokio::test]
    async fn a_line_of_the_longest_length_is_read() {
        let feed = Feed::new(Some(1), || true);
        let mut portal = subscribed(&feed);
        assert_eq!(portal.next().await, Some(Line::Changed(1)));
        feed.moved_to(2);
        assert_eq!(portal.next().await, Some(Line::Changed(2)));
        let reached = tokio::spawn({
            let feed = feed.clone();
            async move { feed.reached(2).await }
        });

        let longest = format!("ack {:0>width$}\n", 2, width = MAX_LINE - "ack \n".len());
        assert_eq!(longest.len(), MAX_LINE);
        portal.write.write_all(longest.as_bytes()).await.expect("written");

        tokio::time::timeout(ACK_LIMIT / 2, reached).await.expect("acknowledged").expect("no panic");
        portal.send(Line::Ping(7)).await;
        assert_eq!(portal.next().await, Some(Line::Pong(7)), "still subscribed");
    }

    #[tokio::test]
    async fn a_line_too_long_or_unknown_ends_the_subscription() {
        for garbage in [vec![b'1'; MAX_LINE + 1], b"hello 1\n".to_vec()] {
            let feed = Feed::new(Some(1), || true);
            let mut portal = subscribed(&feed);
            assert_eq!(portal.next().await, Some(Line::Changed(1)));

            portal.write.write_all(&garbage).await.expect("written");

            assert_eq!(portal.next().await, None);
        }
    }
}
