//! Reading the store back: pages by cursor (forward from `after`, backward
//! from `before`, or the newest), answered from the memory window when it
//! covers the page and from the retained files otherwise, and the export of
//! every retained record in order, a block at a time.
//!
//! A seek goes straight to the block that holds the cursor (the segments'
//! sparse index), never scanning from the start of the log.

use std::sync::Arc;

use gradebook_shared::log::LogRecord;

use super::Store;
use super::segments::{Block, Segment, TimeRange, records, seq_of};

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest records.
    Newest,
    /// The first records with a larger seq.
    After(u64),
    /// The last records with a smaller seq.
    Before(u64),
}

/// One page of records, oldest first.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<Arc<LogRecord>>,
    /// Set when the cursor pointed before the oldest retained record: the
    /// page starts from that one instead.
    pub oldest_retained: Option<u64>,
}

impl Store {
    /// The page at `cursor` of the records that `keep` accepts: at most
    /// `limit` of them and at most `max_bytes` (as stored). A read of the
    /// files blocks: call it off the async runtime.
    /// Blocks of the files that hold nothing in `range` are not read.
    pub fn page(
        &self,
        cursor: Cursor,
        limit: usize,
        max_bytes: usize,
        range: TimeRange,
        keep: impl Fn(&LogRecord) -> bool,
    ) -> Page {
        let segments = self.inner.segments.lock().clone();
        let oldest = segments.iter().find_map(|s| s.first_seq());
        let mut page = Page::default();
        if let (Cursor::After(after), Some(oldest)) = (cursor, oldest)
            && after.saturating_add(1) < oldest
        {
            page.oldest_retained = Some(oldest);
        }
        // What memory still holds of a file rotated away is no longer kept:
        // a page never shows it, as after a restart.
        let retained = oldest.unwrap_or(0);
        let window: Vec<(Arc<LogRecord>, usize)> =
            self.inner.window.lock().records.iter().filter(|(r, _)| r.seq >= retained).cloned().collect();
        let window_first = window.first().map(|(r, _)| r.seq);
        match cursor {
            Cursor::After(after) => {
                if window_first.is_some_and(|first| after.saturating_add(1) >= first) {
                    page.records = take_forward(window.into_iter(), after, limit, max_bytes, &keep);
                } else {
                    page.records = forward(&segments, after, limit, max_bytes, range, &keep);
                }
            }
            Cursor::Newest | Cursor::Before(_) => {
                let before = match cursor {
                    Cursor::Before(before) => before,
                    _ => u64::MAX,
                };
                let from_window = take_backward(window.into_iter().rev(), before, limit, max_bytes, &keep);
                page.records = match from_window {
                    Some(found) => found,
                    None => backward(&segments, before, limit, max_bytes, range, &keep),
                };
            }
        }
        page
    }

