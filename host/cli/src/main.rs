//! `duet`: the native host of a duet failover pair. Thin: parse the command line, set up
//! logging, run the command ([`commands`], one file each).

#![warn(clippy::too_many_lines)]

mod commands;
mod log_writer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "duet",
    version,
    about = "A failover pair manager: one agent Online, its buddy an Offline backup."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Run(commands::run::Args),
    CheckConfig(commands::check_config::Args),
    Status(commands::status::Args),
    Switch(commands::switch::Args),
    Reload(commands::reload::Args),
    ForceOnline(commands::switch::ForceOnlineArgs),
    Events(commands::events::Args),
    #[command(subcommand)]
    Token(commands::token::Args),
    #[command(subcommand)]
    Plugin(commands::plugin::Args),
    ReleaseVip(commands::release_vip::Args),
    Completions(commands::completions::Args),
    #[command(hide = true)]
    Man(commands::completions::ManArgs),
    /// The agent's plugins process (started by `duet run`, not by hand).
    #[command(hide = true, name = duet_plugins::process::SUBCOMMAND)]
    PluginHost,
}

impl Cmd {
    async fn execute(self) -> anyhow::Result<u8> {
        match self {
            Cmd::Run(args) => args.execute().await,
            Cmd::CheckConfig(args) => args.execute().await,
            Cmd::Status(args) => args.execute().await,
            Cmd::Switch(args) => args.execute().await,
            Cmd::Reload(args) => args.execute().await,
            Cmd::ForceOnline(args) => args.execute().await,
            Cmd::Events(args) => args.execute().await,
            Cmd::Token(args) => args.execute().await,
            Cmd::Plugin(args) => args.execute().await,
            Cmd::ReleaseVip(args) => args.execute().await,
            Cmd::Completions(args) => args.execute().await,
            Cmd::Man(args) => args.execute().await,
            Cmd::PluginHost => duet_plugins::process::serve().await.map(|()| 0),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer({
            let queue = log_writer::start();
            move || queue.clone()
        })
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("duet: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli.command.execute());
    // A blocking task that never returns (a plugin stuck in I/O) must not keep the process
    // from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    log_writer::flush();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            commands::print_error(Some("duet"), &e);
            ExitCode::FAILURE
        }
    }
}
