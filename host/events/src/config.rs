//! The `[database]` section: the store's URL, its health check, and how the event log is
//! forwarded to the buddy (the "DB Sync Stack"). Raw (serde) then validated, errors naming the
//! key path like every section ([`duet_base::config`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use duet_base::config::Errors;

/// The validated `[database]` section.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://...`, `postgres://...` or `mysql://...` (MariaDB too).
    pub url: String,
    /// The Database row's query: OK when it runs, Failing with the database's error.
    pub health_query: String,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    /// A failing database hands over to the buddy (default: never).
    pub switch_on_failure: bool,
    /// The DB Sync Stack row says Too Large above this many events waiting.
    pub stack_too_large: u64,
    /// Events per forwarded batch.
    pub forward_batch: usize,
    /// Batches sent before their acknowledgement arrives.
    pub forward_in_flight: usize,
    /// How often an idle forwarder checks the buddy (the DB Sync row's liveness).
    pub forward_interval: Duration,
    /// The longest wait between two attempts after failures (backoff doubles up to this).
    pub forward_max_backoff: Duration,
    /// A manual switch waits at most this long for the outbox to drain.
    pub switch_drain_timeout: Duration,
    /// Events older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
    /// The folder of the durable spool used while the local database is down.
    pub spool: PathBuf,
}

impl DatabaseConfig {
    /// The defaults, with the embedded SQLite file and the spool beside the state file.
    pub fn defaults(state_dir: &Path, agent: &str) -> Self {
        DatabaseConfig {
            url: sqlite_url(&state_dir.join(format!("{agent}-events.db"))),
            health_query: "SELECT 1".into(),
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(2),
            switch_on_failure: false,
            stack_too_large: 10_000,
            forward_batch: 1_000,
            forward_in_flight: 4,
            forward_interval: Duration::from_secs(1),
            forward_max_backoff: Duration::from_secs(5),
            switch_drain_timeout: Duration::from_secs(10),
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            spool: state_dir.join(format!("{agent}-events-spool")),
        }
    }
}

/// The sqlx URL of an SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// `[database]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    url: Option<String>,
    health_query: Option<String>,
    health_interval: Option<String>,
    health_timeout: Option<String>,
    switch_on_failure: Option<bool>,
    stack_too_large: Option<u64>,
    forward_batch: Option<usize>,
    forward_in_flight: Option<usize>,
    forward_interval: Option<String>,
    forward_max_backoff: Option<String>,
    switch_drain_timeout: Option<String>,
    retention: Option<String>,
    spool: Option<PathBuf>,
}

/// Validates `[database]`; relative paths are taken from `base`, the defaults put the files
/// beside the state file (`state_dir`).
pub fn validate(
    raw: RawDatabase,
    base: &Path,
    state_dir: &Path,
    agent: &str,
    errors: &mut Errors,
) -> DatabaseConfig {
    let mut c = DatabaseConfig::defaults(state_dir, agent);
    let ms = Duration::from_millis(1);
    let mut dur = |key: &str, value: Option<String>, default: Duration, min: Duration| {
        let path = format!("database.{key}");
        errors.duration(&path, value.as_deref(), default, (min, Duration::MAX))
    };
    c.health_interval = dur(
        "health_interval",
        raw.health_interval,
        c.health_interval,
        10 * ms,
    );
    c.health_timeout = dur("health_timeout", raw.health_timeout, c.health_timeout, ms);
    c.forward_interval = dur(
        "forward_interval",
        raw.forward_interval,
        c.forward_interval,
        10 * ms,
    );
    c.forward_max_backoff = dur(
        "forward_max_backoff",
        raw.forward_max_backoff,
        c.forward_max_backoff,
        10 * ms,
    );
    c.switch_drain_timeout = dur(
        "switch_drain_timeout",
        raw.switch_drain_timeout,
        c.switch_drain_timeout,
        Duration::ZERO,
    );
    c.retention = errors.retention("database.retention", raw.retention.as_deref(), c.retention);
    let mut error = |path: &str, message: String| errors.error(format!("database.{path}"), message);
    if let Some(url) = raw.url {
        let scheme = url.split(':').next().unwrap_or_default();
        if matches!(
            scheme,
            "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb"
        ) {
            c.url = url.replacen("mariadb:", "mysql:", 1);
        } else {
            error(
                "url",
                format!(
                    "\"{scheme}:\" is not a supported database: write sqlite://<file>, postgres://... or mysql://..."
                ),
            );
        }
    }
    if let Some(q) = raw.health_query {
        if q.trim().is_empty() {
            error(
                "health_query",
                "is empty: write a query, e.g. \"SELECT 1\"".into(),
            );
        } else {
            c.health_query = q;
        }
    }
    c.switch_on_failure = raw.switch_on_failure.unwrap_or(c.switch_on_failure);
    c.stack_too_large = raw.stack_too_large.unwrap_or(c.stack_too_large);
    match raw.forward_batch {
        Some(n) if !(1..=10_000).contains(&n) => {
            error("forward_batch", format!("{n} is out of range: 1 to 10000"))
        }
        Some(n) => c.forward_batch = n,
        None => {}
    }
    match raw.forward_in_flight {
        Some(n) if !(1..=64).contains(&n) => {
            error("forward_in_flight", format!("{n} is out of range: 1 to 64"))
        }
        Some(n) => c.forward_in_flight = n,
        None => {}
    }
    if let Some(p) = raw.spool {
        c.spool = if p.is_absolute() { p } else { base.join(p) };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (DatabaseConfig, Vec<duet_base::config::ConfigError>) {
        let raw: RawDatabase = duet_base::config::parse_section(text).expect("toml");
        let mut errors = Errors::new();
        let c = validate(
            raw,
            Path::new("/etc/duet"),
            Path::new("/var/lib/duet"),
            "a",
            &mut errors,
        );
        (c, errors.into_list())
    }

    #[test]
    fn defaults_put_an_embedded_sqlite_beside_the_state_file() {
        let (c, errors) = parse("");
        assert!(errors.is_empty());
        assert_eq!(c.url, "sqlite:///var/lib/duet/a-events.db?mode=rwc");
        assert_eq!(c.spool, Path::new("/var/lib/duet/a-events-spool"));
        assert!(!c.switch_on_failure);
        assert_eq!(c.stack_too_large, 10_000);
    }

    #[test]
    fn bad_values_name_their_key() {
        let (_, errors) = parse(
            "url = \"oracle://x\"\nhealth_interval = \"soon\"\nforward_batch = 0\nhealth_query = \" \"",
        );
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "database.health_interval",
                "database.url",
                "database.health_query",
                "database.forward_batch"
            ]
        );
    }

    #[test]
    fn mariadb_urls_use_the_mysql_driver_and_retention_can_be_forever() {
        let (c, errors) = parse("url = \"mariadb://u@h/db\"\nretention = \"forever\"");
        assert!(errors.is_empty());
        assert_eq!(c.url, "mysql://u@h/db");
        assert_eq!(c.retention, None);
    }
}
