//! Where a child's output goes: the console, each line prefixed with the
//! child's name (in a colour of its own on a terminal); its log file under
//! the data directory, rotated by size; and its last lines, for the message
//! when `up` gives up on it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// The label of what `up` itself says, beside its children's names.
pub(super) const UP: &str = "up";
/// Lines of a child's output kept for the message when `up` gives up on it.
const TAIL_LINES: usize = 20;
/// A child's log file beyond this is moved to `<name>.log.1` (one kept), so
/// a long-running system cannot fill the disk with it.
const MAX_LOG_BYTES: u64 = 8 << 20;

/// The prefixes of the `index`-th child's lines and of what `up` says about
/// it, their names padded to `width`.
pub(super) fn prefixes(name: &str, index: usize, width: usize, colored: bool) -> (String, String) {
    let label = format!("{name:width$} |");
    let prefix = if colored { format!("\x1b[{}m{label}\x1b[0m", 31 + (index % 6)) } else { label };
    (prefix, format!("{UP:width$} |"))
}

/// Prints a line, ignoring a closed or broken stdout: `up` must keep
/// supervising even when nobody reads its console (`println!` would panic).
pub(super) fn say(line: impl std::fmt::Display) {
    // Under `cargo test`, `println!` is what the harness captures.
    #[cfg(test)]
    println!("{line}");
    #[cfg(not(test))]
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Where a part's output goes: the console, prefixed with its name; its log
/// file under the data directory, so that it can still be read after `up`
/// has given up; and its last lines, for the message when it does.
#[derive(Clone)]
pub(super) struct Output {
    prefix: String,
    up_prefix: String,
    path: PathBuf,
    kept: Arc<Mutex<Kept>>,
}

struct Kept {
    file: Option<std::fs::File>,
    bytes: u64,
    tail: VecDeque<String>,
}

impl Output {
    pub(super) fn new(dir: &Path, name: &str, prefix: String, up_prefix: String) -> Self {
        let path = dir.join(format!("{name}.log"));
        let file = std::fs::create_dir_all(dir).and_then(|()| open_log(&path));
        let (file, bytes) = match file {
            Ok(f) => {
                let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Some(f), bytes)
            }
            Err(e) => {
                say(format_args!(
                    "{up_prefix} cannot write {}: {e}; {name}'s output is shown here only",
                    path.display()
                ));
                (None, 0)
            }
        };
        Self { prefix, up_prefix, path, kept: Arc::new(Mutex::new(Kept { file, bytes, tail: VecDeque::new() })) }
    }

    /// A line the child printed.
    pub(super) fn line(&self, line: &str) {
        say(format_args!("{} {line}", self.prefix));
        let mut kept = self.lock();
        if kept.tail.len() == TAIL_LINES {
            kept.tail.pop_front();
        }
        kept.tail.push_back(line.to_owned());
        self.write(&mut kept, line);
    }

    /// What `up` says about the child: on the console and in its log file.
    pub(super) fn note(&self, note: &str) {
        say(format_args!("{} {note}", self.up_prefix));
        let stamped = format!("--- {} {note}", humantime::format_rfc3339_millis(std::time::SystemTime::now()));
        self.write(&mut self.lock(), &stamped);
    }

    /// The child starts again: the give-up message shows the last run's
    /// lines (earlier runs are in the log file).
    pub(super) fn new_run(&self) {
        self.lock().tail.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock()
    }

    fn write(&self, kept: &mut Kept, line: &str) {
        if kept.bytes > MAX_LOG_BYTES {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            // Losing the log file must not stop supervision: on any error
            // the console still shows everything.
            kept.file = std::fs::rename(&self.path, &rotated).and_then(|()| open_log(&self.path)).ok();
            kept.bytes = 0;
        }
        if let Some(file) = &mut kept.file {
            let bytes = format!("{line}\n");
            if file.write_all(bytes.as_bytes()).is_ok() {
                kept.bytes += bytes.len() as u64;
            }
        }
    }

    /// Where the whole output can be read, for the give-up message.
    pub(super) fn whereabouts(&self) -> String {
        let kept = self.lock();
        let tail = kept.tail.iter().map(|l| format!("\n    {l}")).collect::<String>();
        let last = if tail.is_empty() { "It printed nothing.".to_owned() } else { format!("Its last lines:{tail}") };
        match kept.file {
            Some(_) => format!("{last}\n  Its whole output is in {}", self.path.display()),
            None => format!("{last}\n  Its whole output is above, prefixed with its name."),
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}
