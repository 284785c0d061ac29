//! The `[plugins]` section: where plugins come from and, per plugin (keyed by the file's stem),
//! its schedule, limits, grants and how its row counts. Raw (serde) then validated, errors
//! naming the key path like every section ([`duet_base::config`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use duet_base::config::Errors;

/// The validated `[plugins]` section (passed to the plugins' process as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginsConfig {
    /// The folder scanned for `*.wasm` plugins; `None`: plugins are off.
    pub dir: Option<PathBuf>,
    /// How often the folder is scanned for new, changed and removed files.
    pub scan_interval: Duration,
    /// Where compiled plugins are cached (native code: only duet may write there).
    pub cache_dir: Option<PathBuf>,
    /// Settings per plugin, keyed by the plugin file's stem.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// The CPU all plugins together may use, in percent of one core.
    pub cpu_budget_percent: u32,
    /// Blocking I/O threads per plugin (file reads, `disk_space_of`).
    pub io_threads: usize,
    /// The nice value of the plugins' threads (0: the agent's own; up to 19: the lowest).
    pub nice: i32,
}

/// `plugins.cpu_budget_percent` when not set: half a core for all plugins together.
pub const DEFAULT_CPU_BUDGET_PERCENT: u32 = 50;
/// `plugins.io_threads` when not set.
pub const DEFAULT_IO_THREADS: usize = 2;
/// `plugins.nice` when not set.
pub const DEFAULT_NICE: i32 = 10;

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            scan_interval: Duration::from_secs(1),
            cache_dir: None,
            plugins: BTreeMap::new(),
            cpu_budget_percent: DEFAULT_CPU_BUDGET_PERCENT,
            io_threads: DEFAULT_IO_THREADS,
            nice: DEFAULT_NICE,
        }
    }
}

impl PluginsConfig {
    /// The settings of the plugin named `name` (its file stem), defaults if not configured.
    pub fn settings(&self, name: &str) -> PluginSettings {
        self.plugins.get(name).cloned().unwrap_or_default()
    }
}

/// One plugin's settings (`[plugins.plugin.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSettings {
    /// Time between checks; `None`: the plugin's own default interval.
    pub interval: Option<Duration>,
    /// The deadline of one call (check, describe or instantiation).
    pub timeout: Duration,
    /// The most memory one instance may hold, all its linear memories and tables together.
    pub memory_limit_bytes: usize,
    /// The most sockets the plugin may hold open at once.
    pub max_sockets: usize,
    /// The most files and directories the plugin may hold open at once.
    pub max_files: usize,
    /// The largest outcome (value, reason, metrics) a check may return.
    pub max_output_bytes: usize,
    /// A failing row turns the LED red.
    pub counts_toward_led: bool,
    /// A failing check hands over to the buddy (after `trigger_after` failures in a row).
    pub switch_trigger: bool,
    /// Failures in a row before a switch trigger fires (hysteresis).
    pub trigger_after: u32,
    /// Outbound addresses granted (`ip:port`; port 0: any port of that address).
    pub connect: Vec<SocketAddr>,
    /// Directories granted read-only (visible to the plugin under the same path).
    pub read_dirs: Vec<PathBuf>,
    /// Environment variables granted (the host's value is passed on).
    pub env: Vec<String>,
    /// The plugin's own table, as JSON, passed to every check.
    pub config_json: String,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            interval: None,
            timeout: Duration::from_secs(1),
            memory_limit_bytes: 16 << 20,
            max_sockets: 16,
            max_files: 16,
            max_output_bytes: 64 << 10,
            counts_toward_led: true,
            switch_trigger: false,
            trigger_after: 3,
            connect: Vec::new(),
            read_dirs: Vec::new(),
            env: Vec::new(),
            config_json: "{}".into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlugins {
    dir: Option<PathBuf>,
    scan_interval: Option<String>,
    cache_dir: Option<PathBuf>,
    cpu_budget_percent: Option<u32>,
    io_threads: Option<u32>,
    nice: Option<u32>,
    #[serde(default)]
    plugin: BTreeMap<String, RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    interval: Option<String>,
    timeout: Option<String>,
    memory_limit_mib: Option<u32>,
    max_sockets: Option<u32>,
    max_files: Option<u32>,
    max_output_kib: Option<u32>,
    counts_toward_led: Option<bool>,
    switch_trigger: Option<bool>,
    trigger_after: Option<u32>,
    #[serde(default)]
    connect: Vec<String>,
    #[serde(default)]
    read_dirs: Vec<PathBuf>,
    #[serde(default)]
    env: Vec<String>,
    config: Option<toml::Table>,
}

