//! The cross-instance coherence protocol on PostgreSQL: every write sends a
//! `NOTIFY` in its transaction, so that the instances sharing the database
//! drop their read snapshots the moment it commits. Each instance answers
//! every notification it acted on with an acknowledgement (another
//! `NOTIFY`), and a write is answered only once every instance listening
//! then (each names its listening connection, so `pg_stat_activity` lists
//! them) has acknowledged it: after a write is answered, no instance serves
//! a snapshot from before it. An instance that does not acknowledge within
//! [`ACK_LIMIT`] (stopped, say) is not waited for any longer, and logged;
//! it has stopped serving snapshots by then. Each instance notifies itself
//! every [`BEAT_EVERY`], and trusts that it has heard every write only for
//! [`TRUST_AFTER_BEAT`] after sending a beat it heard back (notifications
//! arrive in commit order, so a beat heard means every write committed
//! before it was heard). A listener that stalls or silently lost its
//! connection thus stops trusting well before a writer stops waiting.
//!
//! - [`heard`]: the payloads on the channel.
//! - [`listen`]: the listening connection, its beat and its acknowledgements.
//!
//! This file owns the writer's side: numbering our notifications and
//! waiting for their acknowledgements ([`Changes`]).

pub mod heard;
pub mod listen;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;

use heard::Heard;

/// The PostgreSQL channel every write notifies.
pub const CHANNEL: &str = "gradebook_grading";
/// Longest wait for the acknowledgements of a write (see
/// [`Changes::acknowledged`]); past it the write is answered anyway.
pub const ACK_LIMIT: Duration = Duration::from_secs(1);
/// How often an instance notifies itself (see the module's text).
pub const BEAT_EVERY: Duration = Duration::from_millis(50);
/// How long a beat heard back lets an instance trust that it heard every
/// write. Its feed's subscribers trust for at most `LEASE` (250 ms) longer,
/// and all of it must end before [`ACK_LIMIT`].
pub const TRUST_AFTER_BEAT: Duration = Duration::from_millis(500);
/// How a listening connection names itself, followed by its instance.
const LISTENER_NAME: &str = "gradebook-grading:";
/// The instances listening on this database now.
const LISTENERS: &str = "SELECT application_name FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name LIKE 'gradebook-grading:%'";

/// This instance's notifications on PostgreSQL (see [`Heard`]).
#[derive(Debug)]
pub struct Changes {
    instance: u64,
    sent: AtomicU64,
    /// For each of our writes not answered yet, the instances that have
    /// acknowledged it.
    acks: Mutex<HashMap<u64, HashSet<u64>>>,
    /// Moves on with every acknowledgement of ours received.
    acked: watch::Sender<u64>,
    /// Whether our listener runs: we hear acknowledgements only then.
    listening: AtomicBool,
    /// Until when (milliseconds of `clock`) we know we heard every write.
    heard_until: AtomicU64,
    clock: Instant,
}

impl Default for Changes {
    /// A new instance's: a random name, nothing sent or heard.
    fn default() -> Self {
        Self {
            instance: rand::random(),
            sent: AtomicU64::new(0),
            acks: Default::default(),
            acked: watch::Sender::new(0),
            listening: Default::default(),
            heard_until: AtomicU64::new(0),
            clock: Instant::now(),
        }
    }
}

impl Changes {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Whether this instance knows, right now, that it has heard every
    /// write committed (see the module's text).
    pub fn hears_everything(&self) -> bool {
        self.listening.load(Ordering::SeqCst) && self.now_ms() < self.heard_until.load(Ordering::SeqCst)
    }

    /// Notes that instance `from` acted on our write `n`.
    fn ack(&self, n: u64, from: u64) {
        if let Some(acks) = self.acks.lock().get_mut(&n) {
            acks.insert(from);
        }
        self.acked.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Sends this instance's next notification on `conn`, within its
    /// transaction (PostgreSQL delivers it at the commit, and never if it
    /// rolls back): its number.
    pub async fn notify(&self, conn: &mut PgConnection) -> sqlx::Result<u64> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut acks = self.acks.lock();
            // A write that failed after this point leaves its entry behind:
            // keep only the latest ones.
            if acks.len() >= 4096
                && let Some(oldest) = acks.keys().min().copied()
            {
                acks.remove(&oldest);
            }
            acks.insert(n, HashSet::new());
        }
        let payload = Heard::Write { writer: self.instance, n }.payload();
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(conn).await?;
        Ok(n)
    }

    /// Notifies in `tx`, commits it, and waits for the acknowledgements
    /// (see [`Changes::acknowledged`]).
    pub async fn commit(&self, pool: &PgPool, mut tx: Transaction<'_, Postgres>) -> sqlx::Result<()> {
        let n = self.notify(&mut tx).await?;
        tx.commit().await?;
        self.acknowledged(pool, n).await;
        Ok(())
    }

    /// Waits (at most [`ACK_LIMIT`]) until every instance listening now
    /// (ourselves included) has acknowledged our write `n`, i.e. dropped the
    /// snapshots it had from before. Not waited for while we do not listen:
    /// we would not hear the acknowledgements.
    pub async fn acknowledged(&self, pool: &PgPool, n: u64) {
        if n == 0 || !self.listening.load(Ordering::SeqCst) {
            self.acks.lock().remove(&n);
            return;
        }
        let mut acked = self.acked.subscribe();
        let listeners = match sqlx::query_scalar::<_, String>(LISTENERS).fetch_all(pool).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the instances to wait for");
                vec![]
            }
        };
        let listeners: HashSet<u64> = listeners
            .iter()
            .filter_map(|name| u64::from_str_radix(name.strip_prefix(LISTENER_NAME)?, 16).ok())
            .collect();
        let deadline = tokio::time::Instant::now() + ACK_LIMIT;
        loop {
            let missing: Vec<u64> = {
                let acks = self.acks.lock();
                let heard = acks.get(&n);
                listeners.iter().filter(|l| !heard.is_some_and(|h| h.contains(l))).copied().collect()
            };
            if missing.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, acked.changed()).await.is_err() {
                let missing: Vec<String> = missing.iter().map(|m| format!("{m:x}")).collect();
                tracing::warn!(?missing, "instances did not acknowledge a write in time; answered anyway");
                break;
            }
        }
        self.acks.lock().remove(&n);
    }
}
