//! Hot replacement: the core file is loaded at start and whenever it changes; a broken file
//! keeps the core that answers now.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{CoreOrigin, CoreRuntime};

/// What happened to the core file.
#[derive(Debug, Clone)]
pub enum CoreEvent {
    /// A new core was validated and now answers.
    Installed(CoreOrigin),
    /// A changed file was refused; the previous core keeps answering.
    Rejected(CoreOrigin, String),
}

/// Loads the core file at start and whenever it changes; a broken file keeps the old core.
pub async fn watch_core_file(
    runtime: Arc<CoreRuntime>,
    path: PathBuf,
    every: Duration,
    events: Option<mpsc::UnboundedSender<CoreEvent>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut seen: Option<(u64, Option<SystemTime>)> = None;
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        let stamp = match tokio::fs::metadata(&path).await {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(e) => {
                if seen.is_some() {
                    tracing::warn!(path = %path.display(), error = %e, "core file is gone; keeping {}", runtime.active());
                    seen = None;
                }
                continue;
            }
        };
        if seen == Some(stamp) {
            continue;
        }
        seen = Some(stamp);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "failed to read the core file; keeping {}", runtime.active());
                continue;
            }
        };
        let rt = runtime.clone();
        let origin = CoreOrigin::File(path.clone());
        let loaded = tokio::task::spawn_blocking(move || rt.load(&bytes, origin))
            .await
            .context("core compile task failed")?;
        let event = match loaded {
            Ok(core) => {
                runtime.install(core);
                CoreEvent::Installed(CoreOrigin::File(path.clone()))
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "core file rejected; keeping {}", runtime.active());
                CoreEvent::Rejected(CoreOrigin::File(path.clone()), e.to_string())
            }
        };
        if let Some(tx) = &events {
            let _ = tx.send(event);
        }
    }
}
