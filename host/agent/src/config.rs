//! The configuration file: TOML, read into each section's raw type (serde, unknown keys
//! refused), then validated by the crate that owns the section into one [`Config`]. Every
//! error names the key path (`heartbeat[1].interval: ...`), and validation does not stop at
//! the first. `docs/duet.example.toml` documents each key.
//!
//! | section | owner |
//! |---|---|
//! | `[agent]` `[buddy]` `[peer]` `[sync]` `[core]` `[status]` `[failover]` `[[heartbeat]]` `[state]` `[log]` | [`duet_kernel::config`] |
//! | `[api]` `[web]` | [`duet_api::config`] |
//! | `[plugins]` | [`duet_plugins::config`] |
//! | `[nats]` | [`duet_probes::nats`] |
//! | `[nats_connection]` | [`duet_nats`] (shared by `[nats]` and `[witness]`) |
//! | `[witness]` | [`duet_witness::config`] |
//! | `[watchdog]` | [`duet_base::watchdog`] |
//! | `[[vip]]` `[hooks]` | [`duet_vip::config`] |
//! | `[database]` | [`duet_events::config`] |

use std::path::Path;

use duet_api::config::{ApiConfig, RawApi, RawWeb, WebConfig};
use duet_base::config::{ConfigError, ConfigErrors, Errors};
use duet_base::watchdog::{RawWatchdog, WatchdogConfig};
use duet_events::config::{DatabaseConfig, RawDatabase};
use duet_kernel::config::{
    KernelConfig, RawAgent, RawBuddy, RawCore, RawFailover, RawHeartbeat, RawKernel, RawLog,
    RawPeer, RawState, RawStatus, RawSync,
};
use duet_plugins::config::{PluginsConfig, RawPlugins};
use duet_probes::nats::{NatsConfig, RawNats};
use duet_vip::config::{HooksConfig, RawHooks, RawVip, VipConfig};
use duet_witness::config::{RawWitness, WitnessConfig};
use serde::Deserialize;

/// A validated configuration: each crate's section.
#[derive(Debug, Clone)]
pub struct Config {
    /// The decision kernel's sections: the agent, its buddy, the paths, the timings.
    pub kernel: KernelConfig,
    pub api: ApiConfig,
    pub web: WebConfig,
    pub plugins: PluginsConfig,
    /// The NATS communication probe: none when `[nats]` is absent.
    pub nats: Option<NatsConfig>,
    /// The runtime-error watchdog.
    pub watchdog: WatchdogConfig,
    /// The virtual IPs, one per NIC (`[[vip]]`); none: no virtual IP mode.
    pub vips: Vec<VipConfig>,
    /// Commands run on state changes (`[hooks]`).
    pub hooks: HooksConfig,
    /// The event log's store and its forwarding.
    pub database: DatabaseConfig,
    /// The pair's witness lease: none when `[witness]` is absent.
    pub witness: Option<WitnessConfig>,
}

impl Config {
    /// The NICs that carry a virtual IP (for the NIC watcher: such a NIC going down on the
    /// Online agent is a switch trigger).
    pub fn vip_nics(&self) -> Vec<&str> {
        self.vips.iter().map(|v| v.nic.as_str()).collect()
    }

    /// Virtual IP mode: at least one `[[vip]]`.
    pub fn vip_enabled(&self) -> bool {
        !self.vips.is_empty()
    }
}

/// Reads and validates a configuration file; relative paths are taken from its folder.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    read(path).map(|(config, _)| config)
}

/// Reads and validates a configuration file, and returns its text too (a reload compares the
/// sections it does not take live as written).
pub fn read(path: &Path) -> anyhow::Result<(Config, String)> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
    let text = utf8(bytes)
        .map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = parse(&text, base)
        .map_err(|e| anyhow::anyhow!("invalid configuration {}:\n{e}", path.display()))?;
    Ok((config, text))
}

/// The file's text; a file that is not UTF-8 is refused naming the line and column of the
/// first byte that is not.
fn utf8(bytes: Vec<u8>) -> Result<String, ConfigErrors> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        ConfigErrors(vec![ConfigError::new(
            "(top level)",
            format!(
                "line {line}, column {column}: byte 0x{:02x} is not UTF-8: the file must be UTF-8 text",
                e.as_bytes()[at]
            ),
        )])
    })
}

