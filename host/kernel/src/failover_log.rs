//! The failover log file (`log.failover_log`), written by a task of its own so the tick loop
//! never waits on a disk; and the file's rotation and retention.
//!
//! One line per transition, request and decision: `<RFC 3339 time>|<agent>|<level>|<message>`.
//! The file is reopened for every line, so an outside `logrotate` (rename or copytruncate)
//! works too. duet's own rotation: when a line would take the file past
//! `log.failover_log_max_mib`, `<file>` becomes `<file>.1`, `.1` becomes `.2`, and so on up to
//! `log.failover_log_keep`; rotated files older than `log.failover_log_retention` are deleted
//! (at start, after each rotation and hourly). See docs/failover-log.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duet_core::TimestampMs;
use tokio::sync::mpsc;

use duet_base::Severity;

use crate::config::LogConfig;

/// How often rotated files are checked against the retention when nothing rotates.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Where the failover log goes and how much of it is kept.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// The current file; rotated files are `<path>.1` (newest) to `<path>.<keep>`.
    pub path: PathBuf,
    /// A line that would take the file past this size rotates it first.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Rotated files whose last write is older than this are deleted; `None`: kept until
    /// `keep` pushes them out.
    pub retention: Option<Duration>,
}

impl LogFile {
    /// The log file of this configuration, if it has one.
    pub fn of(config: &LogConfig) -> Option<Self> {
        config.failover_log.as_ref().map(|path| LogFile {
            path: path.clone(),
            max_bytes: config.failover_log_max_bytes,
            keep: config.failover_log_keep,
            retention: config.failover_log_retention,
        })
    }

    /// The `n`th rotated file (1 is the newest).
    pub fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Appends one line, rotating first if it would take the file past `max_bytes`.
    pub fn append(&self, line: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        };
        let mut f = open()?;
        let len = f.metadata()?.len();
        if len > 0 && len + line.len() as u64 > self.max_bytes {
            drop(f);
            self.rotate()?;
            f = open()?;
        }
        f.write_all(line.as_bytes())
    }

    /// Shifts `<path>` to `<path>.1`, `.1` to `.2` and so on, dropping what falls past `keep`,
    /// then applies the retention.
    pub fn rotate(&self) -> std::io::Result<()> {
        remove_if_present(&self.rotated(self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_present(&self.rotated(n), &self.rotated(n + 1))?;
        }
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            rename_if_present(&self.path, &self.rotated(1))?;
        }
        self.prune(SystemTime::now())
    }

    /// Deletes rotated files past `keep` (left by a larger `keep` earlier) and those whose last
    /// write is older than the retention. The current file is never deleted.
    pub fn prune(&self, now: SystemTime) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let Some(stem) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix(stem))
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let expired = self.retention.is_some_and(|keep_for| {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > keep_for))
            });
            if n > self.keep || expired {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The failover log file, written by a task of its own: the tick loop never waits on a disk.
/// Lines go through a bounded channel (dropped and counted if the disk hangs).
pub(crate) struct FailoverLog {
    agent: String,
    /// Whether there is a log file (without one, lines go to stderr only).
    has_file: bool,
    lines: Option<mpsc::Sender<String>>,
    dropped: u64,
    writer: tokio::task::JoinHandle<()>,
}

impl FailoverLog {
    /// Starts the writer task; [`FailoverLog::close`] flushes and ends it.
    pub(crate) fn start(file: Option<LogFile>, agent: String) -> Self {
        let (lines, mut lines_rx) = mpsc::channel::<String>(1_024);
        let has_file = file.is_some();
        let writer = tokio::spawn(async move {
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    line = lines_rx.recv() => match line {
                        Some(line) => on_disk(&file, move |f| f.append(&line)).await,
                        None => return,
                    },
                    // The first tick is at once: the retention applies from start.
                    _ = prune.tick() => on_disk(&file, |f| f.prune(SystemTime::now())).await,
                }
            }
        });
        FailoverLog {
            agent,
            has_file,
            lines: Some(lines),
            dropped: 0,
            writer,
        }
    }

    /// Writes one line: `<time>|<agent>|<INF, WRN or ERR>|<message>`.
    pub(crate) fn write(&mut self, now: TimestampMs, severity: Severity, message: &str) {
        let level = severity.log_level();
        tracing::info!(target: "duet::failover", level, "{message}");
        let Some(lines) = self.lines.as_ref().filter(|_| self.has_file) else {
            return;
        };
        let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(now));
        let line = format!("{at}|{}|{level}|{message}\n", self.agent);
        if lines.try_send(line).is_err() {
            self.dropped += 1;
            tracing::warn!(
                dropped = self.dropped,
                "the failover log's disk does not keep up; line dropped"
            );
        }
    }

    /// Flushes the queued lines and ends the writer, waiting at most 5 s.
    pub(crate) async fn close(mut self) {
        self.lines = None;
        if tokio::time::timeout(Duration::from_secs(5), self.writer)
            .await
            .is_err()
        {
            tracing::error!("the disk did not take the last failover log lines within 5 s");
        }
    }
}

