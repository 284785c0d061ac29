//! The durable local spool: while the local database is down, new events are appended to a
//! file in the spool folder (JSON lines, fsync'd before the caller is answered) and written
//! into the store once it is back. Events get their sequence number only when they enter the
//! store, so an agent that starts with its database down never guesses one.
//!
//! A replay writes each chunk of lines together with "file F is done up to line N" in one
//! transaction (`duet_spool`), so a replay cut anywhere (kill -9) is neither lost nor repeated.
//! A torn last line (killed mid-write, never acknowledged) is skipped.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use super::NewEvent;

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    n: u64,
    e: NewEvent,
}

/// The spool folder and the file being appended to.
pub struct Spool {
    dir: PathBuf,
    current: Option<(std::fs::File, u64)>,
}

impl Spool {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            current: None,
        })
    }

    /// The spool files, oldest first.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.files().is_empty()
    }

    /// Appends events and syncs them to disk.
    pub fn append(&mut self, events: &[NewEvent]) -> std::io::Result<()> {
        if self.current.is_none() {
            let millis = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let mut name;
            let mut k = 0u32;
            loop {
                name = self.dir.join(format!("{millis:020}-{k:04}.jsonl"));
                if !name.exists() {
                    break;
                }
                k += 1;
            }
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&name)?;
            // The new name must survive a crash too.
            if let Ok(dir) = std::fs::File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            self.current = Some((file, 0));
        }
        let Some((file, n)) = self.current.as_mut() else {
            unreachable!("opened above")
        };
        let mut buf = Vec::with_capacity(events.len() * 160);
        let mut next = *n;
        for e in events {
            next += 1;
            serde_json::to_writer(
                &mut buf,
                &Line {
                    n: next,
                    e: e.clone(),
                },
            )
            .map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_data()?;
        *n = next;
        Ok(())
    }

    /// Stops appending to the current file (the next append starts a new one), so it can be
    /// replayed.
    pub fn seal(&mut self) {
        self.current = None;
    }

    /// A spool file's events with their line numbers; a torn last line is skipped.
    pub fn read(path: &Path) -> std::io::Result<Vec<(u64, NewEvent)>> {
        let file = std::fs::File::open(path)?;
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            match serde_json::from_str::<Line>(&line) {
                Ok(l) => out.push((l.n, l.e)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "spool: skipping a torn line");
                }
            }
        }
        Ok(out)
    }

    /// The name a file's progress is recorded under.
    pub fn key(path: &Path) -> String {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_base::Severity;

    fn event(i: u32) -> NewEvent {
        NewEvent {
            at: 1,
            severity: Severity::Info,
            source: "test".into(),
            code: "c".into(),
            message: format!("m{i}"),
        }
    }

    #[test]
    fn appended_events_read_back_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path()).unwrap();
        assert!(spool.is_empty());
        spool.append(&[event(1), event(2)]).unwrap();
        spool.append(&[event(3)]).unwrap();
        spool.seal();
        let files = spool.files();
        assert_eq!(files.len(), 1);
        // A kill in the middle of a write leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&files[0])
            .unwrap()
            .write_all(b"{\"n\":4,\"e\":{\"at\"")
            .unwrap();
        let read = Spool::read(&files[0]).unwrap();
        assert_eq!(read.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(read[2].1.message, "m3");
        spool.append(&[event(5)]).unwrap();
        assert_eq!(spool.files().len(), 2, "a sealed file is never appended to");
    }
}