    /// Streams every retained record with a seq above `after` that `keep`
    /// accepts to `send`, oldest first, as stored lines in chunks of about
    /// `chunk` bytes; `keep` of `None` takes every record without parsing
    /// it. Stops early when `send` returns false (the reader left).
    pub fn export(
        &self,
        after: u64,
        range: TimeRange,
        chunk: usize,
        keep: Option<&dyn Fn(&LogRecord) -> bool>,
        mut send: impl FnMut(Vec<u8>) -> bool,
    ) -> std::io::Result<()> {
        let segments = self.inner.segments.lock().clone();
        let mut out = Vec::with_capacity(chunk + super::segments::BLOCK_BYTES as usize);
        for segment in segments.iter().filter(|s| s.last_seq() > after) {
            let mut blocks = segment.blocks();
            let start = first_block(&blocks, after);
            let mut blocks = blocks.split_off(start);
            blocks.retain(|b| range.may_hold(b));
            // Neighbouring blocks are read together: fewer, larger reads.
            for run in blocks.chunks((chunk as u64 / super::segments::BLOCK_BYTES).max(1) as usize) {
                let (Some(first), Some(last)) = (run.first(), run.last()) else { continue };
                let bytes = segment.read(Block { end: last.end, ..*first })?;
                // Whole records only, all past the cursor: as they are.
                if keep.is_none() && segment.is_clean() && first.first_seq > after && range.is_open() {
                    if out.is_empty() {
                        out = bytes;
                    } else {
                        out.extend_from_slice(&bytes);
                    }
                    if out.len() >= chunk && !send(std::mem::take(&mut out)) {
                        return Ok(());
                    }
                    continue;
                }
                for line in bytes.split(|&b| b == b'\n') {
                    let Some(seq) = seq_of(line) else { continue };
                    if seq <= after {
                        continue;
                    }
                    if let Some(keep) = keep {
                        match serde_json::from_slice::<LogRecord>(line) {
                            Ok(r) if keep(&r) => {}
                            _ => continue,
                        }
                    }
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
                if out.len() >= chunk && !send(std::mem::take(&mut out)) {
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            send(out);
        }
        Ok(())
    }
}

/// The index of the block that holds the first record after `after`.
fn first_block(blocks: &[Block], after: u64) -> usize {
    blocks.partition_point(|b| b.first_seq <= after.saturating_add(1)).saturating_sub(1)
}

/// The first matching records above `after` from files, oldest first.
fn forward(
    segments: &[Arc<Segment>],
    after: u64,
    limit: usize,
    max_bytes: usize,
    range: TimeRange,
    keep: &dyn Fn(&LogRecord) -> bool,
) -> Vec<Arc<LogRecord>> {
    let mut found = Vec::new();
    let mut bytes = 0;
    for segment in segments.iter().filter(|s| s.last_seq() > after) {
        let blocks = segment.blocks();
        for block in blocks[first_block(&blocks, after)..].iter().filter(|b| range.may_hold(b)) {
            let Ok(data) = segment.read(*block) else { return found };
            for (r, size) in records(&data) {
                if r.seq <= after || !keep(&r) {
                    continue;
                }
                bytes += size;
                if found.len() >= limit || bytes > max_bytes {
                    return found;
                }
                found.push(Arc::new(r));
            }
        }
    }
    found
}

/// The last matching records below `before` from files, oldest first.
fn backward(
    segments: &[Arc<Segment>],
    before: u64,
    limit: usize,
    max_bytes: usize,
    range: TimeRange,
    keep: &dyn Fn(&LogRecord) -> bool,
) -> Vec<Arc<LogRecord>> {
    let mut found = Vec::new();
    let mut bytes = 0;
    'segments: for segment in segments.iter().rev() {
        if segment.first_seq().is_none_or(|first| first >= before) {
            continue;
        }
        let blocks = segment.blocks();
        let end = blocks.partition_point(|b| b.first_seq < before);
        for block in blocks[..end].iter().rev().filter(|b| range.may_hold(b)) {
            let Ok(data) = segment.read(*block) else { break 'segments };
            let in_block: Vec<(LogRecord, usize)> = records(&data).filter(|(r, _)| r.seq < before && keep(r)).collect();
            for (r, size) in in_block.into_iter().rev() {
                bytes += size;
                if found.len() >= limit || bytes > max_bytes {
                    break 'segments;
                }
                found.push(Arc::new(r));
            }
        }
    }
    found.reverse();
    found
}

/// The first matching records above `after` of the window, oldest first.
fn take_forward(
    window: impl Iterator<Item = (Arc<LogRecord>, usize)>,
    after: u64,
    limit: usize,
    max_bytes: usize,
    keep: &dyn Fn(&LogRecord) -> bool,
) -> Vec<Arc<LogRecord>> {
    let mut bytes = 0;
    window
        .filter(|(r, _)| r.seq > after && keep(r))
        .take(limit)
        .take_while(|(_, size)| {
            bytes += size;
            bytes <= max_bytes
        })
        .map(|(r, _)| r)
        .collect()
}

/// The last matching records below `before` of the window (given newest
/// first), oldest first; `None` when the window ran out before the page was
/// full, so the files must answer.
fn take_backward(
    newest_first: impl Iterator<Item = (Arc<LogRecord>, usize)>,
    before: u64,
    limit: usize,
    max_bytes: usize,
    keep: &dyn Fn(&LogRecord) -> bool,
) -> Option<Vec<Arc<LogRecord>>> {
    let mut bytes = 0;
    let mut found = Vec::new();
    for (r, size) in newest_first.filter(|(r, _)| r.seq < before && keep(r)) {
        bytes += size;
        if found.len() >= limit || bytes > max_bytes {
            found.reverse();
            return Some(found);
        }
        found.push(r);
    }
    None
}
