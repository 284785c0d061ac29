//! The NATS communication row: request/reply to the buddy through a real nats-server, answered
//! by the buddy's own responder, and the cluster-endpoints file compared between the agents.
//!
//! Each agent subscribes to `<subject>.<agent>.<buddy>` and answers every request with its name
//! and the SHA-256 of its cluster-endpoints file; each agent requests `<subject>.<buddy>.<agent>`
//! every `nats.interval`. The row says OK, or the precise reason: the server refuses or does not
//! answer the connection, "no responders" (the buddy's duet is not subscribed: stopped, or not
//! on this server), no answer in time, the endpoints differ, or an endpoints file is unusable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duet_core::Check;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use duet_base::config::Errors;
use duet_base::lock;
use duet_base::watchdog::Watchdog;

/// How long one connection attempt may take before async-nats gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[nats]` section, validated.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The nats-server both agents use (`[nats_connection]`, or the deprecated `nats.url`).
    pub connection: duet_nats::Connection,
    /// The subject prefix of the pair's request/reply.
    pub subject: String,
    /// The cluster-endpoints file (JSON); none: only request/reply is checked.
    pub endpoints_file: Option<PathBuf>,
    pub interval: Duration,
    /// How long a request (and a connection attempt) may take.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNats {
    /// Deprecated: `[nats_connection] servers = [url]` says it for the probe and the witness.
    url: Option<String>,
    subject: Option<String>,
    endpoints_file: Option<PathBuf>,
    interval: Option<String>,
    timeout: Option<String>,
}

/// Validates `[nats]`, pushing every mistake onto `errors`. `connection` is the validated
/// `[nats_connection]`; without it the deprecated `nats.url` names the server (with it,
/// `nats.url` is an error: one place says where NATS is).
pub fn validate(
    raw: RawNats,
    connection: Option<duet_nats::Connection>,
    base: &Path,
    errors: &mut Errors,
) -> NatsConfig {
    let range = (Duration::from_millis(10), Duration::from_secs(600));
    let mut duration = |key: &str, value: Option<String>, default: Duration| {
        errors.duration(key, value.as_deref(), default, range)
    };
    let interval = duration("nats.interval", raw.interval, Duration::from_secs(2));
    let timeout = duration("nats.timeout", raw.timeout, Duration::from_secs(1));
    let connection = match (connection, raw.url) {
        (Some(c), None) => c,
        (None, Some(url)) => {
            tracing::warn!(
                "nats.url is deprecated: say [nats_connection] servers = [\"{url}\"] (shared with the witness)"
            );
            duet_nats::Connection::from_url(url, "nats.url", errors)
        }
        (Some(c), Some(_)) => {
            errors.error(
                "nats.url",
                "is deprecated and [nats_connection] is set: remove nats.url (the probe uses [nats_connection])",
            );
            c
        }
        (None, None) => {
            errors.error(
                "nats",
                "the NATS probe needs a server: set [nats_connection] servers (or the deprecated nats.url)",
            );
            duet_nats::Connection::from_url("nats://127.0.0.1:4222".into(), "nats.url", errors)
        }
    };
    let mut err = |path: &str, message: String| errors.error(path, message);
    let subject = raw.subject.unwrap_or_else(|| "duet".into());
    if subject.is_empty()
        || !subject.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    {
        err(
            "nats.subject",
            format!(
                "\"{subject}\" is not a subject prefix: dot-separated tokens of letters, digits, '-' or '_'"
            ),
        );
    }
    if timeout > interval {
        err(
            "nats.timeout",
            "is longer than nats.interval: requests would overlap".into(),
        );
    }
    NatsConfig {
        connection,
        subject,
        endpoints_file: raw
            .endpoints_file
            .map(|p| if p.is_absolute() { p } else { base.join(p) }),
        interval,
        timeout,
    }
}

/// The cluster-endpoints file: the endpoints of the cluster the pair belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    pub endpoints: Vec<Endpoint>,
}

/// One agent of the cluster: its name, API and NATS addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub agent: String,
    pub api: String,
    pub nats: String,
}