/// Runs `op` on the log file on the blocking pool; a failure is logged, never fatal.
async fn on_disk(
    file: &Option<LogFile>,
    op: impl FnOnce(&LogFile) -> std::io::Result<()> + Send + 'static,
) {
    let Some(file) = file.clone() else { return };
    let path = file.path.clone();
    let done = tokio::task::spawn_blocking(move || op(&file)).await;
    if let Err(e) = done.map_err(std::io::Error::other).and_then(|r| r) {
        tracing::error!(path = %path.display(), error = %e, "failed to write the failover log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, max_bytes: u64, keep: u32) -> LogFile {
        LogFile {
            path: dir.join("failover.log"),
            max_bytes,
            keep,
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }

    fn read(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rotation_keeps_the_newest_lines_in_order_and_never_more_than_keep_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = file(dir.path(), 1_000, 3);
        // 100 lines of 100 bytes: ten lines per file, so 10 files' worth for 4 places.
        for i in 0..100 {
            log.append(&format!("{i:099}\n")).expect("append");
        }
        for n in 1..=3 {
            let size = std::fs::metadata(log.rotated(n)).expect("rotated").len();
            assert!(size <= 1_000, ".{n} is {size} bytes");
        }
        assert!(!log.rotated(4).exists(), "only `keep` rotated files");
        // Oldest first: .3, .2, .1, then the current file: the last 40 lines, unbroken.
        let mut lines = Vec::new();
        for n in (1..=3).rev() {
            lines.extend(read(&log.rotated(n)));
        }
        lines.extend(read(&log.path));
        let numbers: Vec<u32> = lines
            .iter()
            .map(|l| l.parse().expect("a line number"))
            .collect();
        assert_eq!(numbers, (60..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_line_longer_than_the_limit_still_gets_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = file(dir.path(), 10, 2);
        log.append("a long first line\n").expect("append");
        log.append("and a second\n").expect("append");
        assert_eq!(read(&log.path), ["and a second"]);
        assert_eq!(read(&log.rotated(1)), ["a long first line"]);
    }

    #[test]
    fn retention_deletes_old_rotated_files_and_those_past_keep_but_never_the_current_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = file(dir.path(), 1_000, 3);
        for name in [
            "failover.log",
            "failover.log.1",
            "failover.log.2",
            "failover.log.7",
            "failover.log.old",
            "other.log.1",
        ] {
            std::fs::write(dir.path().join(name), "x\n").expect("write");
        }
        let old = SystemTime::now() - Duration::from_secs(100 * 24 * 3600);
        for name in ["failover.log", "failover.log.2"] {
            std::fs::File::options()
                .append(true)
                .open(dir.path().join(name))
                .and_then(|f| f.set_modified(old))
                .expect("age the file");
        }
        log.prune(SystemTime::now()).expect("prune");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "failover.log",
                "failover.log.1",
                "failover.log.old",
                "other.log.1"
            ],
            "the old .2 and the .7 past keep are gone; the current file and unrelated files stay"
        );
        let forever = LogFile {
            retention: None,
            ..log.clone()
        };
        std::fs::write(log.rotated(2), "x\n").expect("write");
        std::fs::File::options()
            .append(true)
            .open(log.rotated(2))
            .and_then(|f| f.set_modified(old))
            .expect("age the file");
        forever.prune(SystemTime::now()).expect("prune");
        assert!(log.rotated(2).exists(), "retention \"forever\" keeps it");
    }
}
