//! The remembered failover state: a small local file, written atomically (write beside, fsync,
//! rename, fsync the folder) at every stable transition, read once at start. Not in a
//! database: the database may be down at boot. A missing or unreadable file means "nothing
//! remembered" — said in the log, never fatal.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use duet_core::{FailoverState, TimestampMs};
use serde::{Deserialize, Serialize};

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The last stable state (Online or Offline).
    pub state: FailoverState,
    /// When it was entered.
    pub at: TimestampMs,
}

/// Reads the file; `None` when absent or unreadable (logged).
pub fn read(path: &Path) -> Option<Remembered> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the remembered state; starting as if none");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the remembered state is unreadable; starting as if none");
            None
        }
    }
}

/// Writes the file atomically and durably.
pub fn write(path: &Path, remembered: Remembered) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(
        serde_json::to_string(&remembered)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The state file's writer: a task of its own, so the tick loop never waits on a disk. The
/// latest state always wins (a watch channel); closing writes the last one.
pub(crate) struct StateFile {
    state: tokio::sync::watch::Sender<Option<Remembered>>,
    writer: tokio::task::JoinHandle<()>,
}

impl StateFile {
    pub(crate) fn start(path: PathBuf) -> Self {
        let (state, mut rx) = tokio::sync::watch::channel(None::<Remembered>);
        let writer = tokio::spawn(async move {
            // `changed` reports a value sent just before the sender was dropped before it
            // reports the end: the last state is always written.
            while rx.changed().await.is_ok() {
                let latest = *rx.borrow_and_update();
                if let Some(remembered) = latest {
                    remember(&path, remembered).await;
                }
            }
        });
        StateFile { state, writer }
    }

    /// Remembers `remembered` (written shortly, off the tick loop).
    pub(crate) fn persist(&self, remembered: Remembered) {
        self.state.send_replace(Some(remembered));
    }

    /// Writes the last state and ends the writer, waiting at most 5 s.
    pub(crate) async fn close(self) {
        let StateFile { state, writer } = self;
        drop(state);
        if tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .is_err()
        {
            tracing::error!("the disk did not take the remembered state within 5 s");
        }
    }
}

async fn remember(file: &Path, remembered: Remembered) {
    let path = file.to_path_buf();
    let written = tokio::task::spawn_blocking(move || write(&path, remembered)).await;
    if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
        tracing::error!(path = %file.display(), error = %e, "failed to remember the failover state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_state_reads_back_and_garbage_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.state");
        assert_eq!(read(&path), None);
        let r = Remembered {
            state: FailoverState::Online,
            at: 42,
        };
        write(&path, r).unwrap();
        assert_eq!(read(&path), Some(r));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, b"{\"state\": \"onl").unwrap();
        assert_eq!(read(&path), None);
        std::fs::create_dir_all(dir.path().join("d.state")).unwrap();
        assert_eq!(
            read(&dir.path().join("d.state")),
            None,
            "a folder in the way is not fatal"
        );
    }
}
