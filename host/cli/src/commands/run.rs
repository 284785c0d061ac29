//! `duet run`: runs this agent until SIGTERM or Ctrl-C, then hands over if Online.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

/// Run this agent.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Load this core.wasm instead of the embedded one (overrides core.path).
    #[arg(long)]
    core: Option<PathBuf>,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let mut config = duet_host::config::load(&self.config)?;
        if let Some(core) = self.core {
            config.kernel.core.path = Some(core);
        }
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            on_signal.cancel();
        });
        duet_host::run(config, duet_host::RunOptions::default(), shutdown).await?;
        Ok(0)
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
