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
