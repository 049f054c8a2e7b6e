//! The retained files as readers see them: one open handle per file (so a
//! rotation's rename never pulls a file from under a reader) and a sparse
//! index of each, the first seq, byte offset and time span of every block of
//! about [`BLOCK_BYTES`], rebuilt from the file when the store opens.
//!
//! A file's readable length grows only once its bytes are as durable as the
//! store promises: readers never see a record whose append could still fail.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gradebook_shared::log::LogRecord;
use parking_lot::Mutex;

/// A new index entry starts once a block holds this many bytes: a seek
/// reads at most about this much before the record it looks for.
pub(super) const BLOCK_BYTES: u64 = 32 * 1024;

/// One retained file, oldest records first.
pub(super) struct Segment {
    file: File,
    index: Mutex<Index>,
    /// True while every readable byte is whole records: the export then
    /// sends blocks as they are, without looking at each line.
    clean: AtomicBool,
}

#[derive(Default, Clone)]
struct Index {
    /// `(first seq, byte offset)` of each block, both increasing.
    blocks: Vec<(u64, u64)>,
    /// The earliest and latest time of each block's records (Unix
    /// nanoseconds): services stamp their own records, so times are not in
    /// seq order, and a seek by time skips the blocks that cannot match.
    times: Vec<(i128, i128)>,
    /// Bytes readers may read.
    len: u64,
    last_seq: u64,
}

/// The byte range of one block and the seq it starts with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    pub(super) first_seq: u64,
    pub(super) start: u64,
    pub(super) end: u64,
    /// Earliest and latest time of its records, as Unix nanoseconds.
    pub(super) times: (i128, i128),
}

/// A time range asked for, as Unix nanoseconds, both ends included.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    pub since: Option<i128>,
    pub until: Option<i128>,
}

impl TimeRange {
    /// True when no time bounds it.
    pub(super) fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// False when no record of `block` can be in the range.
    pub(super) fn may_hold(&self, block: &Block) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let (earliest, latest) = block.times;
        self.since.is_none_or(|since| latest >= since) && self.until.is_none_or(|until| earliest <= until)
    }
}

/// The time of a record as Unix nanoseconds; `None` when it is not RFC 3339
/// (such a record matches no time range).
pub(super) fn nanos(timestamp: &str) -> Option<i128> {
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

impl Segment {
    pub(super) fn new(file: File) -> Arc<Self> {
        Arc::new(Self { file, index: Mutex::new(Index::default()), clean: AtomicBool::new(true) })
    }

    /// Something not a record (a torn line, or a newline isolating one) is
    /// among its bytes.
    pub(super) fn soil(&self) {
        self.clean.store(false, Ordering::Relaxed);
    }

    pub(super) fn is_clean(&self) -> bool {
        self.clean.load(Ordering::Relaxed)
    }

    /// Makes the record of `seq` at `offset` (`size` bytes with its newline)
    /// readable.
    pub(super) fn add(&self, seq: u64, offset: u64, size: u64, time: Option<i128>) {
        let mut index = self.index.lock();
        if index.blocks.last().is_none_or(|&(_, start)| offset >= start + BLOCK_BYTES) {
            index.blocks.push((seq, offset));
            index.times.push((i128::MAX, i128::MIN));
        }
        if let (Some(time), Some(span)) = (time, index.times.last_mut()) {
            *span = (span.0.min(time), span.1.max(time));
        }
        index.len = offset + size;
        index.last_seq = seq;
    }

    pub(super) fn first_seq(&self) -> Option<u64> {
        self.index.lock().blocks.first().map(|&(seq, _)| seq)
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.index.lock().last_seq
    }

    /// The readable blocks, oldest first.
    pub(super) fn blocks(&self) -> Vec<Block> {
        let index = self.index.lock().clone();
        let ends = index.blocks.iter().skip(1).map(|&(_, start)| start).chain([index.len]);
        index
            .blocks
            .iter()
            .zip(&index.times)
            .zip(ends)
            .map(|((&(first_seq, start), &times), end)| Block { first_seq, start, end, times })
            .collect()
    }

    /// The bytes of `block`.
    pub(super) fn read(&self, block: Block) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0; (block.end - block.start) as usize];
        self.file.read_exact_at(&mut bytes, block.start)?;
        Ok(bytes)
    }
}

/// The whole records in `bytes`, in order, with their sizes as stored; a
/// torn or foreign line is skipped.
pub(super) fn records(bytes: &[u8]) -> impl Iterator<Item = (LogRecord, usize)> + '_ {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<LogRecord>(line).ok().map(|r| (r, line.len() + 1)))
}

/// The seq of a stored line, read without parsing the rest of it: every
/// line the store writes starts with it. `None` for a torn or foreign line.
pub(super) fn seq_of(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b',') || line.last() != Some(&b'}') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
