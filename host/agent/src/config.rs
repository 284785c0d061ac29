//! The configuration file: TOML, parsed into raw types (serde, unknown keys refused), then
//! validated into [`Config`]. Every error names the key path (`heartbeat[1].interval: ...`).
//! `docs/duet.example.toml` documents each key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_core::{FailoverConfig, HeartbeatKind, Mode, RulesConfig};
use serde::Deserialize;

/// One configuration mistake and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Key path, e.g. `heartbeat[1].interval`.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// All the mistakes found in one file (validation does not stop at the first).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub agent: AgentConfig,
    pub buddy: BuddyConfig,
    pub api: ApiConfig,
    pub peer: PeerConfig,
    /// The sync connection to the buddy: none when not configured.
    pub sync: Option<SyncConfig>,
    pub core: CoreConfig,
    pub status: StatusConfig,
    pub failover: FailoverTimes,
    pub heartbeats: Vec<HeartbeatConfig>,
    pub state: StateConfig,
    pub log: LogConfig,
    pub plugins: crate::plugins::config::PluginsConfig,
    pub web: WebConfig,
    /// The NATS communication probe: none when `[nats]` is absent.
    pub nats: Option<crate::probes::nats::NatsConfig>,
    /// The runtime-error watchdog.
    pub watchdog: crate::probes::WatchdogConfig,
    /// The virtual IPs, one per NIC (`[[vip]]`); none: no virtual IP mode.
    pub vips: Vec<crate::vip::config::VipConfig>,
    /// Commands run on state changes (`[hooks]`).
    pub hooks: crate::vip::config::HooksConfig,
    /// The event log's store and its forwarding (issue 8).
    pub database: crate::events::config::DatabaseConfig,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub priority: u32,
    pub mode: Mode,
}

#[derive(Debug, Clone)]
pub struct BuddyConfig {
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Named tokens for state-changing calls; none configured: those calls are refused.
    pub tokens: Vec<TokenConfig>,
}

/// A named API token: who, the SHA-256 of the token (never the token), and what it may do.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub sha256: [u8; 32],
    pub rights: Vec<Right>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// `POST /api/v1/commands/switch`.
    Switch,
    /// `POST /api/v1/commands/force-online`.
    ForceOnline,
    /// `POST /api/v1/commands/mode`.
    Mode,
    /// `POST /api/v1/events`: post events into the event log.
    Events,
}

/// The peer port: the buddy's agent heartbeats and sync connection arrive here.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub listen: SocketAddr,
    /// The secret both agents share; frames are authenticated with it (HMAC-SHA256).
    pub pair_key: Vec<u8>,
}