/// Validates the raw section, pushing every mistake onto `errors`; relative paths are taken
/// from `base` (the configuration's folder).
pub fn validate(raw: RawPlugins, base: &Path, errors: &mut Errors) -> PluginsConfig {
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let scan_interval = errors.duration(
        "plugins.scan_interval",
        raw.scan_interval.as_deref(),
        Duration::from_secs(1),
        (Duration::from_millis(50), Duration::from_secs(600)),
    );
    let plugins = raw
        .plugin
        .into_iter()
        .map(|(name, p)| {
            let settings = validate_plugin(&name, p, base, errors);
            (name, settings)
        })
        .collect();
    let cpu_budget_percent = errors.range(
        "plugins.cpu_budget_percent",
        raw.cpu_budget_percent,
        DEFAULT_CPU_BUDGET_PERCENT,
        1..=6400,
    );
    let io_threads = errors.range(
        "plugins.io_threads",
        raw.io_threads,
        DEFAULT_IO_THREADS as u32,
        1..=16,
    );
    let nice = errors.range("plugins.nice", raw.nice, DEFAULT_NICE as u32, 0..=19);
    PluginsConfig {
        dir: raw.dir.map(rel),
        scan_interval,
        cache_dir: raw.cache_dir.map(rel),
        plugins,
        cpu_budget_percent,
        io_threads: io_threads as usize,
        nice: nice as i32,
    }
}

/// One plugin's settings (`[plugins.plugin.<name>]`).
fn validate_plugin(name: &str, p: RawPlugin, base: &Path, errors: &mut Errors) -> PluginSettings {
    let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let at = |key: &str| format!("plugins.plugin.{name}.{key}");
    if !valid_name(name) {
        errors.error(
            format!("plugins.plugin.{name}"),
            format!(
                "\"{name}\" is not a plugin name: 1 to 64 letters, digits, '-' or '_' (the plugin file's stem)"
            ),
        );
    }
    let d = PluginSettings::default();
    let interval = p.interval.as_deref().map(|text| {
        errors.duration(
            &at("interval"),
            Some(text),
            Duration::from_secs(5),
            (Duration::from_millis(100), Duration::from_secs(3600)),
        )
    });
    let timeout = errors.duration(
        &at("timeout"),
        p.timeout.as_deref(),
        d.timeout,
        (Duration::from_millis(1), Duration::from_secs(60)),
    );
    if let Some(i) = interval
        && timeout > i
    {
        errors.error(
            at("timeout"),
            format!(
                "{} is longer than the interval ({}): checks would overlap",
                humantime::format_duration(timeout),
                humantime::format_duration(i)
            ),
        );
    }
    let memory_mib = errors.range(&at("memory_limit_mib"), p.memory_limit_mib, 16, 1..=1024);
    let output_kib = errors.range(&at("max_output_kib"), p.max_output_kib, 64, 1..=16 * 1024);
    let max_sockets = errors.range(&at("max_sockets"), p.max_sockets, 16, 0..=1024);
    let max_files = errors.range(&at("max_files"), p.max_files, 16, 0..=1024);
    let trigger_after = errors.range(
        &at("trigger_after"),
        p.trigger_after,
        d.trigger_after,
        1..=1000,
    );
    let connect = grants(&at("connect"), &p.connect, &at("env"), &p.env, errors);
    let config_json = match p.config {
        Some(table) => serde_json::to_string(&table).unwrap_or_else(|e| {
            errors.error(at("config"), format!("cannot be passed on as JSON: {e}"));
            "{}".into()
        }),
        None => "{}".into(),
    };
    PluginSettings {
        interval,
        timeout,
        memory_limit_bytes: (memory_mib as usize) << 20,
        max_sockets: max_sockets as usize,
        max_files: max_files as usize,
        max_output_bytes: (output_kib as usize) << 10,
        counts_toward_led: p.counts_toward_led.unwrap_or(d.counts_toward_led),
        switch_trigger: p.switch_trigger.unwrap_or(d.switch_trigger),
        trigger_after,
        connect,
        read_dirs: p.read_dirs.into_iter().map(rel).collect(),
        env: p.env,
        config_json,
    }
}