/// The value the package's template (`/etc/duet/duet.toml`) gives every key an operator must
/// fill in: an agent refuses to start while any is left.
pub const FILL_IN: &str = "FILL-IN";

/// The keys whose values still hold [`FILL_IN`], each an error saying what to do.
fn unfilled(text: &str) -> Result<(), ConfigErrors> {
    fn walk(value: &toml::Value, path: String, found: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if s.contains(FILL_IN) => found.push(path),
            toml::Value::Table(table) => {
                for (key, v) in table {
                    let at = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(v, at, found);
                }
            }
            toml::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }
    // Syntax errors are reported by the parse that follows.
    let Ok(value) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let mut found = Vec::new();
    walk(&toml::Value::Table(value), String::new(), &mut found);
    if found.is_empty() {
        return Ok(());
    }
    Err(ConfigErrors(
        found
            .into_iter()
            .map(|key| {
                ConfigError::new(
                    key,
                    format!(
                        "still \"{FILL_IN}\" from the package's template: fill in the pair (this agent, its buddy, their addresses and the pair key; see the comments in the file and /usr/share/doc/duet/install.md)"
                    ),
                )
            })
            .collect(),
    ))
}

/// Parses and validates configuration text; relative paths are taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
    unfilled(text)?;
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
            ConfigErrors(vec![ConfigError::new(path, message)])
        })?;
    validate(raw, base)
}

/// The whole file as written: each section in its owner's raw type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    agent: RawAgent,
    buddy: RawBuddy,
    #[serde(default)]
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
    plugins: RawPlugins,
    #[serde(default)]
    web: RawWeb,
    nats: Option<RawNats>,
    nats_connection: Option<duet_nats::RawConnection>,
    #[serde(default)]
    watchdog: RawWatchdog,
    #[serde(default, rename = "vip")]
    vips: Vec<RawVip>,
    #[serde(default)]
    hooks: RawHooks,
    #[serde(default)]
    database: RawDatabase,
    witness: Option<RawWitness>,
}

fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigErrors> {
    let mut errors = Errors::new();
    let kernel = duet_kernel::config::validate(
        RawKernel {
            agent: raw.agent,
            buddy: raw.buddy,
            peer: raw.peer,
            sync: raw.sync,
            core: raw.core,
            status: raw.status,
            failover: raw.failover,
            heartbeats: raw.heartbeats,
            state: raw.state,
            log: raw.log,
        },
        base,
        &mut errors,
    );
    let api = duet_api::config::validate(&raw.api, base, &mut errors);
    if kernel.peer.listen == api.listen && api.listen.port() != 0 {
        errors.error("peer.listen", "the peer port must differ from api.listen");
    }
    let state_dir = kernel.state.file.parent().unwrap_or(base).to_path_buf();
    let vips = duet_vip::config::validate_vips(raw.vips, &mut errors);
    // The witness lease must outlast the longest VIP kernel lease plus a renewal.
    let vip_lease = vips.iter().map(|v| v.lease + v.renew).max();
    // One place says where NATS is, for the probe and the witness.
    let connection = raw
        .nats_connection
        .map(|c| duet_nats::validate(c, base, &mut errors));
    let config = Config {
        witness: raw
            .witness
            .map(|w| duet_witness::config::validate(w, connection.clone(), vip_lease, &mut errors)),
        web: duet_api::config::validate_web(&raw.web, &mut errors),
        plugins: duet_plugins::config::validate(raw.plugins, base, &mut errors),
        nats: raw
            .nats
            .map(|n| duet_probes::nats::validate(n, connection.clone(), base, &mut errors)),
        watchdog: duet_base::watchdog::validate(raw.watchdog, &mut errors),
        vips,
        hooks: duet_vip::config::validate_hooks(raw.hooks, base, &mut errors),
        database: duet_events::config::validate(
            raw.database,
            base,
            &state_dir,
            &kernel.agent.name,
            &mut errors,
        ),
        kernel,
        api,
    };
    errors.finish(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert_eq!(c.kernel.core.tick, Duration::from_millis(250));
        assert_eq!(c.kernel.status.buddy_timeout, Duration::from_secs(10));
        assert_eq!(c.kernel.heartbeats[0].max_failures, 3);
        assert_eq!(c.kernel.heartbeats[0].id, "hb0");
    }

    #[test]
    fn the_api_listens_on_loopback_unless_told_and_a_broken_tls_pair_names_its_key() {
        let without = MINIMAL.replace("[api]\n        listen = \"127.0.0.1:7101\"", "");
        assert!(!without.contains("7101"));
        let c = parse(&without, Path::new(".")).expect("valid without [api]");
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:7101");
        assert!(c.api.tls.is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("api.crt"), "not a certificate").expect("write");
        let text = format!("{MINIMAL}\n[api.tls]\ncert = \"api.crt\"\nkey = \"api.key\"\n");
        let errs = parse(&text, dir.path()).expect_err("no certificate").0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "api.tls.cert");
        assert!(errs[0].message.contains("api.crt"), "{errs:?}");
    }

    #[test]
    fn the_package_template_is_refused_naming_each_key_still_to_fill_in() {
        let text = MINIMAL
            .replace("name = \"a\"", "name = \"FILL-IN\"")
            .replace("127.0.0.1:7202", "FILL-IN:7201");
        let errs = parse(&text, Path::new(".")).expect_err("template").0;
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["agent.name", "heartbeat[0].target"]);
        assert!(errs[0].message.contains("fill in the pair"), "{errs:?}");
    }

    #[test]
    fn port_0_is_refused_where_nothing_could_reach_it_naming_the_key() {
        let text = MINIMAL
            .replace("127.0.0.1:7101", "127.0.0.1:0")
            .replace("127.0.0.1:7201", "0.0.0.0:0")
            .replace("127.0.0.1:7202", "127.0.0.1:0");
        let errs = parse(&text, Path::new(".")).expect_err("port 0").0;
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["peer.listen", "heartbeat[0].target", "api.listen"]);
        assert!(errs[0].message.contains("port 0"), "{errs:?}");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_refused_with_its_line_and_column() {
        let mut bytes = MINIMAL.as_bytes().to_vec();
        let at = MINIMAL.find("name = \"b\"").expect("buddy name") + 8;
        bytes[at] = 0xff;
        let message = utf8(bytes).expect_err("not UTF-8").to_string();
        assert!(
            message.contains("line 5, column 17: byte 0xff"),
            "{message}"
        );
    }

    #[test]
    fn a_huge_or_hostile_value_is_cut_and_escaped_in_the_message() {
        let huge = "x".repeat(10_000_000);
        let text = MINIMAL.replace("127.0.0.1:7101", &format!("\x1b[2J{huge}"));
        let message = parse(&text, Path::new(".")).expect_err("bad").to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("…"), "{message}");
        assert!(!message.contains('\x1b'), "{message}");
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
        assert_eq!(c.kernel.log.failover_log_max_bytes, 10 << 20);
        assert_eq!(c.kernel.log.failover_log_keep, 10);
        assert_eq!(
            c.kernel.log.failover_log_retention,
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
            c.kernel.log.failover_log.as_deref(),
            Some(Path::new("/etc/duet/f.log"))
        );
        assert_eq!(c.kernel.log.failover_log_retention, None);
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

    #[test]
    fn a_vip_turns_on_vip_mode_for_the_state_machine_and_the_rules() {
        let c = parse(MINIMAL, Path::new(".")).expect("valid");
        assert!(c.vips.is_empty() && !c.kernel.state_machine(c.vip_enabled()).vip_enabled);
        let text = format!(
            "{MINIMAL}\n[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\n[[vip]]\nnic = \"eth1\"\naddress = \"10.1.0.10/16\"\n"
        );
        let c = parse(&text, Path::new(".")).expect("valid");
        assert!(
            c.kernel.state_machine(c.vip_enabled()).vip_enabled
                && c.kernel.rules(c.vip_enabled()).vip_enabled
        );
        assert_eq!(c.vip_nics(), ["eth0", "eth1"]);
    }
}