/// The sync connection: a dedicated path to the buddy's peer port (ideally a direct link).
/// While it works, the buddy is alive even if every agent heartbeat fails.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_failures: u32,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A core.wasm to load instead of the embedded one; watched for changes.
    pub path: Option<PathBuf>,
    pub deadline: Duration,
    pub memory_limit_bytes: usize,
    pub tick: Duration,
    pub watch_interval: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct StatusConfig {
    pub buddy_timeout: Duration,
    pub startup_grace: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct FailoverTimes {
    pub prepare_timeout: Duration,
    pub going_online_timeout: Duration,
    pub going_offline_timeout: Duration,
    pub min_switch_interval: Duration,
    pub startup_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub id: String,
    pub kind: HeartbeatKind,
    /// For `agent`: the buddy's duet address (`host:port`); for `ping`/`inverted`: an IP.
    pub target: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_failures: u32,
    pub source: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    /// The remembered failover state (default `<agent.name>.state` beside the configuration).
    pub file: PathBuf,
}

/// The web UI's settings.
#[derive(Debug, Clone, Copy)]
pub struct WebConfig {
    /// How often the UI refreshes on its own; changes are also pushed at once.
    pub refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The failover log file (one line per transition and request); none: log only to stderr.
    pub failover_log: Option<PathBuf>,
    /// A line that would take the file past this size rotates it first.
    pub failover_log_max_bytes: u64,
    /// Rotated files kept (`<file>.1` is the newest).
    pub failover_log_keep: u32,
    /// Rotated files older than this are deleted; `None`: "forever".
    pub failover_log_retention: Option<Duration>,
}

impl Config {
    /// The status rules' settings.
    pub fn rules(&self) -> RulesConfig {
        RulesConfig {
            startup_grace_ms: millis(self.status.startup_grace),
            buddy_timeout_ms: millis(self.status.buddy_timeout),
            vip_enabled: !self.vips.is_empty(),
        }
    }

    /// A fingerprint of the settings both agents of a pair must share (the failover timings,
    /// the mode, the agent paths, the build's version: [`crate::probes::configuration`]),
    /// carried over the peer link so the two can be compared cheaply; the settings themselves
    /// travel only while the fingerprints differ.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let shared: String = crate::probes::configuration::shared_settings(self)
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        sha2::Sha256::digest(shared.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The NICs that carry a virtual IP (for the NIC watcher: such a NIC going down on the
    /// Online agent is a switch trigger).
    pub fn vip_nics(&self) -> Vec<&str> {
        self.vips.iter().map(|v| v.nic.as_str()).collect()
    }

    /// The state machine's settings.
    pub fn failover(&self) -> FailoverConfig {
        FailoverConfig {
            priority: self.agent.priority,
            vip_enabled: !self.vips.is_empty(),
            prepare_timeout_ms: millis(self.failover.prepare_timeout),
            going_online_timeout_ms: millis(self.failover.going_online_timeout),
            going_offline_timeout_ms: millis(self.failover.going_offline_timeout),
            min_switch_interval_ms: millis(self.failover.min_switch_interval),
            startup_wait_ms: millis(self.failover.startup_wait),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads and validates a configuration file; relative paths are taken from its folder.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
        .map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))
}

/// Parses and validates configuration text; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let path = e.path().to_string();
            // At the top level (syntax errors, missing sections) the full text carries the line.
            let (path, message) = if path == "." {
                (
                    "(top level)".to_string(),
                    e.inner().to_string().trim().replace('\n', " "),
                )
            } else {
                (path, e.inner().message().to_string())
            };
            ConfigErrors(vec![ConfigError { path, message }])
        })?;
    validate(raw, base)
}

// --- raw, as written -----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    agent: RawAgent,
    buddy: RawBuddy,
    api: RawApi,
    peer: RawPeer,
    sync: Option<RawSync>,
    #[serde(default)]
    core: RawCore,
    #[serde(default)]
    status: RawStatus,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default, rename = "heartbeat")]
    heartbeats: Vec<RawHeartbeat>,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    plugins: crate::plugins::config::RawPlugins,
    #[serde(default)]
    web: RawWeb,
    nats: Option<crate::probes::nats::RawNats>,
    #[serde(default)]
    watchdog: crate::probes::RawWatchdog,
    #[serde(default, rename = "vip")]
    vips: Vec<crate::vip::config::RawVip>,
    #[serde(default)]
    hooks: crate::vip::config::RawHooks,
    #[serde(default)]
    database: crate::events::config::RawDatabase,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawState {
    file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: String,
    #[serde(default = "default_priority")]
    priority: u32,
    #[serde(default)]
    mode: RawMode,
}

