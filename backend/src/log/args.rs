//! `gradebook log`'s flags, each with an environment fallback and the
//! default of the store configuration it feeds.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use gradebook_runtime::cli::{ServiceArgs, defaults, display};
use serde::Serialize;

use super::StoreConfig;
use super::store::SyncMode;

#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct LogArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_LOG_ADDR", default_value = defaults::LOG_ADDR)]
    pub addr: SocketAddr,
    /// Where the log files live.
    #[arg(long, env = "GRADEBOOK_LOG_DIR", default_value_os_t = StoreConfig::default().dir)]
    pub dir: PathBuf,
    /// Rotate the current file beyond this many bytes.
    #[arg(long, env = "GRADEBOOK_LOG_MAX_FILE_BYTES", default_value_t = StoreConfig::default().max_file_bytes)]
    pub max_file_bytes: u64,
    /// Rotated files kept.
    #[arg(long, env = "GRADEBOOK_LOG_KEEP_FILES", default_value_t = StoreConfig::default().keep_files)]
    pub keep_files: usize,
    /// When a POST is answered: `ack` after the fdatasync that covers its
    /// records (nothing acknowledged is ever lost); `interval` once written,
    /// fsync'd within --flush-interval (faster, but a machine crash or power
    /// cut loses what was acknowledged in that interval, and a failed fsync
    /// shows only in /healthz).
    #[arg(long, env = "GRADEBOOK_LOG_SYNC", value_enum, default_value_t = StoreConfig::default().sync)]
    pub sync: SyncMode,
    /// With --sync interval, the longest time a written entry waits for its
    /// fsync.
    #[arg(long, env = "GRADEBOOK_LOG_FLUSH_INTERVAL", default_value_t = StoreConfig::default().flush_interval.into())]
    #[serde(serialize_with = "display")]
    pub flush_interval: humantime::Duration,
    /// Recent entries kept in memory for queries, at most.
    #[arg(long, env = "GRADEBOOK_LOG_MEMORY_RECORDS", default_value_t = StoreConfig::default().memory_records)]
    pub memory_records: usize,
    /// Bytes of recent entries kept in memory for queries, at most.
    #[arg(long, env = "GRADEBOOK_LOG_MEMORY_BYTES", default_value_t = StoreConfig::default().memory_bytes)]
    pub memory_bytes: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,
}

impl LogArgs {
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            dir: self.dir.clone(),
            max_file_bytes: self.max_file_bytes,
            keep_files: self.keep_files,
            sync: self.sync,
            flush_interval: self.flush_interval.into(),
            memory_records: self.memory_records.max(1),
            memory_bytes: self.memory_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use gradebook_runtime::cli::defaults_of;

    use super::*;

    #[test]
    fn flag_defaults_are_the_configuration_defaults() {
        let log: LogArgs = defaults_of();
        assert_eq!(log.config(), StoreConfig::default());
    }
}
