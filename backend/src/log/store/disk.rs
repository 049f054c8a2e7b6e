//! The log's files on disk: the current one, appended to in whole lines (a
//! failed write leaves nothing of itself behind), and the rotated ones kept
//! beside it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::StoreConfig;

pub(super) struct Disk {
    pub(super) file: File,
    pub(super) size: u64,
    /// A failed write may have left part of a line that could not be cut
    /// off: the next write starts with a newline so it stands alone.
    pub(super) torn: bool,
    /// When the oldest written but not yet fsync'd record arrived.
    pub(super) unsynced_since: Option<Instant>,
    /// A read handle on the file a rotation started, for the writer to
    /// make a segment of.
    pub(super) new_segment: Option<File>,
}

/// True when the file at `path` is empty or ends with a newline.
pub(super) fn ends_whole(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else { return true };
    let mut last = [0u8; 1];
    match file.seek(SeekFrom::End(-1)) {
        Ok(_) => file.read_exact(&mut last).is_ok() && last[0] == b'\n',
        Err(_) => true,
    }
}

/// The file being written; rotated ones are `log.N.jsonl`.
pub(super) const CURRENT: &str = "log.jsonl";

/// The `n`-th newest rotated file.
pub(super) fn rotated(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("log.{n}.jsonl"))
}

/// Where a write's bytes went.
pub(super) struct Written {
    /// Offset of the first byte in the current file.
    pub(super) offset: u64,
}

/// Appends `bytes` (whole lines) to the current file, rotating first when
/// it would grow past its limit. On failure nothing of them stays: a
/// partial line is cut off, or, if even that fails, isolated by a newline.
pub(super) fn write(disk: &mut Disk, config: &StoreConfig, bytes: &[u8]) -> std::io::Result<Written> {
    if disk.size > 0 && disk.size + bytes.len() as u64 > config.max_file_bytes {
        rotate(disk, config)?;
    }
    if disk.torn {
        disk.file.write_all(b"\n")?;
        disk.size += 1;
        disk.torn = false;
    }
    let before = disk.size;
    if let Err(e) = disk.file.write_all(bytes) {
        disk.torn = disk.file.set_len(before).is_err();
        disk.size = disk.file.metadata().map_or(before, |m| m.len());
        return Err(e);
    }
    disk.size += bytes.len() as u64;
    Ok(Written { offset: before })
}

/// Cuts the last write (from `offset`) off again: its fsync failed, so it
/// was never acknowledged. If even that fails, the next write starts on a
/// new line.
pub(super) fn undo(disk: &mut Disk, offset: u64) {
    disk.torn = disk.file.set_len(offset).is_err();
    disk.size = disk.file.metadata().map_or(disk.size, |m| m.len());
}

/// Moves the current file aside (keeping `keep_files` older ones) and starts
/// a new one. The old file is fsync'd first: the syncer only knows the new.
fn rotate(disk: &mut Disk, config: &StoreConfig) -> std::io::Result<()> {
    disk.file.sync_data()?;
    let dir = &config.dir;
    if config.keep_files == 0 {
        std::fs::remove_file(dir.join(CURRENT))?;
    } else {
        let _ = std::fs::remove_file(rotated(dir, config.keep_files));
        for n in (1..config.keep_files).rev() {
            let _ = std::fs::rename(rotated(dir, n), rotated(dir, n + 1));
        }
        std::fs::rename(dir.join(CURRENT), rotated(dir, 1))?;
    }
    disk.file = OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))?;
    disk.new_segment = Some(File::open(dir.join(CURRENT))?);
    disk.size = 0;
    disk.torn = false;
    Ok(())
}
