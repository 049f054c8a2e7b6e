//! The listening side of the coherence protocol (see [`super`]): one
//! connection that `LISTEN`s on the channel, named after this instance once
//! it listens; the beat this instance sends itself; the acknowledgements it
//! sends for other instances' writes. A lost connection is made again, with
//! backoff, until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gradebook_runtime::backoff::Backoff;
use sqlx::postgres::{PgListener, PgPool};
use tokio_util::sync::CancellationToken;

use super::heard::Heard;
use super::{BEAT_EVERY, CHANNEL, Changes, LISTENER_NAME, TRUST_AFTER_BEAT};

/// What [`listen`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Listening (again): anything read before may have missed writes.
    Listening,
    /// Not listening: other instances' writes go unnoticed until `Listening`.
    Deaf,
    /// Some instance committed a write.
    Wrote,
}

/// The waits between attempts to listen again: 100 ms, doubling, at most
/// 5 s, for as long as it takes.
fn reconnecting() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// Listens for every instance's writes (ours included) until `shutdown`,
/// telling `report` of each (and acknowledging another instance's once the
/// wait `report` gives back is over), and of when it starts and stops
/// listening.
pub async fn listen<F>(
    pool: &PgPool,
    changes: &Arc<Changes>,
    report: impl Fn(Change) -> Option<F>,
    shutdown: CancellationToken,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let mut backoff = reconnecting();
    while !shutdown.is_cancelled() {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            connected = connect(pool, changes) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other instances' writes; reads go to the database");
                if !backoff.wait(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        changes.listening.store(true, Ordering::SeqCst);
        drop(report(Change::Listening));
        let beating = shutdown.child_token();
        tokio::spawn(beat(pool.clone(), changes.clone(), beating.clone()));
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = listener.try_recv() => next,
            };
            let notification = match next {
                Ok(Some(notification)) => notification,
                Ok(None) => {
                    tracing::warn!("lost the connection that hears other instances' writes");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the notifications of other instances' writes");
                    break;
                }
            };
            let Some(heard) = Heard::parse(notification.payload()) else { continue };
            match heard {
                Heard::Write { writer, n } => {
                    // Dropped at once; acknowledged once our feed's
                    // subscribers heard of it, in a task of its own, so
                    // that the notifications behind it are not held up.
                    let told = report(Change::Wrote);
                    if writer == changes.instance {
                        changes.ack(n, writer);
                    } else {
                        let ack = Heard::Ack { writer, n, from: changes.instance }.payload();
                        tokio::spawn(acknowledge(pool.clone(), ack, told));
                    }
                }
                Heard::Ack { writer, n, from } if writer == changes.instance => changes.ack(n, from),
                Heard::Ack { .. } => {}
                Heard::Beat { from, sent } if from == changes.instance => {
                    let until = sent.saturating_add(TRUST_AFTER_BEAT.as_millis() as u64);
                    changes.heard_until.fetch_max(until, Ordering::SeqCst);
                }
                Heard::Beat { .. } => {}
            }
        }
        beating.cancel();
        changes.heard_until.store(0, Ordering::SeqCst);
        changes.listening.store(false, Ordering::SeqCst);
        drop(report(Change::Deaf));
    }
}

/// A connection listening on [`CHANNEL`], named after this instance.
async fn connect(pool: &PgPool, changes: &Changes) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is made anew by [`listen`], named again.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Named once listening: from now on writers wait for us.
    let name = format!("{LISTENER_NAME}{:x}", changes.instance);
    sqlx::query(&format!("SET application_name = '{name}'")).execute(&mut listener).await?;
    Ok(listener)
}

/// Sends `ack` once `told` (our subscribers hearing of the write) is over.
async fn acknowledge(pool: PgPool, ack: String, told: Option<impl Future<Output = ()>>) {
    if let Some(told) = told {
        told.await;
    }
    let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(ack).execute(&pool).await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot acknowledge another instance's write");
    }
}

/// Notifies this instance's beat every [`BEAT_EVERY`] until `stop`.
async fn beat(pool: PgPool, changes: Arc<Changes>, stop: CancellationToken) {
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let payload = Heard::Beat { from: changes.instance, sent: changes.now_ms() }.payload();
        let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&pool);
        // A beat not sent is a beat not heard: trust runs out.
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tokio::time::timeout(TRUST_AFTER_BEAT, sent) => {}
        }
    }
}
