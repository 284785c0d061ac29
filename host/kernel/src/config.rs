//! The kernel's sections of the configuration file: `[agent]`, `[buddy]`, `[peer]`, `[sync]`,
//! `[core]`, `[status]`, `[failover]`, `[[heartbeat]]`, `[state]` and `[log]`. Raw (serde,
//! unknown keys refused) then validated into [`KernelConfig`], each mistake naming its key.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_base::config::{Errors, fmt};
use duet_base::millis;
use duet_core::{FailoverConfig, HeartbeatKind, Mode, RulesConfig};
use serde::Deserialize;

/// The kernel's settings, validated.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    pub agent: AgentConfig,
    pub buddy: BuddyConfig,
    pub peer: PeerConfig,
    /// The sync connection to the buddy: none when not configured.
    pub sync: Option<SyncConfig>,
    pub core: CoreConfig,
    pub status: StatusConfig,
    pub failover: FailoverTimes,
    pub heartbeats: Vec<HeartbeatConfig>,
    pub state: StateConfig,
    pub log: LogConfig,
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

/// The peer port: the buddy's agent heartbeats and sync connection arrive here.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub listen: SocketAddr,
    /// The secret both agents share; frames are authenticated with it (HMAC-SHA256). This
    /// agent seals with it.
    pub pair_key: Vec<u8>,
    /// A second key accepted from the buddy but never sealed with: the new or the old key
    /// while the pair rotates its key (docs/peer-link.md).
    pub accepted_pair_key: Option<Vec<u8>>,
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
    /// The SCHED_RR priority of the decision threads (1 to 99); 0: ordinary scheduling.
    pub priority: u8,
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

impl KernelConfig {
    /// The status rules' settings.
    pub fn rules(&self, vip_enabled: bool) -> RulesConfig {
        RulesConfig {
            startup_grace_ms: millis(self.status.startup_grace),
            buddy_timeout_ms: millis(self.status.buddy_timeout),
            vip_enabled,
        }
    }

    /// The state machine's settings (`failover` holds the timings as configured).
    pub fn state_machine(&self, vip_enabled: bool) -> FailoverConfig {
        FailoverConfig {
            priority: self.agent.priority,
            vip_enabled,
            prepare_timeout_ms: millis(self.failover.prepare_timeout),
            going_online_timeout_ms: millis(self.failover.going_online_timeout),
            going_offline_timeout_ms: millis(self.failover.going_offline_timeout),
            min_switch_interval_ms: millis(self.failover.min_switch_interval),
            startup_wait_ms: millis(self.failover.startup_wait),
        }
    }

    /// The buddy's addresses: where this agent reaches its duet, the agent heartbeats' targets
    /// and the sync connection's, each once. Ping and inverted heartbeats point at other hosts
    /// (the gateway, a router), never at the buddy's duet, so they are not its addresses.
    pub fn buddy_addresses(&self) -> Vec<String> {
        let agent_paths = self
            .heartbeats
            .iter()
            .filter(|h| h.kind == duet_core::HeartbeatKind::Agent)
            .map(|h| h.target.clone());
        let sync = self.sync.iter().map(|s| s.target.to_string());
        agent_paths.chain(sync).fold(Vec::new(), |mut all, t| {
            if !all.contains(&t) {
                all.push(t);
            }
            all
        })
    }

    /// A fingerprint of the settings both agents of a pair must share (the failover timings,
    /// the mode, the agent paths, the build's version: [`crate::configuration`]), carried over
    /// the peer link so the two can be compared cheaply; the settings themselves travel only
    /// while the fingerprints differ.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let shared: String = crate::configuration::shared_settings(self)
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        sha2::Sha256::digest(shared.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

// --- raw, as written -----------------------------------------------------------------------

/// The kernel's raw sections, as the composing crate read them from the file. (Read on its
/// own, other sections are ignored: the kernel's tests.)
#[derive(Deserialize)]
pub struct RawKernel {
    pub agent: RawAgent,
    pub buddy: RawBuddy,
    pub peer: RawPeer,
    pub sync: Option<RawSync>,
    #[serde(default)]
    pub core: RawCore,
    #[serde(default)]
    pub status: RawStatus,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default, rename = "heartbeat")]
    pub heartbeats: Vec<RawHeartbeat>,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub log: RawLog,
}

