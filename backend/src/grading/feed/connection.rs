//! One subscription's connection: reads the subscriber's lines (`ack N`,
//! `ping K`; framed by `LinesCodec`, each at most `MAX_LINE` bytes with its
//! `\n`), and writes `changed N` whenever grading moves on and a `pong K`
//! for each ping, a change pending always before a pong. Anything else read,
//! a line too long, or a write that does not go out in time ends it.

use futures::StreamExt;
use gradebook_shared::grading::changes::{ACK_LIMIT, LEASE, Line, MAX_LINE};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::Accepted;

impl Accepted {
    /// The subscription's connection, until it ends, is cut off, grading
    /// goes deaf or shuts down.
    pub async fn run(self, io: impl AsyncRead + AsyncWrite + Send) {
        let Accepted { feed, acked, cut, distrusts_at } = &self;
        // When the last `pong` was written: no lease outlasts it by more
        // than [`LEASE`].
        let mut ponged: Option<Instant> = None;
        let (read, mut write) = tokio::io::split(io);
        let (pongs, mut to_pong) = mpsc::channel::<u64>(16);
        let reading = async {
            // The bound counts the line without its `\n`.
            let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE - 1));
            loop {
                let line = lines.next().await.and_then(Result::ok);
                match line.as_deref().and_then(|line| Line::parse(line.as_bytes())) {
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
                        // A change pending goes out before any pong.
                        biased;
                        changed = now.changed() => match changed {
                            Ok(()) => break,
                            Err(_) => return,
                        },
                        pong = to_pong.recv() => match pong {
                            // Not knowing all writes, grading lends no trust.
                            Some(_) if !(feed.trust)() => return,
                            Some(k) if write_line(&mut write, Line::Pong(k)).await => {
                                ponged = Some(Instant::now());
                            }
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
        let _ = distrusts_at.set(ponged.map_or_else(Instant::now, |at| at + LEASE));
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