/// Reads the endpoints file and returns the SHA-256 of its content (entries sorted, so order
/// and formatting are not differences), or why it cannot be used, naming the key and the file.
pub fn endpoints_hash(path: &Path) -> Result<String, String> {
    let at = |why: String| format!("nats.endpoints_file {}: {why}", path.display());
    if path.is_dir() {
        return Err(at("is a directory, not a cluster-endpoints file".into()));
    }
    let text = std::fs::read(path).map_err(|e| at(format!("cannot read it: {e}")))?;
    let mut parsed: Endpoints = serde_json::from_slice(&text).map_err(|e| {
        at(format!(
            "not a cluster-endpoints file ({e}); expected {{\"endpoints\": [{{\"agent\", \"api\", \"nats\"}}]}}"
        ))
    })?;
    parsed.endpoints.sort();
    let canonical = serde_json::to_vec(&parsed).map_err(|e| at(e.to_string()))?;
    use sha2::Digest as _;
    Ok(sha2::Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A responder's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Pong {
    agent: String,
    /// The SHA-256 of its endpoints file, or why it has none usable.
    endpoints: Option<Result<String, String>>,
}

/// The probe's latest result, read by the tick loop.
#[derive(Default)]
pub struct NatsState {
    check: Mutex<Option<Check>>,
}

impl NatsState {
    /// The row's check (`NotConfigured` when `[nats]` is absent, failing until a first answer).
    pub fn check(&self) -> Check {
        lock(&self.check)
            .clone()
            .unwrap_or_else(|| Check::Failing("no attempt yet".into()))
    }

    fn set(&self, check: Check) -> bool {
        let mut current = lock(&self.check);
        let changed = current.as_ref() != Some(&check);
        *current = Some(check);
        changed
    }
}

/// The first 12 hex digits of a hash (enough to tell two apart in a row).
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn token(name: &str) -> String {
    name.replace('.', "_")
}

fn local_endpoints(config: &NatsConfig) -> Option<Result<String, String>> {
    config.endpoints_file.as_deref().map(endpoints_hash)
}

/// Runs the responder and the probe until `shutdown`. Attempts run through the watchdog
/// (component `nats`) with `deadline`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: NatsConfig,
    agent: String,
    buddy: String,
    state: Arc<NatsState>,
    watchdog: Arc<Watchdog>,
    deadline: Duration,
    wake: Arc<dyn Fn() + Send + Sync>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listen = format!("{}.{}.{}", config.subject, token(&agent), token(&buddy));
    let ask = format!("{}.{}.{}", config.subject, token(&buddy), token(&agent));
    let mut client: Option<(async_nats::Client, tokio::task::JoinHandle<()>)> = None;
    let mut interval = tokio::time::interval(config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let attempt = watchdog.call(
            "nats",
            deadline,
            attempt(&config, &agent, &buddy, &listen, &ask, &mut client),
        );
        let check = tokio::select! {
            () = shutdown.cancelled() => break,
            check = attempt => check,
        };
        if state.set(check) {
            wake();
        }
    }
    if let Some((_, responder)) = client {
        responder.abort();
    }
    Ok(())
}

/// One probe: connect (and subscribe the responder) if needed, then ask the buddy.
async fn attempt(
    config: &NatsConfig,
    agent: &str,
    buddy: &str,
    listen: &str,
    ask: &str,
    client: &mut Option<(async_nats::Client, tokio::task::JoinHandle<()>)>,
) -> Check {
    let ours = match local_endpoints(config) {
        None => None,
        Some(Ok(hash)) => Some(hash),
        Some(Err(why)) => {
            // The responder still answers (the buddy shows why too); this row names our file.
            if client.is_none() {
                let _ = connect(config, agent, listen, client).await;
            }
            return Check::Failing(why);
        }
    };
    if client.is_none()
        && let Err(why) = connect(config, agent, listen, client).await
    {
        return Check::Failing(why);
    }
    let Some((nc, _)) = client.as_ref() else {
        return Check::Failing("not connected".into());
    };
    let reply = nc.request(ask.to_string(), Vec::new().into()).await;
    let message = match reply {
        Ok(m) => m,
        Err(e) => {
            use async_nats::RequestErrorKind as K;
            let state = nc.connection_state();
            let why = match e.kind() {
                K::NoResponders => format!(
                    "no responders: {buddy}'s duet does not answer on {ask} (stopped, or on another NATS server)"
                ),
                _ if state != async_nats::connection::State::Connected => {
                    format!(
                        "lost the connection to the NATS server {}",
                        config.connection.describe()
                    )
                }
                K::TimedOut => format!(
                    "{buddy}'s duet did not answer on {ask} within {}",
                    humantime::format_duration(config.timeout)
                ),
                _ => format!("request on {ask} failed: {e}"),
            };
            if state != async_nats::connection::State::Connected {
                // Start again from a fresh connection: its error says why precisely.
                if let Some((_, responder)) = client.take() {
                    responder.abort();
                }
            }
            return Check::Failing(why);
        }
    };
    let pong: Pong = match serde_json::from_slice(&message.payload) {
        Ok(p) => p,
        Err(e) => {
            return Check::Failing(format!(
                "unreadable answer on {ask} ({e}): is it {buddy}'s duet, of the same version?"
            ));
        }
    };
    if pong.agent != buddy {
        return Check::Failing(format!(
            "{} answered on {ask}, not the buddy {buddy}",
            pong.agent
        ));
    }
    match (ours, pong.endpoints) {
        (None, None) => Check::Ok,
        (Some(_), None) => Check::Failing(format!(
            "cluster endpoints differ: {buddy} has no nats.endpoints_file"
        )),
        (None, Some(_)) => Check::Failing(format!(
            "cluster endpoints differ: {buddy} has a nats.endpoints_file, this agent none"
        )),
        (Some(_), Some(Err(why))) => Check::Failing(format!("on {buddy}: {why}")),
        (Some(a), Some(Ok(b))) if a == b => Check::Ok,
        (Some(a), Some(Ok(b))) => Check::Failing(format!(
            "cluster endpoints differ from {buddy}'s (sha256 {} here, {} on {buddy})",
            short(&a),
            short(&b)
        )),
    }
}

