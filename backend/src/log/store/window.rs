//! The most recent written records, kept in memory for queries, bounded in
//! count and in bytes (as serialized).

use std::collections::VecDeque;
use std::sync::Arc;

use gradebook_shared::log::LogRecord;

use super::StoreConfig;

/// The most recent written records, bounded in count and bytes.
#[derive(Default)]
pub(super) struct Window {
    pub(super) records: VecDeque<(Arc<LogRecord>, usize)>,
    bytes: usize,
}

impl Window {
    pub(super) fn push(&mut self, record: Arc<LogRecord>, size: usize, config: &StoreConfig) {
        self.records.push_back((record, size));
        self.bytes += size;
        while self.records.len() > config.memory_records || (self.bytes > config.memory_bytes && self.records.len() > 1)
        {
            if let Some((_, size)) = self.records.pop_front() {
                self.bytes -= size;
            }
        }
    }
}