/// A plugin's grants: the addresses it may connect to (returned), and the environment
/// variables it may read (checked).
fn grants(
    connect_at: &str,
    connect: &[String],
    env_at: &str,
    env: &[String],
    errors: &mut Errors,
) -> Vec<SocketAddr> {
    let mut addresses = Vec::new();
    for (i, c) in connect.iter().enumerate() {
        match parse_grant(c) {
            Some(a) => addresses.push(a),
            None => errors.error(
                format!("{connect_at}[{i}]"),
                format!(
                    "\"{c}\" is not ip:port (\"127.0.0.1:8080\"; port 0 or * for any port; no host names: the sandbox has no DNS)"
                ),
            ),
        }
    }
    for (i, key) in env.iter().enumerate() {
        let ok = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            errors.error(
                format!("{env_at}[{i}]"),
                format!("\"{key}\" is not an environment variable name"),
            );
        }
    }
    addresses
}

/// A plugin name: the stem of its file, also the row key `plugin:<name>`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `ip:port`, `ip:0` or `ip:*` (any port).
fn parse_grant(text: &str) -> Option<SocketAddr> {
    if let Some(ip) = text.strip_suffix(":*") {
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        return ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PluginsConfig, Vec<duet_base::config::ConfigError>> {
        let raw: RawPlugins = toml::from_str(text).expect("raw section");
        let mut errors = Errors::new();
        let c = validate(raw, Path::new("/etc/duet"), &mut errors);
        errors.finish(c).map_err(|e| e.0)
    }

    #[test]
    fn plugin_settings_are_validated_with_key_paths() {
        let errors = parse(
            r#"
            dir = "plugins"
            [plugin.db]
            interval = "1s"
            timeout = "2s"
            memory_limit_mib = 0
            connect = ["127.0.0.1:5432", "db.example:5432"]
            env = ["PGHOST", "1BAD"]
            "#,
        )
        .expect_err("invalid");
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "plugins.plugin.db.timeout",
                "plugins.plugin.db.memory_limit_mib",
                "plugins.plugin.db.connect[1]",
                "plugins.plugin.db.env[1]"
            ]
        );
    }

    #[test]
    fn grants_and_plugin_config_are_kept() {
        let c = parse(
            r#"
            dir = "plugins"
            [plugin.web]
            connect = ["127.0.0.1:*", "10.0.0.2:80"]
            read_dirs = ["data"]
            [plugin.web.config]
            url = "http://10.0.0.2/health"
            "#,
        )
        .expect("valid");
        assert_eq!(c.dir, Some(PathBuf::from("/etc/duet/plugins")));
        let web = c.settings("web");
        assert_eq!(web.connect[0], "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(web.read_dirs, [PathBuf::from("/etc/duet/data")]);
        assert_eq!(web.config_json, r#"{"url":"http://10.0.0.2/health"}"#);
        assert_eq!(c.settings("other"), PluginSettings::default());
    }
}
