//! `duet run`: runs this agent until SIGTERM or Ctrl-C, then hands over if Online; SIGHUP
//! reloads the configuration file.

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
        // Caught from the start: SIGHUP's default action would end the agent.
        let reloads = on_sighup()?;
        let (mut config, text) = duet_host::config::read(&self.config)?;
        let core = self.core;
        let adjust = move |config: &mut duet_host::Config| {
            if let Some(core) = &core {
                config.kernel.core.path = Some(core.clone());
            }
        };
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            on_signal.cancel();
        });
        let options = duet_host::RunOptions {
            reload: Some(duet_host::reload::ReloadFrom {
                path: self.config,
                text,
                adjust: Box::new(adjust),
                requests: reloads,
            }),
            ..duet_host::RunOptions::default()
        };
        duet_host::run(config, options, shutdown).await?;
        Ok(0)
    }
}

/// A reload request on each SIGHUP (one waits while a reload runs; more in a burst are
/// folded into it).
fn on_sighup() -> anyhow::Result<tokio::sync::mpsc::Receiver<String>> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration file");
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                tx.try_send("SIGHUP".to_string())
            {
                return;
            }
        }
    });
    Ok(rx)
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
