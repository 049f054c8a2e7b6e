//! The log service's wire types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Severity of a log record, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::Trace, Level::Debug, Level::Info, Level::Warn, Level::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a level name that is not one of [`Level::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLevel(pub String);

impl fmt::Display for UnknownLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown level {:?}: expected one of trace, debug, info, warn, error", self.0)
    }
}

impl std::error::Error for UnknownLevel {}

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" => Ok(Level::Error),
            _ => Err(UnknownLevel(s.to_owned())),
        }
    }
}

impl TryFrom<String> for Level {
    type Error = UnknownLevel;
    fn try_from(s: String) -> Result<Self, UnknownLevel> {
        s.parse()
    }
}

impl From<Level> for &'static str {
    fn from(l: Level) -> Self {
        l.as_str()
    }
}

/// One entry of the central log, as stored (one JSON object per line) and as
/// returned by `GET /log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Position in the log, assigned by the log service; increasing.
    #[serde(default)]
    pub seq: u64,
    pub service: String,
    pub level: Level,
    pub message: String,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A record as clients POST it: the service fills in what is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLogRecord {
    pub service: String,
    #[serde(default = "default_level")]
    pub level: Level,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

fn default_level() -> Level {
    Level::Info
}

/// `POST /log` with JSON accepts one record or an array of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LogBatch {
    Many(Vec<NewLogRecord>),
    One(NewLogRecord),
}

impl LogBatch {
    pub fn into_vec(self) -> Vec<NewLogRecord> {
        match self {
            LogBatch::Many(v) => v,
            LogBatch::One(r) => vec![r],
        }
    }
}

/// Answer to a successful `POST /log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAck {
    pub accepted: usize,
    /// Sequence number of the last stored entry.
    pub last_seq: u64,
}
