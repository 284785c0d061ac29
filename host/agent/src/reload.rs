//! Configuration reload (SIGHUP, `duet reload`, `POST /api/v1/reload`). The file is read and
//! validated off the decision path, whole: a file with any error is refused and the running
//! configuration kept. A valid one gives the kernel its sections ([`Kernel::reload`]: the
//! tick loop takes the live settings at its next tick); every other difference (the kernel's
//! settings read once at start, and the other sections, compared as written) is named as
//! waiting for a restart, in the log, the event log and the API.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use duet_base::{Alarms, Severity, lock};
use duet_core::api::{Reload, Reloads};
use duet_kernel::Kernel;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The sections the kernel owns: [`Kernel::reload`] compares them itself, value by value.
const KERNEL_SECTIONS: &[&str] = &[
    "agent",
    "buddy",
    "peer",
    "sync",
    "core",
    "status",
    "failover",
    "heartbeat",
    "state",
    "log",
];

/// How long a reload waits for the tick loop to apply what it changed (a tick is 250 ms by
/// default; the loop also wakes at once for it).
const IN_FORCE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Where an agent's configuration comes from, for reloads.
pub struct ReloadFrom {
    /// The configuration file.
    pub path: PathBuf,
    /// Its text as the agent started with it.
    pub text: String,
    /// What the command line changed in the file's settings (`duet run --core`), applied to
    /// each reloaded configuration too.
    pub adjust: Box<dyn Fn(&mut Config) + Send + Sync>,
    /// Reload requests (who asked: `SIGHUP`), besides the API's.
    pub requests: mpsc::Receiver<String>,
}

/// Reloads the configuration file into a running agent.
pub(crate) struct Reloader {
    path: PathBuf,
    adjust: Box<dyn Fn(&mut Config) + Send + Sync>,
    /// The file as started: the sections beside the kernel's are compared with it.
    started: toml::Table,
    kernel: Arc<Kernel>,
    alarms: Arc<dyn Alarms>,
    reloads: Mutex<Reloads>,
    /// One reload at a time: each compares with what the one before left.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        from: ReloadFrom,
        kernel: Arc<Kernel>,
        alarms: Arc<dyn Alarms>,
    ) -> (Arc<Reloader>, mpsc::Receiver<String>) {
        let reloader = Reloader {
            // Validated at start: the text parses.
            started: from.text.parse().unwrap_or_default(),
            path: from.path,
            adjust: from.adjust,
            kernel,
            alarms,
            reloads: Mutex::default(),
            one_at_a_time: tokio::sync::Mutex::new(()),
        };
        (Arc::new(reloader), from.requests)
    }

    /// Serves reload requests until `stop`.
    pub(crate) async fn serve(
        self: Arc<Self>,
        mut requests: mpsc::Receiver<String>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                by = requests.recv() => match by {
                    Some(by) => { self.reload_now(by).await; }
                    None => { stop.cancelled().await; return Ok(()); }
                },
            }
        }
    }

    /// Reads, validates and hands over the file; the outcome, also logged and raised.
    async fn reload_now(&self, by: String) -> Reload {
        let _one = self.one_at_a_time.lock().await;
        let at = self.kernel.clock().now();
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || crate::config::read(&path))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        let file = self.path.display();
        let outcome = match read {
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(%file, %by, %error, "configuration reload refused: the running configuration is kept");
                // The event log is readable without a token: it names the keys, never the text
                // (a syntax error quotes its line, which may hold a secret).
                self.alarms
                    .raise(Severity::Error, "config_reload_refused", refusal(&error));
                Reload {
                    at,
                    by,
                    error: Some(error),
                    ..Reload::default()
                }
            }
            Ok((mut config, text)) => {
                (self.adjust)(&mut config);
                let changes = self.kernel.reload(&config.kernel);
                // Answered once in force, so an operator's next step (a key rotation's) can
                // count on it; a loop that does not come round in time applies it later.
                if !changes.applied.is_empty() && !self.kernel.reloaded(IN_FORCE_WITHIN).await {
                    tracing::warn!(%file, "the decision loop has not applied the reloaded settings yet; it will at its next tick");
                }
                let mut restart = changes.restart;
                let table: toml::Table = text.parse().unwrap_or_default();
                restart.extend(other_sections(&self.started, &table));
                let applied = changes.applied;
                tracing::info!(%file, %by, applied = ?applied, "configuration reloaded");
                if !restart.is_empty() {
                    tracing::warn!(%file, keys = ?restart, "changed settings wait for a restart: {}", restart.join(", "));
                }
                self.alarms.raise(
                    Severity::Info,
                    "config_reloaded",
                    summary(&applied, &restart),
                );
                Reload {
                    at,
                    by,
                    error: None,
                    applied,
                    restart,
                }
            }
        };
        let mut reloads = lock(&self.reloads);
        reloads.last = Some(outcome.clone());
        if outcome.error.is_none() {
            reloads.last_applied = Some(outcome.clone());
        }
        outcome
    }
}