/// The smallest valid configuration of agent `agent` with buddy `buddy` (one agent heartbeat
/// to 127.0.0.1:7202), with `extra` appended (a key there adds to the heartbeat), for tests.
#[cfg(test)]
pub(crate) fn minimal(agent: &str, buddy: &str, extra: &str) -> KernelConfig {
    let text = format!(
        "[agent]\nname = \"{agent}\"\n[buddy]\nname = \"{buddy}\"\n\
         [peer]\nlisten = \"127.0.0.1:7201\"\npair_key = \"0123456789abcdef0123\"\n\
         [[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:7202\"\n{extra}\n"
    );
    parse(&text, Path::new("/etc/duet")).expect("a valid configuration")
}

/// Reads and validates the kernel's sections of a configuration text (other sections are
/// ignored), for tests of the kernel alone.
pub fn parse(text: &str, base: &Path) -> Result<KernelConfig, duet_base::config::ConfigErrors> {
    let raw: RawKernel = duet_base::config::parse_section(text)?;
    let mut errors = Errors::new();
    let config = validate(raw, base, &mut errors);
    errors.finish(config)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: String,
    #[serde(default = "default_priority")]
    pub priority: u32,
    #[serde(default)]
    pub mode: RawMode,
}

fn default_priority() -> u32 {
    100
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    #[default]
    Automatic,
    Manual,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuddy {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub listen: String,
    pub pair_key: Option<String>,
    pub pair_key_file: Option<PathBuf>,
    pub accepted_pair_key: Option<String>,
    pub accepted_pair_key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub target: String,
    pub source: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_failures: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCore {
    pub path: Option<PathBuf>,
    pub deadline: Option<String>,
    pub memory_limit_mib: Option<u32>,
    pub tick: Option<String>,
    pub watch_interval: Option<String>,
    pub priority: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub buddy_timeout: Option<String>,
    pub startup_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    pub prepare_timeout: Option<String>,
    pub going_online_timeout: Option<String>,
    pub going_offline_timeout: Option<String>,
    pub min_switch_interval: Option<String>,
    pub startup_wait: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub id: Option<String>,
    pub kind: RawKind,
    pub target: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub max_failures: Option<u32>,
    pub source: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    Agent,
    Ping,
    Inverted,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub failover_log: Option<PathBuf>,
    pub failover_log_max_mib: Option<u32>,
    pub failover_log_keep: Option<u32>,
    pub failover_log_retention: Option<String>,
}

// --- validation ----------------------------------------------------------------------------

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);
/// A heartbeat's (and the sync connection's) default interval: with the default timeout (the
/// interval) and `max_failures` (3), a dead buddy is declared after 4 failed attempts, 0.6 to
/// 0.8 s, while a buddy stalled for 500 ms fails at most 3 (docs/decisions.md).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest pair key accepted, in bytes.
const MIN_PAIR_KEY: usize = 16;

/// Validates the kernel's sections; relative paths are taken from `base`.
pub fn validate(raw: RawKernel, base: &Path, errors: &mut Errors) -> KernelConfig {
    errors.name("agent.name", &raw.agent.name);
    errors.name("buddy.name", &raw.buddy.name);
    if raw.agent.name == raw.buddy.name {
        errors.error(
            "buddy.name",
            format!(
                "the buddy must have another name than this agent (both are \"{}\")",
                raw.agent.name
            ),
        );
    }
    let peer = peer(&raw.peer, base, errors);
    let core = core(raw.core, base, errors);
    let status = status(&raw.status, errors);
    let failover = failover(&raw.failover, errors);
    let heartbeats = heartbeats(&raw.heartbeats, peer.listen, errors);
    let sync = raw.sync.as_ref().map(|s| sync(s, peer.listen, errors));
    if let Some(sync) = &sync {
        sync_is_a_path_of_its_own(sync, &heartbeats, errors);
    }
    reports_renewed_in_time(&status, &heartbeats, sync.as_ref(), errors);
    let log = log(&raw.log, base, errors);
    let state_file = raw
        .state
        .file
        .unwrap_or_else(|| PathBuf::from(format!("{}.state", raw.agent.name)));
    KernelConfig {
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
        peer,
        sync,
        core,
        status,
        failover,
        heartbeats,
        state: StateConfig {
            file: relative_to(base, state_file),
        },
        log,
    }
}

/// A path as written, taken from `base` when relative.
pub fn relative_to(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// An address:port setting; a mistake (port 0 too) names the key and gives an example.
pub fn socket_address(errors: &mut Errors, path: &str, value: &str, example: &str) -> SocketAddr {
    errors
        .socket_address(path, value, example)
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn peer(raw: &RawPeer, base: &Path, errors: &mut Errors) -> PeerConfig {
    let pair_key = secret(
        errors,
        base,
        ("peer.pair_key", raw.pair_key.as_deref()),
        ("peer.pair_key_file", raw.pair_key_file.as_ref()),
    )
    .unwrap_or_else(|| {
        errors.error("peer", "a pair key is required: set pair_key_file (or pair_key) to the same secret on both agents, e.g. the output of `openssl rand -hex 32`");
        Vec::new()
    });
    let accepted_pair_key = secret(
        errors,
        base,
        ("peer.accepted_pair_key", raw.accepted_pair_key.as_deref()),
        (
            "peer.accepted_pair_key_file",
            raw.accepted_pair_key_file.as_ref(),
        ),
    );
    PeerConfig {
        listen: socket_address(errors, "peer.listen", &raw.listen, "10.0.0.1:7201"),
        // The same key twice is one key: sessions and reloads compare the set.
        accepted_pair_key: accepted_pair_key.filter(|k| *k != pair_key),
        pair_key,
    }
}

/// A key given inline or in a file (exactly one of the two), 16 bytes or more; `None` when
/// neither is set (or it is unusable, with the error recorded).
fn secret(
    errors: &mut Errors,
    base: &Path,
    (inline, value): (&str, Option<&str>),
    (in_file, file): (&str, Option<&PathBuf>),
) -> Option<Vec<u8>> {
    let (path, key) = match (value, file) {
        (Some(key), None) => (inline, key.as_bytes().to_vec()),
        (None, Some(file)) => {
            let file = relative_to(base, file.clone());
            match std::fs::read(&file) {
                // A trailing newline from `echo` or an editor is not part of the key.
                Ok(bytes) => (in_file, bytes.trim_ascii_end().to_vec()),
                Err(e) => {
                    errors.error(in_file, format!("cannot read {}: {e}", file.display()));
                    return None;
                }
            }
        }
        (Some(_), Some(_)) => {
            errors.error(inline, format!("give {inline} or {in_file}, not both"));
            return None;
        }
        (None, None) => return None,
    };
    if key.len() < MIN_PAIR_KEY {
        errors.error(
            path,
            format!("the pair key is {} bytes: use at least {MIN_PAIR_KEY} (e.g. `openssl rand -hex 32`)", key.len()),
        );
    }
    Some(key)
}

fn core(raw: RawCore, base: &Path, errors: &mut Errors) -> CoreConfig {
    let tick = errors.duration(
        "core.tick",
        raw.tick.as_deref(),
        Duration::from_millis(250),
        (10 * MS, Duration::from_secs(10)),
    );
    let deadline = errors.duration(
        "core.deadline",
        raw.deadline.as_deref(),
        Duration::from_millis(100),
        (MS, Duration::from_secs(10)),
    );
    let memory_mib = raw.memory_limit_mib.unwrap_or(64);
    if !(1..=4096).contains(&memory_mib) {
        errors.error(
            "core.memory_limit_mib",
            format!("{memory_mib} is out of range: expected 1 to 4096"),
        );
    }
    let watch_interval = errors.duration(
        "core.watch_interval",
        raw.watch_interval.as_deref(),
        Duration::from_millis(500),
        (10 * MS, Duration::from_secs(60)),
    );
    let priority = raw.priority.unwrap_or(10);
    if priority > 99 {
        errors.error(
            "core.priority",
            format!("{priority} is out of range: expected 0 (ordinary scheduling) to 99"),
        );
    }
    CoreConfig {
        priority,
        path: raw.path.map(|p| relative_to(base, p)),
        deadline,
        memory_limit_bytes: (memory_mib as usize) << 20,
        tick,
        watch_interval,
    }
}

fn status(raw: &RawStatus, errors: &mut Errors) -> StatusConfig {
    StatusConfig {
        buddy_timeout: errors.duration(
            "status.buddy_timeout",
            raw.buddy_timeout.as_deref(),
            Duration::from_secs(10),
            (100 * MS, HOUR),
        ),
        startup_grace: errors.duration(
            "status.startup_grace",
            raw.startup_grace.as_deref(),
            Duration::from_secs(5),
            (Duration::ZERO, HOUR),
        ),
    }
}

fn failover(raw: &RawFailover, errors: &mut Errors) -> FailoverTimes {
    let mut timeout = |key: &str, value: &Option<String>, default: u64, min: Duration| {
        errors.duration(
            &format!("failover.{key}"),
            value.as_deref(),
            Duration::from_secs(default),
            (min, HOUR),
        )
    };
    FailoverTimes {
        prepare_timeout: timeout("prepare_timeout", &raw.prepare_timeout, 10, 10 * MS),
        going_online_timeout: timeout(
            "going_online_timeout",
            &raw.going_online_timeout,
            30,
            10 * MS,
        ),
        going_offline_timeout: timeout(
            "going_offline_timeout",
            &raw.going_offline_timeout,
            10,
            10 * MS,
        ),
        min_switch_interval: timeout(
            "min_switch_interval",
            &raw.min_switch_interval,
            30,
            Duration::ZERO,
        ),
        startup_wait: timeout("startup_wait", &raw.startup_wait, 10, Duration::ZERO),
    }
}

/// A path's interval and per-attempt timeout (`<path>.interval`, `<path>.timeout`).
fn timing(
    errors: &mut Errors,
    path: &str,
    interval: Option<&str>,
    timeout: Option<&str>,
) -> (Duration, Duration) {
    let interval = errors.duration(
        &format!("{path}.interval"),
        interval,
        DEFAULT_INTERVAL,
        // 5 ms: the fast profile's 9 ms × 3 matches keepalived's fastest adverts (10 ms).
        (5 * MS, Duration::from_secs(600)),
    );
    let timeout = errors.duration(
        &format!("{path}.timeout"),
        timeout,
        interval.min(Duration::from_millis(500)),
        (MS, Duration::from_secs(600)),
    );
    if timeout > interval {
        errors.error(
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

/// The buddy's peer port on one path: an address:port that is not our own peer port.
fn buddy_peer(errors: &mut Errors, path: &str, value: &str, own: SocketAddr) -> SocketAddr {
    let target = errors.socket_address(path, value, "10.0.0.2:7201");
    if target == Some(own) {
        errors.error(
            path,
            format!(
                "{value} is this agent's own peer.listen: this path goes to the buddy's peer port"
            ),
        );
    }
    target.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn heartbeats(raw: &[RawHeartbeat], own: SocketAddr, errors: &mut Errors) -> Vec<HeartbeatConfig> {
    let mut heartbeats: Vec<HeartbeatConfig> = Vec::new();
    for (i, hb) in raw.iter().enumerate() {
        let at = |key: &str| format!("heartbeat[{i}].{key}");
        let id = hb.id.clone().unwrap_or_else(|| format!("hb{i}"));
        if hb.id.is_some() {
            errors.name(&at("id"), &id);
        }
        if heartbeats.iter().any(|h| h.id == id) {
            errors.error(at("id"), format!("\"{id}\" is used by another heartbeat"));
        }
        let kind = match hb.kind {
            RawKind::Agent => HeartbeatKind::Agent,
            RawKind::Ping => HeartbeatKind::Ping,
            RawKind::Inverted => HeartbeatKind::Inverted,
        };
        match kind {
            HeartbeatKind::Agent => {
                buddy_peer(errors, &at("target"), &hb.target, own);
            }
            HeartbeatKind::Ping | HeartbeatKind::Inverted => {
                if hb.target.parse::<IpAddr>().is_err() {
                    errors.error(
                        at("target"),
                        format!("\"{}\" is not an IP address", hb.target),
                    );
                }
            }
        }
        let (interval, timeout) = timing(
            errors,
            &format!("heartbeat[{i}]"),
            hb.interval.as_deref(),
            hb.timeout.as_deref(),
        );
        let source = errors.source(&at("source"), hb.source.as_deref());
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
        errors.error("heartbeat", "at least one heartbeat with kind = \"agent\" is required: without one, no agent can tell whether its buddy is alive");
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
            errors.error(format!("heartbeat[{i}].target"), format!("inverted heartbeat to {} has the same target as a normal heartbeat: both agents could never go online", inv.target));
        }
    }
    heartbeats
}

fn sync(raw: &RawSync, own: SocketAddr, errors: &mut Errors) -> SyncConfig {
    let target = buddy_peer(errors, "sync.target", &raw.target, own);
    let (interval, timeout) = timing(
        errors,
        "sync",
        raw.interval.as_deref(),
        raw.timeout.as_deref(),
    );
    SyncConfig {
        target,
        source: errors.source("sync.source", raw.source.as_deref()),
        interval,
        timeout,
        max_failures: raw.max_failures.unwrap_or(3),
    }
}

/// The sync connection must not be an agent heartbeat's path (same target, same source).
fn sync_is_a_path_of_its_own(
    sync: &SyncConfig,
    heartbeats: &[HeartbeatConfig],
    errors: &mut Errors,
) {
    let Some(i) = heartbeats.iter().position(|h| {
        h.kind == HeartbeatKind::Agent
            && h.target
                .parse::<SocketAddr>()
                .is_ok_and(|t| t == sync.target)
            && h.source == sync.source
    }) else {
        return;
    };
    let from = sync
        .source
        .map_or_else(|| "from any source".to_string(), |s| format!("from {s}"));
    errors.error(
        "sync.target",
        format!(
            "{} {from} is also heartbeat[{i}].target (kind = \"agent\", same source): the sync connection must be a path of its own, ideally a direct cable, or it proves nothing the heartbeat does not; give [sync] another target or source, or remove heartbeat[{i}]",
            sync.target
        ),
    );
}

/// The buddy's report must be renewed before it counts as stale.
fn reports_renewed_in_time(
    status: &StatusConfig,
    heartbeats: &[HeartbeatConfig],
    sync: Option<&SyncConfig>,
    errors: &mut Errors,
) {
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
            errors.error(
                "status.buddy_timeout",
                format!(
                    "{} is not longer than {path}'s interval + timeout ({}): the buddy's report would go stale between two attempts",
                    fmt(status.buddy_timeout),
                    fmt(every)
                ),
            );
        }
    }
}

fn log(raw: &RawLog, base: &Path, errors: &mut Errors) -> LogConfig {
    LogConfig {
        failover_log: raw.failover_log.clone().map(|p| relative_to(base, p)),
        failover_log_max_bytes: u64::from(errors.range(
            "log.failover_log_max_mib",
            raw.failover_log_max_mib,
            10,
            1..=4096,
        )) << 20,
        failover_log_keep: errors.range(
            "log.failover_log_keep",
            raw.failover_log_keep,
            10,
            0..=1000,
        ),
        failover_log_retention: errors.retention(
            "log.failover_log_retention",
            raw.failover_log_retention.as_deref(),
            Some(Duration::from_secs(90 * 24 * 3600)),
        ),
    }
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

    #[test]
    fn the_buddys_addresses_are_its_agent_paths_and_sync_target_not_pinged_hosts() {
        let text = r#"
            [agent]
            name = "a"
            [buddy]
            name = "b"
            [peer]
            listen = "10.0.0.1:7201"
            pair_key = "0123456789abcdef0123"
            [sync]
            target = "10.0.1.2:7201"
            [[heartbeat]]
            kind = "agent"
            target = "10.0.0.2:7201"
            [[heartbeat]]
            kind = "inverted"
            target = "10.0.0.254"
            [[heartbeat]]
            kind = "ping"
            target = "10.0.2.2"
            [[heartbeat]]
            kind = "agent"
            target = "10.0.0.2:7201"
            source = "10.0.0.1"
        "#;
        let config = parse(text, std::path::Path::new(".")).expect("valid");
        assert_eq!(
            config.buddy_addresses(),
            ["10.0.0.2:7201", "10.0.1.2:7201"],
            "agent heartbeat targets (once each), then the sync target"
        );
    }
}