fn default_priority() -> u32 {
    100
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    #[default]
    Automatic,
    Manual,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuddy {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: String,
    #[serde(default, rename = "token")]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    listen: String,
    pair_key: Option<String>,
    pair_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    target: String,
    source: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    max_failures: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: String,
    rights: Vec<Right>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCore {
    path: Option<PathBuf>,
    deadline: Option<String>,
    memory_limit_mib: Option<u32>,
    tick: Option<String>,
    watch_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    buddy_timeout: Option<String>,
    startup_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    prepare_timeout: Option<String>,
    going_online_timeout: Option<String>,
    going_offline_timeout: Option<String>,
    min_switch_interval: Option<String>,
    startup_wait: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    id: Option<String>,
    kind: RawKind,
    target: String,
    interval: Option<String>,
    timeout: Option<String>,
    max_failures: Option<u32>,
    source: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawKind {
    Agent,
    Ping,
    Inverted,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    refresh: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    failover_log: Option<PathBuf>,
    failover_log_max_mib: Option<u32>,
    failover_log_keep: Option<u32>,
    failover_log_retention: Option<String>,
}

// --- validation ----------------------------------------------------------------------------

struct Checker {
    errors: Vec<ConfigError>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// A duration such as "250ms", "5s" or "2m", within [min, max].
    fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        duration(&mut self.errors, path, value, default, (min, max))
    }

    /// A whole number within `range`, or the default when not set.
    fn range(
        &mut self,
        path: &str,
        value: Option<u32>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        match value {
            Some(n) if !range.contains(&n) => {
                self.error(
                    path,
                    format!(
                        "{n} is out of range: expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    /// A path's interval and per-attempt timeout (`<path>.interval`, `<path>.timeout`).
    fn timing(
        &mut self,
        path: &str,
        interval: Option<&str>,
        timeout: Option<&str>,
    ) -> (Duration, Duration) {
        let interval = self.duration(
            &format!("{path}.interval"),
            interval,
            DEFAULT_INTERVAL,
            10 * MS,
            Duration::from_secs(600),
        );
        let timeout = self.duration(
            &format!("{path}.timeout"),
            timeout,
            interval.min(Duration::from_millis(500)),
            MS,
            Duration::from_secs(600),
        );
        if timeout > interval {
            self.error(
                format!("{path}.timeout"),
                format!(
                    "{} is longer than the interval ({}): attempts would overlap",
                    fmt(timeout),
                    fmt(interval)
                ),
            );
        }
        (interval, timeout)
    }

    /// An optional source address that pins a path to one NIC.
    fn source(&mut self, path: &str, value: Option<&str>) -> Option<IpAddr> {
        value.and_then(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(path, format!("\"{s}\" is not an IP address"));
                None
            }
        })
    }

    /// The buddy's peer port on one path: an address:port that is not our own peer port.
    fn buddy_peer(&mut self, path: &str, value: &str, own: SocketAddr) -> SocketAddr {
        match value.parse::<SocketAddr>() {
            Ok(t) if t == own => {
                self.error(path, format!("{value} is this agent's own peer.listen: this path goes to the buddy's peer port"));
                t
            }
            Ok(t) => t,
            Err(_) => {
                self.error(
                    path,
                    format!("\"{value}\" is not the buddy's peer address (address:port of its peer.listen)"),
                );
                SocketAddr::from(([127, 0, 0, 1], 0))
            }
        }
    }

    /// The pair key: exactly one of `peer.pair_key` and `peer.pair_key_file`, 16 bytes or more.
    fn pair_key(&mut self, raw: &RawPeer, base: &Path) -> Vec<u8> {
        let (path, key) = match (&raw.pair_key, &raw.pair_key_file) {
            (Some(key), None) => ("peer.pair_key", key.as_bytes().to_vec()),
            (None, Some(file)) => {
                let file = if file.is_absolute() {
                    file.clone()
                } else {
                    base.join(file)
                };
                match std::fs::read(&file) {
                    // A trailing newline from `echo` or an editor is not part of the key.
                    Ok(bytes) => ("peer.pair_key_file", bytes.trim_ascii_end().to_vec()),
                    Err(e) => {
                        self.error(
                            "peer.pair_key_file",
                            format!("cannot read {}: {e}", file.display()),
                        );
                        return Vec::new();
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.error("peer.pair_key", "give pair_key or pair_key_file, not both");
                return Vec::new();
            }
            (None, None) => {
                self.error("peer", "a pair key is required: set pair_key_file (or pair_key) to the same secret on both agents, e.g. the output of `openssl rand -hex 32`");
                return Vec::new();
            }
        };
        if key.len() < MIN_PAIR_KEY {
            self.error(
                path,
                format!("the pair key is {} bytes: use at least {MIN_PAIR_KEY} (e.g. `openssl rand -hex 32`)", key.len()),
            );
        }
        key
    }

    fn name(&mut self, path: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            self.error(path, format!("\"{value}\" is not a valid name: 1 to 64 characters of letters, digits, '-', '_' or '.'"));
        }
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The one reading of a duration setting, for every section: "250ms", "5s", "2m", "30d"
/// within `[min, max]` (`Duration::MAX`: no upper bound). A mistake is pushed onto `errors`
/// naming the key, and the default is kept so the rest can still be checked.
pub(crate) fn duration(
    errors: &mut Vec<ConfigError>,
    path: &str,
    value: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
) -> Duration {
    let Some(text) = value else { return default };
    let message = match humantime::parse_duration(text) {
        Ok(d) if d >= min && d <= max => return d,
        Ok(_) if max == Duration::MAX => format!("{text} is too short: at least {}", fmt(min)),
        Ok(_) => format!(
            "{text} is out of range: expected between {} and {}",
            fmt(min),
            fmt(max)
        ),
        Err(e) => format!(
            "\"{text}\" is not a duration ({e}); write e.g. \"250ms\", \"5s\", \"2m\" or \"30d\""
        ),
    };
    errors.push(ConfigError {
        path: path.into(),
        message,
    });
    default
}

/// A retention setting: a duration of at least a minute, or "forever" (`None`: keep all).
pub(crate) fn retention(
    errors: &mut Vec<ConfigError>,
    path: &str,
    value: Option<&str>,
    default: Option<Duration>,
) -> Option<Duration> {
    match value {
        None => default,
        Some("forever") => None,
        Some(_) => Some(duration(
            errors,
            path,
            value,
            default.unwrap_or(Duration::MAX),
            (Duration::from_secs(60), Duration::MAX),
        )),
    }
}

const MS: Duration = Duration::from_millis(1);
/// A heartbeat's (and the sync connection's) default interval: with the default timeout (the
/// interval) and `max_failures` (3), a dead buddy is declared after 4 failed attempts, 0.6 to
/// 0.8 s, while a buddy stalled for 500 ms fails at most 3 (docs/decisions.md).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest pair key accepted, in bytes.
const MIN_PAIR_KEY: usize = 16;
const HOUR: Duration = Duration::from_secs(3600);

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Checker { errors: Vec::new() };

    c.name("agent.name", &raw.agent.name);
    c.name("buddy.name", &raw.buddy.name);
    if raw.agent.name == raw.buddy.name {
        c.error(
            "buddy.name",
            format!(
                "the buddy must have another name than this agent (both are \"{}\")",
                raw.agent.name
            ),
        );
    }
    let listen = match raw.api.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            c.error(
                "api.listen",
                format!(
                    "\"{}\" is not an address:port such as \"127.0.0.1:7101\"",
                    raw.api.listen
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };

    let peer_listen = match raw.peer.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            c.error(
                "peer.listen",
                format!(
                    "\"{}\" is not an address:port such as \"10.0.0.1:7201\"",
                    raw.peer.listen
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    if peer_listen == listen && listen.port() != 0 {
        c.error("peer.listen", "the peer port must differ from api.listen");
    }
    let pair_key = c.pair_key(&raw.peer, base);

    let mut tokens: Vec<TokenConfig> = Vec::new();
    for (i, t) in raw.api.tokens.iter().enumerate() {
        let at = |key: &str| format!("api.token[{i}].{key}");
        c.name(&at("name"), &t.name);
        if tokens.iter().any(|o| o.name == t.name) {
            c.error(
                at("name"),
                format!("\"{}\" is used by another token", t.name),
            );
        }
        let sha256 = match decode_sha256(&t.sha256) {
            Some(h) => h,
            None => {
                c.error(at("sha256"), "expected the 64 hex digits that `duet token new` prints (the SHA-256 of the token, never the token)");
                [0; 32]
            }
        };
        if t.rights.is_empty() {
            c.error(
                at("rights"),
                "give at least one of \"switch\", \"force_online\", \"mode\"",
            );
        }
        tokens.push(TokenConfig {
            name: t.name.clone(),
            sha256,
            rights: t.rights.clone(),
        });
    }

    let tick = c.duration(
        "core.tick",
        raw.core.tick.as_deref(),
        Duration::from_millis(250),
        10 * MS,
        Duration::from_secs(10),
    );
    let deadline = c.duration(
        "core.deadline",
        raw.core.deadline.as_deref(),
        Duration::from_millis(100),
        MS,
        Duration::from_secs(10),
    );
    let memory_mib = raw.core.memory_limit_mib.unwrap_or(64);
    if !(1..=4096).contains(&memory_mib) {
        c.error(
            "core.memory_limit_mib",
            format!("{memory_mib} is out of range: expected 1 to 4096"),
        );
    }
    let watch_interval = c.duration(
        "core.watch_interval",
        raw.core.watch_interval.as_deref(),
        Duration::from_millis(500),
        10 * MS,
        Duration::from_secs(60),
    );

    let status = StatusConfig {
        buddy_timeout: c.duration(
            "status.buddy_timeout",
            raw.status.buddy_timeout.as_deref(),
            Duration::from_secs(10),
            100 * MS,
            HOUR,
        ),
        startup_grace: c.duration(
            "status.startup_grace",
            raw.status.startup_grace.as_deref(),
            Duration::from_secs(5),
            Duration::ZERO,
            HOUR,
        ),
    };
    let failover = FailoverTimes {
        prepare_timeout: c.duration(
            "failover.prepare_timeout",
            raw.failover.prepare_timeout.as_deref(),
            Duration::from_secs(10),
            10 * MS,
            HOUR,
        ),
        going_online_timeout: c.duration(
            "failover.going_online_timeout",
            raw.failover.going_online_timeout.as_deref(),
            Duration::from_secs(30),
            10 * MS,
            HOUR,
        ),
        going_offline_timeout: c.duration(
            "failover.going_offline_timeout",
            raw.failover.going_offline_timeout.as_deref(),
            Duration::from_secs(10),
            10 * MS,
            HOUR,
        ),
        min_switch_interval: c.duration(
            "failover.min_switch_interval",
            raw.failover.min_switch_interval.as_deref(),
            Duration::from_secs(30),
            Duration::ZERO,
            HOUR,
        ),
        startup_wait: c.duration(
            "failover.startup_wait",
            raw.failover.startup_wait.as_deref(),
            Duration::from_secs(10),
            Duration::ZERO,
            HOUR,
        ),
    };

    let mut heartbeats = Vec::new();
    for (i, hb) in raw.heartbeats.iter().enumerate() {
        let at = |key: &str| format!("heartbeat[{i}].{key}");
        let id = hb.id.clone().unwrap_or_else(|| format!("hb{i}"));
        if hb.id.is_some() {
            c.name(&at("id"), &id);
        }
        if heartbeats.iter().any(|h: &HeartbeatConfig| h.id == id) {
            c.error(at("id"), format!("\"{id}\" is used by another heartbeat"));
        }
        let kind = match hb.kind {
            RawKind::Agent => HeartbeatKind::Agent,
            RawKind::Ping => HeartbeatKind::Ping,
            RawKind::Inverted => HeartbeatKind::Inverted,
        };
        match kind {
            HeartbeatKind::Agent => {
                c.buddy_peer(&at("target"), &hb.target, peer_listen);
            }
            HeartbeatKind::Ping | HeartbeatKind::Inverted => {
                if hb.target.parse::<IpAddr>().is_err() {
                    c.error(
                        at("target"),
                        format!("\"{}\" is not an IP address", hb.target),
                    );
                }
            }
        }
        let (interval, timeout) = c.timing(
            &format!("heartbeat[{i}]"),
            hb.interval.as_deref(),
            hb.timeout.as_deref(),
        );
        let source = c.source(&at("source"), hb.source.as_deref());
        heartbeats.push(HeartbeatConfig {
            id,
            kind,
            target: hb.target.clone(),
            interval,
            timeout,
            max_failures: hb.max_failures.unwrap_or(3),
            source,
        });
    }
    if !heartbeats.iter().any(|h| h.kind == HeartbeatKind::Agent) {
        c.error("heartbeat", "at least one heartbeat with kind = \"agent\" is required: without one, no agent can tell whether its buddy is alive");
    }
    for (i, inv) in heartbeats
        .iter()
        .enumerate()
        .filter(|(_, h)| h.kind == HeartbeatKind::Inverted)
    {
        if heartbeats
            .iter()
            .any(|h| h.kind != HeartbeatKind::Inverted && same_host(&h.target, &inv.target))
        {
            c.error(format!("heartbeat[{i}].target"), format!("inverted heartbeat to {} has the same target as a normal heartbeat: both agents could never go online", inv.target));
        }
    }

    let sync = raw.sync.as_ref().map(|s| {
        let target = c.buddy_peer("sync.target", &s.target, peer_listen);
        let (interval, timeout) = c.timing("sync", s.interval.as_deref(), s.timeout.as_deref());
        SyncConfig {
            target,
            source: c.source("sync.source", s.source.as_deref()),
            interval,
            timeout,
            max_failures: s.max_failures.unwrap_or(3),
        }
    });
    if let Some(sync) = &sync
        && let Some(i) = heartbeats.iter().position(|h| {
            h.kind == HeartbeatKind::Agent
                && h.target
                    .parse::<SocketAddr>()
                    .is_ok_and(|t| t == sync.target)
                && h.source == sync.source
        })
    {
        let from = sync
            .source
            .map_or_else(|| "from any source".to_string(), |s| format!("from {s}"));
        c.error(
            "sync.target",
            format!(
                "{} {from} is also heartbeat[{i}].target (kind = \"agent\", same source): the sync connection must be a path of its own, ideally a direct cable, or it proves nothing the heartbeat does not; give [sync] another target or source, or remove heartbeat[{i}]",
                sync.target
            ),
        );
    }

    let plugins = crate::plugins::config::validate(raw.plugins, base, &mut c.errors);
    let nats = raw
        .nats
        .map(|n| crate::probes::nats::validate(n, base, &mut c.errors));
    let watchdog = crate::probes::validate_watchdog(raw.watchdog, &mut c.errors);
    let vips = crate::vip::config::validate_vips(raw.vips, &mut c.errors);
    let hooks = crate::vip::config::validate_hooks(raw.hooks, base, &mut c.errors);
    // The buddy's report must be renewed before it counts as stale.
    let paths = heartbeats
        .iter()
        .enumerate()
        .filter(|(_, h)| h.kind == HeartbeatKind::Agent)
        .map(|(i, h)| (format!("heartbeat[{i}]"), h.interval + h.timeout))
        .chain(
            sync.iter()
                .map(|s| ("sync".to_string(), s.interval + s.timeout)),
        );
    for (path, every) in paths {
        if every >= status.buddy_timeout {
            c.error(
                "status.buddy_timeout",
                format!(
                    "{} is not longer than {path}'s interval + timeout ({}): the buddy's report would go stale between two attempts",
                    fmt(status.buddy_timeout),
                    fmt(every)
                ),
            );
        }
    }
    let web = WebConfig {
        refresh: c.duration(
            "web.refresh",
            raw.web.refresh.as_deref(),
            Duration::from_secs(60),
            Duration::from_secs(1),
            HOUR,
        ),
    };

    let database = {
        let state_file = raw
            .state
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.state", raw.agent.name)));
        let state_file = if state_file.is_absolute() {
            state_file
        } else {
            base.join(state_file)
        };
        let state_dir = state_file.parent().unwrap_or(base).to_path_buf();
        crate::events::config::validate(
            raw.database,
            base,
            &state_dir,
            &raw.agent.name,
            &mut c.errors,
        )
    };
    let log = LogConfig {
        failover_log: raw
            .log
            .failover_log
            .clone()
            .map(|p| if p.is_absolute() { p } else { base.join(p) }),
        failover_log_max_bytes: u64::from(c.range(
            "log.failover_log_max_mib",
            raw.log.failover_log_max_mib,
            10,
            1..=4096,
        )) << 20,
        failover_log_keep: c.range(
            "log.failover_log_keep",
            raw.log.failover_log_keep,
            10,
            0..=1000,
        ),
        failover_log_retention: retention(
            &mut c.errors,
            "log.failover_log_retention",
            raw.log.failover_log_retention.as_deref(),
            Some(Duration::from_secs(90 * 24 * 3600)),
        ),
    };
    if !c.errors.is_empty() {
        return Err(ConfigErrors(c.errors));
    }
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let state_file = raw
        .state
        .file
        .unwrap_or_else(|| PathBuf::from(format!("{}.state", raw.agent.name)));
    Ok(Config {
        agent: AgentConfig {
            name: raw.agent.name,
            priority: raw.agent.priority,
            mode: match raw.agent.mode {
                RawMode::Automatic => Mode::Automatic,
                RawMode::Manual => Mode::Manual,
            },
        },
        buddy: BuddyConfig {
            name: raw.buddy.name,
        },
        api: ApiConfig { listen, tokens },
        peer: PeerConfig {
            listen: peer_listen,
            pair_key,
        },
        sync,
        core: CoreConfig {
            path: raw.core.path.map(rel),
            deadline,
            memory_limit_bytes: (memory_mib as usize) << 20,
            tick,
            watch_interval,
        },
        status,
        failover,
        heartbeats,
        state: StateConfig {
            file: rel(state_file),
        },
        log,
        plugins,
        web,
        nats,
        watchdog,
        vips,
        hooks,
        database,
    })
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// Whether two heartbeat targets name the same host (`ip` or `ip:port`).
fn same_host(a: &str, b: &str) -> bool {
    let host = |t: &str| {
        t.parse::<SocketAddr>()
            .map(|s| s.ip().to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    host(a) == host(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [agent]
        name = "a"
        [buddy]
        name = "b"
        [api]
        listen = "127.0.0.1:7101"
        [peer]
        listen = "127.0.0.1:7201"
        pair_key = "0123456789abcdef0123"
        [[heartbeat]]
        kind = "agent"
        target = "127.0.0.1:7202"
    "#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.core.tick, Duration::from_millis(250));
        assert_eq!(c.status.buddy_timeout, Duration::from_secs(10));
        assert_eq!(c.heartbeats[0].max_failures, 3);
        assert_eq!(c.heartbeats[0].id, "hb0");
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let text = MINIMAL
            .replace("127.0.0.1:7101", "nowhere")
            .replace("name = \"b\"", "name = \"a\"");
        let errs = parse(&text, Path::new(".")).expect_err("invalid").0;
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["buddy.name", "api.listen"]);
    }

    #[test]
    fn a_sync_connection_on_an_agent_heartbeats_path_is_refused_naming_both_keys() {
        let text = format!("{MINIMAL}\n[sync]\ntarget = \"127.0.0.1:7202\"\n");
        let errs = parse(&text, Path::new("."))
            .expect_err("the same path twice")
            .0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        let message = errs[0].to_string();
        assert!(
            message.starts_with("sync.target: 127.0.0.1:7202 "),
            "{message}"
        );
        assert!(message.contains("heartbeat[0].target"), "{message}");
        // Another source address is another path (another NIC): accepted.
        let text =
            format!("{MINIMAL}\n[sync]\ntarget = \"127.0.0.1:7202\"\nsource = \"127.0.0.2\"\n");
        parse(&text, Path::new(".")).expect("another source is another path");
    }

    #[test]
    fn web_refresh_defaults_to_a_minute_and_is_range_checked() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.web.refresh, Duration::from_secs(60));
        let c = parse(
            &format!("{MINIMAL}\n[web]\nrefresh = \"5s\""),
            Path::new("."),
        )
        .expect("valid");
        assert_eq!(c.web.refresh, Duration::from_secs(5));
        let errs = parse(
            &format!("{MINIMAL}\n[web]\nrefresh = \"10ms\""),
            Path::new("."),
        )
        .expect_err("too short")
        .0;
        assert_eq!(errs[0].path, "web.refresh");
    }

    #[test]
    fn failover_log_rotation_has_defaults_and_names_each_bad_key() {
        let c = parse(MINIMAL, Path::new("/etc/duet")).expect("valid");
        assert_eq!(c.log.failover_log_max_bytes, 10 << 20);
        assert_eq!(c.log.failover_log_keep, 10);
        assert_eq!(
            c.log.failover_log_retention,
            Some(Duration::from_secs(90 * 24 * 3600))
        );
        let c = parse(
            &format!(
                "{MINIMAL}\n[log]\nfailover_log = \"f.log\"\nfailover_log_retention = \"forever\""
            ),
            Path::new("/etc/duet"),
        )
        .expect("valid");
        assert_eq!(
            c.log.failover_log.as_deref(),
            Some(Path::new("/etc/duet/f.log"))
        );
        assert_eq!(c.log.failover_log_retention, None);
        let errs: Vec<String> = parse(
            &format!(
                "{MINIMAL}\n[log]\nfailover_log_max_mib = 0\nfailover_log_keep = 5000\nfailover_log_retention = \"soon\""
            ),
            Path::new("."),
        )
        .expect_err("invalid")
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
        for key in [
            "log.failover_log_max_mib",
            "log.failover_log_keep",
            "log.failover_log_retention",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(key)), "{key} in {errs:?}");
        }
    }
}
