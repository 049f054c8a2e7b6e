//! What a reader asks for: the filters and cursor of `GET /log`,
//! `GET /log/export` and `GET /log/stream`, parsed once into a matcher of
//! records and a cursor, each bad value a 400 naming its field.

use gradebook_shared::log::{Level, LogRecord};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::LogError;
use super::store::{Cursor, TimeRange};
use super::{DEFAULT_LIMIT, MAX_LIMIT};

/// Filters shared by `GET /log`, `GET /log/export` and `GET /log/stream`.
/// Every value is taken as text and parsed here, so a bad one gets the one
/// error shape with its field named.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    service: Option<String>,
    /// Minimum level.
    level: Option<String>,
    /// RFC 3339 time: only records at or after it.
    since: Option<String>,
    /// RFC 3339 time: only records at or before it.
    until: Option<String>,
    /// Only records whose message contains this (case-insensitive).
    contains: Option<String>,
    /// The first records with a larger sequence number (paging forward).
    after: Option<String>,
    /// The last records with a smaller sequence number (paging backward).
    before: Option<String>,
    limit: Option<String>,
}

/// A parsed [`Filter`].
pub(super) struct Matcher {
    service: Option<String>,
    level: Option<Level>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    contains: Option<String>,
    after: u64,
    before: u64,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn seq(field: &'static str, value: &str) -> Result<u64, LogError> {
    value.parse::<u64>().map_err(|_| LogError::BadField {
        field,
        message: format!("{field} {value:?} is not a non-negative integer (a record's seq)"),
    })
}

fn time(field: &'static str, value: Option<&str>) -> Result<Option<OffsetDateTime>, LogError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map_err(|_| LogError::BadField { field, message: format!("{field} {v:?} is not an RFC 3339 time") })
        })
        .transpose()
}

impl Filter {
    pub(super) fn matcher(&self) -> Result<Matcher, LogError> {
        let level = match given(&self.level) {
            Some(l) => {
                Some(l.parse::<Level>().map_err(|e| LogError::BadField { field: "level", message: e.to_string() })?)
            }
            None => None,
        };
        let since = time("since", given(&self.since))?;
        let until = time("until", given(&self.until))?;
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(LogError::BadField { field: "until", message: "until is before since".into() });
        }
        let cursor = self.cursor()?;
        Ok(Matcher {
            service: given(&self.service).map(str::to_owned),
            level,
            since,
            until,
            contains: given(&self.contains).map(str::to_lowercase),
            after: match cursor {
                Cursor::After(after) => after,
                _ => 0,
            },
            before: match cursor {
                Cursor::Before(before) => before,
                _ => u64::MAX,
            },
        })
    }

    /// Where the page starts: `after=`, `before=`, or the newest.
    pub(super) fn cursor(&self) -> Result<Cursor, LogError> {
        match (given(&self.after), given(&self.before)) {
            (Some(_), Some(_)) => {
                Err(LogError::BadField { field: "before", message: "after and before cannot be given together".into() })
            }
            (Some(after), None) => Ok(Cursor::After(seq("after", after)?)),
            (None, Some(before)) => match seq("before", before)? {
                0 => Err(LogError::BadField { field: "before", message: "before=0 can match nothing".into() }),
                before => Ok(Cursor::Before(before)),
            },
            (None, None) => Ok(Cursor::Newest),
        }
    }

    /// The page size asked for, 1 to [`MAX_LIMIT`].
    pub(super) fn limit(&self) -> Result<usize, LogError> {
        let Some(limit) = given(&self.limit) else { return Ok(DEFAULT_LIMIT) };
        match limit.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => Ok(n),
            _ => Err(LogError::BadField {
                field: "limit",
                message: format!("limit {limit:?} is not a number from 1 to {MAX_LIMIT}"),
            }),
        }
    }

    /// True when nothing but `after=` narrows the records.
    pub(super) fn takes_all(&self) -> bool {
        [&self.before, &self.service, &self.level, &self.since, &self.until, &self.contains]
            .iter()
            .all(|v| given(v).is_none())
    }
}

impl Matcher {
    pub(super) fn matches(&self, r: &LogRecord) -> bool {
        r.seq > self.after
            && r.seq < self.before
            && self.service.as_ref().is_none_or(|s| &r.service == s)
            && self.level.is_none_or(|l| r.level >= l)
            && (self.since.is_none() && self.until.is_none() || self.in_range(&r.timestamp))
            && self.contains.as_ref().is_none_or(|c| r.message.to_lowercase().contains(c))
    }

    fn in_range(&self, timestamp: &str) -> bool {
        OffsetDateTime::parse(timestamp, &Rfc3339)
            .is_ok_and(|t| self.since.is_none_or(|since| t >= since) && self.until.is_none_or(|until| t <= until))
    }

    /// The time range asked for, for skipping what cannot match.
    pub(super) fn range(&self) -> TimeRange {
        TimeRange {
            since: self.since.map(|t| t.unix_timestamp_nanos()),
            until: self.until.map(|t| t.unix_timestamp_nanos()),
        }
    }

    /// The cursor of an export: records above it.
    pub(super) fn after(&self) -> u64 {
        self.after
    }
}
