//! One subscription to a grading instance's change feed, while it lasts:
//! taken off HTTP (an upgrade), then lines both ways, framed by
//! `LinesCodec` — `changed N` heard and acknowledged, `ping K` sent and its
//! `pong K` extending the lease.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use gradebook_runtime::Runtime;
use gradebook_shared::grading::changes::{LEASE, Line, MAX_LINE, PATH, PROTOCOL};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};

use super::trust::{Freshness, Subscription};

/// How often a subscription pings: well within [`LEASE`], so that a lease
/// runs out only when the feed has stalled.
const PING_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for grading to take a subscription.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(2);

/// The feed's lines, each at most [`MAX_LINE`] bytes with its `\n`. Only
/// whole lines count: what is left unended when the feed closes is an
/// error, as an overlong line is, and ends the subscription.
struct FeedLines(LinesCodec);

impl FeedLines {
    fn new() -> Self {
        Self(LinesCodec::new_with_max_length(MAX_LINE - 1))
    }
}

impl Decoder for FeedLines {
    type Item = String;
    type Error = LinesCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LinesCodecError> {
        self.0.decode(buf)
    }
}

/// One subscription, while it lasts: `Ok` once it flowed, then ended.
pub async fn hold(fresh: &Freshness, runtime: &Runtime, url: &str, subscription: &Subscription) -> Result<(), String> {
    let subscribing = async {
        let request = runtime.open_ended_client().get(format!("{url}{PATH}"));
        let response = runtime
            .authorize(request, gradebook_shared::names::GRADING)
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, PROTOCOL)
            .send()
            .await
            .map_err(|e| gradebook_runtime::http::describe(&e))?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(format!("GET {PATH} answered {}", response.status()));
        }
        response.upgrade().await.map_err(|e| gradebook_runtime::http::describe(&e))
    };
    // The stream has no deadline; taking it does.
    let io = tokio::time::timeout(SUBSCRIBE_LIMIT, subscribing)
        .await
        .map_err(|_| format!("GET {PATH} was not answered within {SUBSCRIBE_LIMIT:?}"))??;
    let (read, mut write) = tokio::io::split(io);
    // What was kept before could have missed a change.
    fresh.moved();
    let mut lines = FramedRead::new(read, FeedLines::new());
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Bounded: a grading that never reads cannot hold the subscription.
    let mut send = async |line: Line| match tokio::time::timeout(LEASE, write.write_all(&line.to_bytes())).await {
        Ok(Ok(())) => Ok(()),
        _ => Err("grading does not read its change feed".to_owned()),
    };
    loop {
        tokio::select! {
            _ = ping.tick() => send(Line::Ping(fresh.millis())).await?,
            // Cancel-safe: what was read stays in the framed reader.
            line = lines.next() => {
                // The end, a broken or an overlong line: over.
                let Some(Ok(line)) = line else { return Ok(()) };
                match Line::parse(line.as_bytes()) {
                    Some(Line::Changed(n)) => {
                        fresh.moved();
                        send(Line::Ack(n)).await?;
                    }
                    // Only a ping we sent (its time is not in the future)
                    // lends trust.
                    Some(Line::Pong(sent)) if sent <= fresh.millis() => {
                        let until = sent.saturating_add(LEASE.as_millis() as u64);
                        subscription.lease_until.fetch_max(until, Ordering::SeqCst);
                    }
                    _ => return Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio_util::codec::FramedRead;

    use super::FeedLines;

    /// The lines `bytes` frame into, until the first error.
    async fn framed(bytes: &'static [u8]) -> (Vec<String>, bool) {
        let mut lines = FramedRead::new(bytes, FeedLines::new());
        let mut read = Vec::new();
        while let Some(line) = lines.next().await {
            match line {
                Ok(line) => read.push(line),
                Err(_) => return (read, true),
            }
        }
        (read, false)
    }

    #[tokio::test]
    async fn only_whole_lines_within_the_limit_are_read() {
        assert_eq!(framed(b"changed 1\npong 5\n").await, (vec!["changed 1".to_owned(), "pong 5".to_owned()], false));
        let longest = format!("changed {}\n", "9".repeat(64 - "changed \n".len()));
        let longest: &'static [u8] = Box::leak(longest.into_bytes().into_boxed_slice());
        assert_eq!(framed(longest).await.0.len(), 1, "a line of 64 bytes with its newline is read");
        let over = format!("changed {}\n", "9".repeat(65 - "changed \n".len()));
        let over: &'static [u8] = Box::leak(over.into_bytes().into_boxed_slice());
        assert_eq!(framed(over).await, (vec![], true), "a longer one ends the feed");
        assert_eq!(framed(b"changed 1\nchang").await, (vec!["changed 1".to_owned()], true), "so does an unended one");
    }
}
