//! What a reader asks for: the filters of `GET /log` and `GET /log/stream`,
//! parsed once into a matcher of records.

use gradebook_shared::log::{Level, LogRecord};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::LogError;

/// Filters shared by `GET /log` and `GET /log/stream`.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    service: Option<String>,
    /// Minimum level.
    level: Option<String>,
    /// RFC 3339 time: only records at or after it.
    since: Option<String>,
    /// Only records whose message contains this (case-insensitive).
    contains: Option<String>,
    /// Only records with a larger sequence number (for paging).
    after: Option<u64>,
    pub(super) limit: Option<usize>,
}

/// A parsed [`Filter`].
pub(super) struct Matcher {
    service: Option<String>,
    level: Option<Level>,
    since: Option<OffsetDateTime>,
    contains: Option<String>,
    after: u64,
}

impl Filter {
    pub(super) fn matcher(&self) -> Result<Matcher, LogError> {
        let level = match self.level.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => {
                Some(l.parse::<Level>().map_err(|e| LogError::BadField { field: "level", message: e.to_string() })?)
            }
            None => None,
        };
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| LogError::BadField {
                field: "since",
                message: format!("since {s:?} is not an RFC 3339 time"),
            })?),
            None => None,
        };
        Ok(Matcher {
            service: self.service.clone().filter(|s| !s.is_empty()),
            level,
            since,
            contains: self.contains.as_ref().filter(|s| !s.is_empty()).map(|s| s.to_lowercase()),
            after: self.after.unwrap_or(0),
        })
    }
}

impl Matcher {
    pub(super) fn matches(&self, r: &LogRecord) -> bool {
        r.seq > self.after
            && self.service.as_ref().is_none_or(|s| &r.service == s)
            && self.level.is_none_or(|l| r.level >= l)
            && self.since.is_none_or(|since| OffsetDateTime::parse(&r.timestamp, &Rfc3339).is_ok_and(|t| t >= since))
            && self.contains.as_ref().is_none_or(|c| r.message.to_lowercase().contains(c))
    }
}
