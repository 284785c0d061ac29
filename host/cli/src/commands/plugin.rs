//! `duet plugin check`: a plugin file validated and run once, as the agent would.

use std::path::PathBuf;

use anyhow::Context as _;
use duet_base::text::printable;

/// Probe plugins.
#[derive(clap::Subcommand)]
pub enum Args {
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

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let Args::Check { file, config, name } = self;
        check(&file, config.as_deref(), name).await
    }
}

/// `duet plugin check`: validates, shows the manifest and the effective grants, runs one check.
async fn check(
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
    let report = match duet_plugins::check_file(file, &name, &settings).await? {
        Ok(r) => r,
        Err(why) => {
            eprintln!("{}: invalid: {}", file.display(), printable(&why));
            return Ok(1);
        }
    };
    let d = &report.description;
    println!("{}: valid duet:probe@0.1.0 plugin", file.display());
    println!(
        "  name: {} (kind {} {})",
        printable(&name),
        printable(&d.name),
        printable(&d.version)
    );
    println!("  sha256: {}", report.sha256);
    println!("  default interval: {} ms", d.default_interval_ms);
    println!(
        "  declares: {}",
        printable(&format!("{:?}", d.capabilities))
    );
    let g = &report.grants;
    println!(
        "  granted: connect {:?}, read_dirs {:?}, env {:?}",
        g.connect, g.read_dirs, g.env
    );
    for unused in &g.unused {
        println!("  not given: {}", printable(unused));
    }
    match report.result {
        Ok((Ok(outcome), denied)) => {
            for d in &denied {
                println!("  sandbox refused: {}", printable(d));
            }
            let ok = matches!(outcome.status, duet_plugins::CheckStatus::Ok);
            println!(
                "  check: {} — {}{}",
                if ok { "Ok" } else { "Failing" },
                printable(&outcome.value),
                outcome
                    .reason
                    .map(|r| format!(" ({})", printable(&r)))
                    .unwrap_or_default()
            );
            for m in outcome.metrics {
                println!("  metric {} = {}", printable(&m.name), m.value);
            }
            Ok(if ok { 0 } else { 1 })
        }
        Ok((Err(why), denied)) => {
            for d in &denied {
                println!("  sandbox refused: {}", printable(d));
            }
            println!("  check: probe fault — {}", printable(&why));
            Ok(1)
        }
        Err(fault) => {
            println!("  check: plugin fault — {}", printable(&fault.to_string()));
            Ok(1)
        }
    }
}
