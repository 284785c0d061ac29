//! `duet`: the native host of a duet failover pair. Thin: parse the command line, set up
//! logging, hand over to `duet_host`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "duet",
    version,
    about = "A failover pair manager: one agent Online, its buddy an Offline backup."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run this agent.
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Load this core.wasm instead of the embedded one (overrides core.path).
        #[arg(long)]
        core: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (0 valid, 1 invalid).
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Show the Status window of an agent (exit 0 all green, 1 a problem, 2 unreachable).
    Status {
        /// The agent's API address; by default `api.listen` of --config.
        #[arg(long)]
        api: Option<SocketAddr>,
        /// The configuration file whose agent to ask.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Redraw every SECONDS (default 2) until interrupted.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// Planned switch: the Online agent hands over to its buddy (or the backup takes over).
    Switch {
        /// The agent's API address; by default `api.listen` of --config.
        #[arg(long)]
        api: Option<SocketAddr>,
        /// The configuration file whose agent to ask.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A named token with the right "switch".
        #[arg(long, env = "DUET_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// The event log: alarms, notices and applications' events, newest first (exit 2 when the
    /// agent does not answer).
    Events {
        /// The agent's API address; by default `api.listen` of --config.
        #[arg(long)]
        api: Option<SocketAddr>,
        /// The configuration file whose agent to ask.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// How many events (at most 1000).
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: u64,
        /// Skip this many (paging).
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Only events of this origin (agent name).
        #[arg(long)]
        origin: Option<String>,
        /// Only this severity: info, warning, error, critical.
        #[arg(long)]
        severity: Option<String>,
        /// Only this code (e.g. switch, heartbeat_failing).
        #[arg(long)]
        code: Option<String>,
        /// Only events raised by this source (duet, or a token's name).
        #[arg(long)]
        source: Option<String>,
        /// Oldest first.
        #[arg(long)]
        oldest_first: bool,
        /// Print the page as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Named API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Probe plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Validate a plugin file and run one check (exit 0 Ok, 1 failing or invalid).
    Check {
        /// The plugin file (`*.wasm`).
        file: PathBuf,
        /// Take the plugin's settings and grants from this configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The plugin's name in the configuration (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a new random token; prints it once, and the configuration lines with its SHA-256.
    New {
        /// Who the token is for: the failover log names them.
        name: String,
        /// Rights, comma-separated: switch, force_online, mode, events.
        #[arg(long, default_value = "switch,force_online,mode")]
        rights: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
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
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("duet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<u8> {
    match cmd {
        Cmd::Run { config, core } => {
            let mut config = duet_host::config::load(&config)?;
            if let Some(core) = core {
                config.core.path = Some(core);
            }
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down");
                on_signal.cancel();
            });
            duet_host::run(config, duet_host::agent::RunOptions::default(), shutdown).await?;
            Ok(0)
        }
        Cmd::CheckConfig { file } => match duet_host::config::load(&file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                Ok(0)
            }
            Err(e) => {
                eprintln!("{e:#}");
                Ok(1)
            }
        },
        Cmd::Switch { api, config, token } => {
            let api = agent_api(api, config)?;
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .no_proxy()
                .build()?;
            let response = client
                .post(format!("http://{api}/api/v1/commands/switch"))
                .bearer_auth(token)
                .send()
                .await
                .with_context(|| format!("agent at {api} is unreachable"))?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            if status.is_success() {
                println!(
                    "switch queued at {api}; follow it with `duet status --api {api} --watch`"
                );
                Ok(0)
            } else {
                eprintln!("duet switch: {api} refused ({status}): {body}");
                Ok(1)
            }
        }
        Cmd::Token(TokenCmd::New { name, rights }) => {
            let (token, hash) = duet_host::auth::new_token()?;
            let rights: Vec<String> = rights
                .split(',')
                .map(|r| format!("\"{}\"", r.trim()))
                .collect();
            println!("token (shown once; give it to {name}): {token}\n");
            println!("# add to the [api] section's tokens of both agents' configuration:");
            println!(
                "[[api.token]]\nname = \"{name}\"\nsha256 = \"{hash}\"\nrights = [{}]",
                rights.join(", ")
            );
            Ok(0)
        }
        Cmd::Events {
            api,
            config,
            limit,
            offset,
            origin,
            severity,
            code,
            source,
            oldest_first,
            json,
        } => {
            let api = agent_api(api, config)?;
            let filter = duet_host::events::cli::Filter {
                limit,
                offset,
                origin,
                severity,
                code,
                source,
                ascending: oldest_first,
                json,
            };
            let code = duet_host::events::cli::run(api, filter).await;
            u8::try_from(code).context("exit code out of range")
        }
        Cmd::Plugin(PluginCmd::Check { file, config, name }) => {
            plugin_check(&file, config.as_deref(), name).await
        }
        Cmd::Status {
            api,
            config,
            json,
            watch,
        } => {
            let api = agent_api(api, config)?;
            let options = duet_host::status_cli::Options {
                json,
                watch: watch.map(|s| std::time::Duration::from_secs(s.max(1))),
                colour: duet_host::status_cli::Options::colour_default(),
            };
            let code = duet_host::status_cli::run(api, options).await;
            u8::try_from(code).context("exit code out of range")
        }
    }
}

/// `duet plugin check`: validates, shows the manifest and the effective grants, runs one check.
async fn plugin_check(
    file: &std::path::Path,
    config: Option<&std::path::Path>,
    name: Option<String>,
) -> anyhow::Result<u8> {
    let name = match name {
        Some(n) => n,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the plugin file has no name")?
            .to_string(),
    };
    let settings = match config {
        Some(path) => duet_host::config::load(path)?.plugins.settings(&name),
        None => Default::default(),
    };
    let report = match duet_host::plugins::check_file(file, &name, &settings).await? {
        Ok(r) => r,
        Err(why) => {
            eprintln!("{}: invalid: {why}", file.display());
            return Ok(1);
        }
    };
    let d = &report.description;
    println!("{}: valid duet:probe@0.1.0 plugin", file.display());
    println!("  name: {name} (kind {} {})", d.name, d.version);
    println!("  sha256: {}", report.sha256);
    println!("  default interval: {} ms", d.default_interval_ms);
    println!("  declares: {:?}", d.capabilities);
    let g = &report.grants;
    println!(
        "  granted: connect {:?}, read_dirs {:?}, env {:?}",
        g.connect, g.read_dirs, g.env
    );
    for unused in &g.unused {
        println!("  not given: {unused}");
    }
    match report.result {
        Ok((Ok(outcome), denied)) => {
            for d in &denied {
                println!("  sandbox refused: {d}");
            }
            let ok = matches!(
                outcome.status,
                duet_host::bindings::probe::duet::probe::types::Status::Ok
            );
            println!(
                "  check: {} — {}{}",
                if ok { "Ok" } else { "Failing" },
                outcome.value,
                outcome
                    .reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            for m in outcome.metrics {
                println!("  metric {} = {}", m.name, m.value);
            }
            Ok(if ok { 0 } else { 1 })
        }
        Ok((Err(why), denied)) => {
            for d in &denied {
                println!("  sandbox refused: {d}");
            }
            println!("  check: probe fault — {why}");
            Ok(1)
        }
        Err(fault) => {
            println!("  check: plugin fault — {fault}");
            Ok(1)
        }
    }
}

/// The agent to talk to: `--api`, else `api.listen` of `--config`.
fn agent_api(api: Option<SocketAddr>, config: Option<PathBuf>) -> anyhow::Result<SocketAddr> {
    match (api, config) {
        (Some(api), _) => Ok(api),
        (None, Some(path)) => Ok(duet_host::config::load(&path)?.api.listen),
        (None, None) => anyhow::bail!("say which agent: --api ADDRESS or --config FILE"),
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