impl Reloader {
    /// `/metrics`: whether the last reload was refused, and how many changed settings wait for
    /// a restart (as of the last reload taken). `agent` is a validated name (no quoting needed).
    pub(crate) fn metrics(&self, agent: &str) -> String {
        let reloads = lock(&self.reloads);
        let refused = reloads.last.as_ref().is_some_and(|r| r.error.is_some());
        let pending = reloads.last_applied.as_ref().map_or(0, |r| r.restart.len());
        format!(
            "# HELP duet_config_reload_refused 1 when the last configuration reload was refused (the running configuration was kept).\n\
             # TYPE duet_config_reload_refused gauge\n\
             duet_config_reload_refused{{agent=\"{agent}\"}} {}\n\
             # HELP duet_config_restart_pending Changed settings that wait for a restart, as of the last reload taken.\n\
             # TYPE duet_config_restart_pending gauge\n\
             duet_config_restart_pending{{agent=\"{agent}\"}} {pending}\n",
            u8::from(refused)
        )
    }
}

impl duet_api::Reloader for Reloader {
    fn reload(
        &self,
        by: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reload> + Send + '_>> {
        Box::pin(self.reload_now(by))
    }

    fn reloads(&self) -> Reloads {
        lock(&self.reloads).clone()
    }
}

/// The event log's line for a refused reload: the keys the errors name (each error line is
/// `<key>: <message>`), not the messages.
fn refusal(error: &str) -> String {
    let mut keys: Vec<&str> = error
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": ").map(|(key, _)| key.trim()))
        .collect();
    keys.dedup();
    let what = if keys.is_empty() {
        "the file could not be read".to_string()
    } else {
        format!("errors at {}", keys.join(", "))
    };
    format!(
        "Configuration reload refused, the running configuration is kept: {what} (the messages: the agent's log, GET /api/v1/reload)"
    )
}

/// The event log's line for a reload taken.
fn summary(applied: &[String], restart: &[String]) -> String {
    let mut line = if applied.is_empty() {
        "Configuration reloaded: no live setting changed".to_string()
    } else {
        format!("Configuration reloaded: {} applied", applied.join(", "))
    };
    if !restart.is_empty() {
        line.push_str(&format!("; waiting for a restart: {}", restart.join(", ")));
    }
    line
}

/// The keys of the sections beside the kernel's that differ between two files, as written
/// (`api.listen`, `vip[0].address`); none of them changes before a restart.
fn other_sections(started: &toml::Table, now: &toml::Table) -> Vec<String> {
    let mut keys: Vec<&String> = started.keys().chain(now.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys
        .into_iter()
        .filter(|k| !KERNEL_SECTIONS.contains(&k.as_str()))
    {
        differing(started.get(key), now.get(key), key.clone(), &mut out);
    }
    out
}

fn differing(
    a: Option<&toml::Value>,
    b: Option<&toml::Value>,
    path: String,
    out: &mut Vec<String>,
) {
    use toml::Value::{Array, Table};
    match (a, b) {
        (Some(Table(x)), Some(Table(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                differing(x.get(k), y.get(k), format!("{path}.{k}"), out);
            }
        }
        (Some(Array(x)), Some(Array(y)))
            if x.len() == y.len() && x.iter().any(toml::Value::is_table) =>
        {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differing(Some(x), Some(y), format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_sections_name_each_key_written_differently_and_skip_the_kernels() {
        let started: toml::Table = r#"
            [agent]
            name = "a"
            [api]
            listen = "127.0.0.1:7101"
            [[api.token]]
            name = "ops"
            rights = ["switch"]
            [[vip]]
            address = "10.0.0.10/24"
        "#
        .parse()
        .unwrap();
        let now: toml::Table = r#"
            [agent]
            name = "b"
            [api]
            listen = "127.0.0.1:7101"
            [[api.token]]
            name = "ops"
            rights = ["switch", "reload"]
            [[vip]]
            address = "10.0.0.11/24"
            [nats]
            url = "nats://127.0.0.1:4222"
        "#
        .parse()
        .unwrap();
        assert_eq!(
            other_sections(&started, &now),
            ["api.token[0].rights", "nats", "vip[0].address"]
        );
        assert!(other_sections(&started, &started).is_empty());
    }

    #[test]
    fn a_refusal_names_the_keys_but_not_the_lines_they_quote() {
        let error = "invalid configuration /etc/duet/duet.toml:\n(top level): TOML parse error at line 3, column 12 | 3 | pair_key = \"s3cret | ^ unterminated string\nheartbeat[0].interval: \"fast\" is not a duration";
        let line = refusal(error);
        assert_eq!(
            line,
            "Configuration reload refused, the running configuration is kept: errors at (top level), heartbeat[0].interval (the messages: the agent's log, GET /api/v1/reload)"
        );
        assert!(!line.contains("s3cret"));
        assert!(
            refusal("failed to read duet.toml: No such file or directory")
                .contains("the file could not be read")
        );
    }

    #[test]
    fn the_summary_says_what_was_taken_and_what_waits() {
        assert_eq!(
            summary(&["heartbeat[0].interval".into()], &["core.tick".into()]),
            "Configuration reloaded: heartbeat[0].interval applied; waiting for a restart: core.tick"
        );
        assert_eq!(
            summary(&[], &[]),
            "Configuration reloaded: no live setting changed"
        );
    }
}
