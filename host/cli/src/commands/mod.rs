//! One file per command, each an `Args` (clap) with an `execute` that returns the exit code.

pub mod check_config;
pub mod events;
pub mod plugin;
pub mod run;
pub mod status;
pub mod switch;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

/// Which agent a client command talks to.
#[derive(clap::Args)]
pub struct Target {
    /// The agent's API address; by default `api.listen` of --config.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The configuration file whose agent to ask.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl Target {
    /// The agent to talk to: `--api`, else `api.listen` of `--config`.
    pub fn address(&self) -> anyhow::Result<SocketAddr> {
        match (self.api, &self.config) {
            (Some(api), _) => Ok(api),
            (None, Some(path)) => Ok(duet_host::config::load(path)?.api.listen),
            (None, None) => anyhow::bail!("say which agent: --api ADDRESS or --config FILE"),
        }
    }
}

/// Prints an error to standard error, each line escaped: messages repeat what came from
/// outside (a file, an agent's answer).
pub fn print_error(prefix: Option<&str>, e: &anyhow::Error) {
    for line in format!("{e:#}").lines() {
        match prefix {
            Some(p) => eprintln!("{p}: {}", duet_base::text::printable(line)),
            None => eprintln!("{}", duet_base::text::printable(line)),
        }
    }
}

/// A command's exit code as the process returns it.
fn exit(code: i32) -> anyhow::Result<u8> {
    u8::try_from(code).context("exit code out of range")
}
