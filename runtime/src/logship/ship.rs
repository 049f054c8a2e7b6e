//! Delivering queued records in order, in batches, to a log service found
//! through discovery, with backoff while none answers; and the text lines a
//! log service of the original design takes instead.

use std::collections::HashMap;
use std::time::Duration;

use gradebook_shared::log::NewLogRecord;
use tokio_util::sync::CancellationToken;

use super::{Destination, LogBuffer};
use crate::backoff::Backoff;

impl LogBuffer {
    /// Delivers queued records until `cancel`, then makes a last attempt
    /// (bounded by `client`'s timeout) to deliver what remains.
    pub async fn ship(self, destination: Destination, client: reqwest::Client, cancel: CancellationToken) {
        let mut formats = Formats::default();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let cancelled = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = self.inner.wake.notified() => false,
                _ = tokio::time::sleep(Duration::from_millis(100)) => false,
            };
            match self.deliver_all(&destination, &client, &mut formats).await {
                Ok(()) => backoff.reset(),
                Err(()) if !cancelled => {
                    backoff.wait(&cancel).await;
                }
                Err(()) => {}
            }
            if cancelled || cancel.is_cancelled() {
                let _ = self.deliver_all(&destination, &client, &mut formats).await;
                return;
            }
        }
    }

    async fn deliver_all(
        &self,
        destination: &Destination,
        client: &reqwest::Client,
        formats: &mut Formats,
    ) -> Result<(), ()> {
        while let Some((batch, last, dropped)) = self.next_batch() {
            let mut sent = false;
            for base in destination() {
                let delivered = match formats.of(client, &base).await {
                    Some(Format::Json) => post(client.post(format!("{base}/log")).json(&batch)).await,
                    Some(Format::Text) => deliver_as_text(client, &base, &batch).await,
                    None => false,
                };
                if delivered {
                    sent = true;
                    break;
                }
            }
            if !sent {
                return Err(());
            }
            self.delivered(last, dropped);
        }
        Ok(())
    }
}

/// What a log service takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// Ours: batches of JSON records.
    Json,
    /// The original design's: one text line per POST.
    Text,
}

/// The format of each destination, asked once.
#[derive(Default)]
struct Formats(HashMap<String, Format>);

impl Formats {
    /// None when the destination cannot be reached right now.
    async fn of(&mut self, client: &reqwest::Client, base: &str) -> Option<Format> {
        if let Some(format) = self.0.get(base) {
            return Some(*format);
        }
        let status = client.get(format!("{base}/log?limit=1")).send().await.ok()?.status();
        let format = match status {
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED => Format::Text,
            _ => Format::Json,
        };
        if format == Format::Text {
            tracing::info!(log_service = %base, "the log service takes only text; shipping text lines");
        }
        self.0.insert(base.to_owned(), format);
        Some(format)
    }
}

async fn post(request: reqwest::RequestBuilder) -> bool {
    request.send().await.is_ok_and(|r| r.status().is_success())
}

/// One POST per record. A failure part-way retries the whole batch, so the
/// original's log may see a line twice, never lose one.
async fn deliver_as_text(client: &reqwest::Client, base: &str, batch: &[NewLogRecord]) -> bool {
    for record in batch {
        let line = text_line(record);
        let request = client.post(format!("{base}/log")).header(reqwest::header::CONTENT_TYPE, "text/plain").body(line);
        if !post(request).await {
            return false;
        }
    }
    true
}

/// `[Service] - message key=value ...`: the original's line, with the
/// structured fields after the message so nothing is lost.
pub(super) fn text_line(record: &NewLogRecord) -> String {
    let mut line = format!("[{}] - {}", record.service, record.message);
    for (key, value) in record.fields.iter().flatten() {
        match value {
            serde_json::Value::String(s) => line.push_str(&format!(" {key}={s}")),
            v => line.push_str(&format!(" {key}={v}")),
        }
    }
    // A record is one line there, whatever its message holds.
    line.replace(['\n', '\r'], " ")
}
