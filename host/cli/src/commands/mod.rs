//! One file per command, each an `Args` (clap) with an `execute` that returns the exit code.

pub mod check_config;
pub mod completions;
pub mod events;
pub mod plugin;
pub mod release_vip;
pub mod reload;
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
    /// Talk HTTPS, trusting this certificate (PEM: the API's own, or its CA); with --config
    /// whose [api.tls] is set, its certificate by default.
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
}

impl Target {
    /// The agent to talk to: `--api`, else `api.listen` of `--config` (HTTPS when its
    /// `[api.tls]` is set).
    pub fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let (addr, ca) = match (self.api, &self.config) {
            (Some(api), _) => (api, None),
            (None, Some(path)) => {
                let api = duet_host::config::load(path)?.api;
                (api.listen, api.tls.map(|t| t.cert))
            }
            (None, None) => anyhow::bail!("say which agent: --api ADDRESS or --config FILE"),
        };
        Ok(Endpoint {
            addr,
            ca: self.tls_ca.clone().or(ca),
        })
    }
}

/// An agent's API: its address, and for HTTPS the certificate to trust.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub ca: Option<PathBuf>,
}

impl Endpoint {
    /// The URL of `path` (starting with '/').
    pub fn url(&self, path: &str) -> String {
        format!("{self}{path}")
    }

    /// An HTTP client for this agent: HTTPS trusts only the given certificate.
    pub fn client(&self, timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(timeout).no_proxy();
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("failed to read the certificate {}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
            builder = builder.https_only(true);
        }
        builder.build().context("failed to build an HTTP client")
    }
}

/// An error with its causes ("error sending request: ...: invalid peer certificate: ...").
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.addr)
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
