//! `duet release-vip`: removes the configured virtual IPs from their NICs, outside a running
//! agent. The systemd unit runs it as `ExecStopPost`, so however the agent ended (stopped,
//! killed, restarted by the watchdog) its VIPs do not wait for their lease to lapse.

use std::path::PathBuf;

/// Remove this agent's virtual IPs from their NICs (after the agent stopped).
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long, short)]
    config: PathBuf,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let config = duet_host::config::load(&self.config)?;
        let mut failed = false;
        for (vip, result) in duet_host::release_vips(&config.vips) {
            match result {
                Ok(true) => println!("{vip}: removed"),
                Ok(false) => println!("{vip}: not held"),
                Err(e) => {
                    failed = true;
                    eprintln!("{vip}: {}", duet_base::text::printable(&e));
                }
            }
        }
        Ok(u8::from(failed))
    }
}
