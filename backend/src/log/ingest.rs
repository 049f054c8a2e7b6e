//! `POST /log`: entries taken in, as a line of the original protocol or as
//! JSON records, each checked before any of them is stored.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use gradebook_shared::log::{Level, LogAck, LogBatch, NewLogRecord};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::MAX_MESSAGE_BYTES;
use super::error::LogError;
use super::store::Store;

/// `POST /log`: one line of text, or JSON records, stored before the answer.
pub(super) async fn ingest(
    State(store): State<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, LogError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/plain");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let records = match mime.as_str() {
        "application/json" => parse_json(&body)?,
        // curl's default form type is taken as text too: people test with it.
        "text/plain" | "" | "application/x-www-form-urlencoded" => vec![parse_text(&body)?],
        other => return Err(LogError::UnsupportedMediaType(other.to_owned())),
    };
    let accepted = records.len();
    let last_seq = store.append(records).await?;
    Ok((StatusCode::OK, Json(LogAck { accepted, last_seq })))
}

/// A line of the original protocol: `[ServiceName] - message` (or any text).
fn parse_text(body: &[u8]) -> Result<NewLogRecord, LogError> {
    let text = std::str::from_utf8(body).map_err(|_| LogError::BadRequest("the body is not UTF-8 text".into()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err(LogError::BadRequest("empty log entry".into()));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(too_large("message", "a log line"));
    }
    let (service, message) = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(name, _)| !name.is_empty() && !name.contains('\n'))
        .map(|(name, rest)| (name.to_owned(), rest.trim_start().strip_prefix("- ").unwrap_or(rest.trim_start())))
        .unwrap_or_else(|| ("unknown".to_owned(), text));
    Ok(NewLogRecord { service, level: Level::Info, message: message.to_owned(), timestamp: None, fields: None })
}

/// One JSON record or an array of them, each checked.
fn parse_json(body: &[u8]) -> Result<Vec<NewLogRecord>, LogError> {
    let records = serde_json::from_slice::<LogBatch>(body)
        .map_err(|_| {
            // The untagged enum's own message says nothing useful: find out
            // what is wrong with the first bad record.
            let value: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return LogError::BadRequest(format!("malformed JSON: {e}")),
            };
            let first_bad = match &value {
                serde_json::Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| serde_json::from_value::<NewLogRecord>(v.clone()).err().map(|e| (Some(i), e))),
                v => serde_json::from_value::<NewLogRecord>(v.clone()).err().map(|e| (None, e)),
            };
            match first_bad {
                Some((Some(i), e)) => LogError::BadRequest(format!("record {i}: {e}")),
                Some((None, e)) => LogError::BadRequest(format!("invalid record: {e}")),
                None => LogError::BadRequest("expected a record or an array of records".into()),
            }
        })?
        .into_vec();
    if records.is_empty() {
        return Err(LogError::BadRequest("no records".into()));
    }
    for r in &records {
        if r.service.trim().is_empty() {
            return Err(LogError::BadField { field: "service", message: "service must not be empty".into() });
        }
        if r.message.is_empty() {
            return Err(LogError::BadField { field: "message", message: "message must not be empty".into() });
        }
        if r.message.len() > MAX_MESSAGE_BYTES {
            return Err(too_large("message", "message"));
        }
        if r.service.len() > 200 {
            return Err(LogError::BadField { field: "service", message: "service must be at most 200 bytes".into() });
        }
        gradebook_shared::printable("service", &r.service)
            .map_err(|e| LogError::BadField { field: "service", message: e.error })?;
        if r.fields.as_ref().is_some_and(|f| serde_json::to_vec(f).map_or(true, |b| b.len() > MAX_MESSAGE_BYTES)) {
            return Err(too_large("fields", "fields"));
        }
        if let Some(ts) = &r.timestamp
            && OffsetDateTime::parse(ts, &Rfc3339).is_err()
        {
            return Err(LogError::BadField {
                field: "timestamp",
                message: format!("timestamp {ts:?} is not an RFC 3339 time"),
            });
        }
    }
    Ok(records)
}

fn too_large(field: &'static str, what: &str) -> LogError {
    LogError::TooLarge { field, message: format!("{what} is over {} KiB", MAX_MESSAGE_BYTES / 1024) }
}