/// Connects and starts the responder.
async fn connect(
    config: &NatsConfig,
    agent: &str,
    listen: &str,
    client: &mut Option<(async_nats::Client, tokio::task::JoinHandle<()>)>,
) -> Result<(), String> {
    let nc = config
        .connection
        .options()?
        .name(format!("duet {agent}"))
        // async-nats's own bound on a connection attempt; a longer hang than
        // `watchdog.deadline` is a runtime error meanwhile (RTE Count).
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(config.timeout))
        .ignore_discovered_servers()
        .connect(config.connection.addresses())
        .await
        .map_err(|e| {
            let why = std::error::Error::source(&e)
                .map_or_else(|| e.kind().to_string(), ToString::to_string);
            let why = match e.kind() {
                async_nats::ConnectErrorKind::TimedOut => "timed out".to_string(),
                _ => why
                    .split(" (os error")
                    .next()
                    .unwrap_or_default()
                    .to_lowercase(),
            };
            format!(
                "cannot connect to the NATS server {}: {why}",
                config.connection.describe()
            )
        })?;
    let mut sub = nc
        .subscribe(listen.to_string())
        .await
        .map_err(|e| format!("cannot subscribe to {listen}: {e}"))?;
    // Make sure the server has the subscription before the buddy's next request.
    let _ = nc.flush().await;
    let responder_nc = nc.clone();
    let name = agent.to_string();
    let file = config.endpoints_file.clone();
    let responder = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            let pong = Pong {
                agent: name.clone(),
                endpoints: file.as_deref().map(endpoints_hash),
            };
            if let Ok(payload) = serde_json::to_vec(&pong) {
                let _ = responder_nc.publish(reply, payload.into()).await;
            }
        }
    });
    *client = Some((nc, responder));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hash_ignores_order_and_formatting_and_names_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            r#"{"endpoints": [{"agent": "a", "api": "10.0.0.1:7101", "nats": "nats://10.0.0.1:4222"},
                              {"agent": "b", "api": "10.0.0.2:7101", "nats": "nats://10.0.0.2:4222"}]}"#,
        )
        .expect("write");
        std::fs::write(
            &b,
            r#"{"endpoints":[{"agent":"b","api":"10.0.0.2:7101","nats":"nats://10.0.0.2:4222"},{"agent":"a","api":"10.0.0.1:7101","nats":"nats://10.0.0.1:4222"}]}"#,
        )
        .expect("write");
        assert_eq!(endpoints_hash(&a), endpoints_hash(&b));
        std::fs::write(&b, "\u{0}garbage").expect("write");
        let why = endpoints_hash(&b).expect_err("garbage");
        assert!(
            why.starts_with("nats.endpoints_file ") && why.contains("not a cluster-endpoints file"),
            "{why}"
        );
        let why = endpoints_hash(dir.path()).expect_err("a directory");
        assert!(why.contains("is a directory"), "{why}");
        let why = endpoints_hash(&dir.path().join("missing.json")).expect_err("missing");
        assert!(why.contains("cannot read it"), "{why}");
    }
}
