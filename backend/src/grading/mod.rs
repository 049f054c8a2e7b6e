//! The grading service: students and their grades, persisted (see
//! [`store`]), with the original design's JSON names. Registers as
//! `GradingService`.
//!
//! Reads are served from an in-memory copy of the last answer (its bytes and
//! ETag, see [`cache`]) while nothing has been written since: once warm,
//! reads never touch the database. Every write drops that copy before it is
//! answered; with a shared (PostgreSQL) database every instance also drops
//! it when PostgreSQL notifies it of another instance's write (see
//! [`store::coherence`]), and reads go to the database while it cannot tell
//! that it heard every write (not listening, or no beat of its own heard
//! back lately); a write is answered only once every listening instance has
//! dropped its copy. Grades are written in groups sharing one commit (see
//! [`store::writer`]). Every read carries an `ETag` derived from its content
//! (equal on every instance), and `If-None-Match` gets a bodiless 304 (see
//! [`answer`]). The portal subscribes to the change feed (see [`feed`]), and
//! a write is answered only once it has heard of it, so it revalidates what
//! it kept only when told of a change (or while it cannot hear the feed).
//!
//! - [`args`]: the `gradebook grading` command line;
//! - [`callers`]: who may call which route (the portal; the registry's patches);
//! - [`routes`]: the router and its handlers;
//! - [`error`]: the service's error and its JSON answers;
//! - [`answer`], [`cache`]: a read's kept answer, and the snapshots;
//! - [`feed`]: the change feed;
//! - [`store`]: the queries, the group-commit writer and the coherence
//!   protocol.
//!
//! This file owns [`Grading`], the service's state, and [`serve`].

pub mod answer;
pub mod args;
pub mod cache;
pub mod callers;
pub mod error;
pub mod feed;
pub mod routes;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use gradebook_runtime::Runtime;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::db::Db;
pub use error::GradingError;
pub use routes::router;

use cache::ReadCache;
use store::{Change, Writes};

/// Largest request body.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The grading service's state: cheap to clone.
#[derive(Clone)]
pub struct Grading {
    db: Db,
    writes: Writes,
    cache: Arc<ReadCache>,
    feed: Arc<feed::Feed>,
    /// The newest group of grades whose commit moved the generation, and
    /// the generation it moved it to.
    told: Arc<Mutex<(u64, u64)>>,
}

impl Grading {
    pub fn new(db: Db) -> Self {
        let cache = Arc::new(ReadCache::default());
        let writes = Writes::new(db.clone());
        let hears = writes.clone();
        // On PostgreSQL no subscriber is taken before we listen.
        let feed = feed::Feed::new((!db.is_shared()).then_some(0), move || hears.hears_everything());
        Self { writes, db, cache, feed, told: Arc::default() }
    }

    /// After a write of ours: the snapshots are dropped and every subscriber
    /// of the feed has heard of it.
    async fn wrote(&self) {
        let generation = self.moved_on();
        self.feed.reached(generation).await;
    }

    /// Drops the snapshots and tells the feed: the new generation.
    fn moved_on(&self) -> u64 {
        let generation = self.cache.invalidate();
        self.feed.moved_to(generation);
        generation
    }

    /// After a group of grades committed: the same, once for the group (a
    /// group answers up to hundreds of requests together), and once for
    /// any earlier group not told yet, which the move covers as well.
    async fn wrote_group(&self, group: u64) {
        let generation = {
            let mut told = self.told.lock();
            if told.0 < group {
                *told = (group, self.moved_on());
            }
            told.1
        };
        self.feed.reached(generation).await;
    }

    /// What the database told of the instances' writes (see
    /// [`Writes::watch_changes`]), applied at once; for a write, the wait
    /// for our subscribers to hear of it.
    fn changed(&self, change: Change) -> Option<impl Future<Output = ()> + Send + 'static> {
        match change {
            Change::Wrote => {
                let generation = self.moved_on();
                let feed = self.feed.clone();
                Some(async move { feed.reached(generation).await })
            }
            Change::Listening => {
                let generation = self.cache.invalidate();
                self.feed.listening(generation);
                None
            }
            Change::Deaf => {
                self.cache.invalidate();
                self.feed.deaf();
                None
            }
        }
    }

    /// The generation reads may use and keep answers at, or `None` while
    /// writes may go unnoticed (see [`Writes::hears_everything`]). Read
    /// before asking: trust comes back only with a beat heard after the
    /// generation moved on (listening again), and nothing is kept while it
    /// is gone, so no answer kept from before is served.
    fn generation(&self) -> Option<u64> {
        let generation = self.cache.generation();
        self.writes.hears_everything().then_some(generation)
    }
}

/// Serves the grading service, registered as `GradingService`, until
/// `shutdown`; in-flight requests finish, then the database is closed.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    state: Grading,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (db, feed) = (state.db.clone(), state.feed.clone());
    // Other instances' writes, on PostgreSQL; nothing to do on SQLite.
    let watching = shutdown.child_token();
    let (grading, token) = (Arc::new(state.clone()), watching.clone());
    let watcher =
        tokio::spawn(async move { grading.writes.watch_changes(|change| grading.changed(change), token).await });
    let served = gradebook_runtime::serve(listener, runtime, router(state), shutdown).await;
    // Taken off HTTP, subscriptions outlive the server's drain.
    feed.close();
    watching.cancel();
    let _ = watcher.await;
    db.close().await;
    served
}
