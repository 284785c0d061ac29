//! The plugins folder, watched: a new, changed or removed `*.wasm` file takes effect while the
//! host runs (a broken replacement keeps the old version running), and one task per plugin
//! runs it on its interval, restarting it with backoff after a fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use duet_core::{Check, Probe, TimestampMs};
use tokio_util::sync::CancellationToken;

use super::config::{PluginSettings, PluginsConfig, valid_name};
use super::sandbox::{Compiled, Fault, Instance, MAX_FILE_BYTES, PluginEngine};
use crate::bindings::probe::duet::probe::types;
use duet_base::lock;

/// The first wait before re-instantiating a faulted plugin; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a plugin's row shows, and what the tick loop reads from it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginStatus {
    /// The instance name (file stem); row key `plugin:<name>`.
    pub name: String,
    /// The plugin's kind and version, from its manifest (empty if it never loaded).
    pub kind: String,
    pub version: String,
    pub file: PathBuf,
    pub check: Check,
    pub value: String,
    /// Failing checks in a row (the checked thing failing; probe faults do not count).
    pub failures: u32,
    pub last_success: Option<TimestampMs>,
    /// The runtime error the plugin is in (deadline, memory, output, trap), if any.
    pub fault: Option<String>,
    /// Checks run since the file was loaded.
    pub checks: u64,
    pub counts_toward_led: bool,
    pub switch_trigger: bool,
    pub trigger_after: u32,
}

/// The rows of all plugins, shared by the loader, the runners and the tick loop.
#[derive(Clone, Default)]
pub struct PluginTable(Arc<Mutex<BTreeMap<String, PluginStatus>>>);

impl PluginTable {
    /// The rows for the core's observations.
    pub fn probes(&self) -> Vec<Probe> {
        lock(&self.0)
            .values()
            .map(|p| Probe {
                key: format!("plugin:{}", p.name),
                label: format!("Plugin {}", p.name),
                status: p.check.clone(),
                value: p.value.clone(),
                counts_toward_led: p.counts_toward_led,
                failures: p.failures,
                last_success: p.last_success,
            })
            .collect()
    }

    /// Distinct plugins in runtime error now (one however many times it failed).
    pub fn faults(&self) -> u32 {
        u32::try_from(lock(&self.0).values().filter(|p| p.fault.is_some()).count())
            .unwrap_or(u32::MAX)
    }

    /// Switch triggers that fire: plugins configured as one whose check failed
    /// `trigger_after` times in a row.
    pub fn triggers(&self) -> Vec<String> {
        lock(&self.0)
            .values()
            .filter(|p| p.switch_trigger && p.failures >= p.trigger_after)
            .map(|p| format!("plugin:{}", p.name))
            .collect()
    }

    /// A copy of every plugin's status.
    pub fn snapshot(&self) -> Vec<PluginStatus> {
        lock(&self.0).values().cloned().collect()
    }

    /// Changes one row; returns whether what the Status window shows changed.
    fn update(&self, name: &str, f: impl FnOnce(&mut PluginStatus)) -> bool {
        let mut all = lock(&self.0);
        let Some(row) = all.get_mut(name) else {
            return false;
        };
        let before = (row.check.clone(), row.value.clone(), row.fault.clone());
        f(row);
        before != (row.check.clone(), row.value.clone(), row.fault.clone())
    }
}

/// Called when a row changes, to wake the tick loop.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// One loaded file and the task running it.
/// A file's size and modification time: a new stamp is a changed file.
type Stamp = (u64, Option<SystemTime>);

struct Running {
    stamp: Stamp,
    sha256: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Watches `config.dir` until `shutdown`; runs every plugin found there.
pub async fn run(
    engine: Arc<PluginEngine>,
    clock: duet_base::Clock,
    config: PluginsConfig,
    table: PluginTable,
    changed: OnChange,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(dir) = config.dir.clone() else {
        return Ok(());
    };
    tracing::info!(dir = %dir.display(), "watching the plugins folder");
    let mut folder = Folder {
        engine,
        clock,
        interval: config.scan_interval,
        config,
        table,
        changed,
        shutdown,
        running: BTreeMap::new(),
    };
    let mut missing_dir_logged = false;
    let mut interval = tokio::time::interval(folder.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = folder.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let found = match scan(&dir).await {
            Ok(f) => {
                missing_dir_logged = false;
                f
            }
            Err(e) => {
                if !missing_dir_logged {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugins folder (plugins.dir); retrying");
                    missing_dir_logged = true;
                }
                BTreeMap::new()
            }
        };
        folder.drop_removed(&found).await;
        for (name, (path, stamp)) in found {
            if folder.running.get(&name).is_some_and(|r| r.stamp == stamp) {
                continue;
            }
            folder.load(name, path, stamp).await;
        }
    }
    for (_, r) in std::mem::take(&mut folder.running) {
        stop(r).await;
    }
    Ok(())
}

/// The plugins folder's watcher: what runs, and what it needs to start more.
struct Folder {
    engine: Arc<PluginEngine>,
    clock: duet_base::Clock,
    interval: std::time::Duration,
    config: PluginsConfig,
    table: PluginTable,
    changed: OnChange,
    shutdown: CancellationToken,
    running: BTreeMap<String, Running>,
}

impl Folder {
    /// Removed files: stop their task, drop their row.
    async fn drop_removed(&mut self, found: &BTreeMap<String, (PathBuf, Stamp)>) {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !found.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = self.running.remove(&name) {
                stop(r).await;
            }
            lock(&self.table.0).remove(&name);
            tracing::info!(plugin = %name, "plugin file removed; plugin stopped");
            (self.changed)();
        }
    }

    /// A new or changed file: load it and run it in place of the old version; a broken one
    /// leaves the old version running (or shows a rejected row).
    async fn load(&mut self, name: String, path: PathBuf, stamp: Stamp) {
        let settings = self.config.settings(&name);
        let compiled = match load_file(&self.engine, &name, &path, &settings).await {
            Ok(compiled) => compiled,
            Err(why) => return self.reject(name, &path, stamp, &settings, why),
        };
        if let Some(r) = self.running.get_mut(&name)
            && r.sha256 == compiled.sha256
        {
            // Touched, not changed.
            r.stamp = stamp;
            return;
        }
        if let Some(old) = self.running.remove(&name) {
            stop(old).await;
        }
        tracing::info!(plugin = %name, kind = %compiled.description.name, version = %compiled.description.version, file = %path.display(), "plugin loaded");
        let sha256 = compiled.sha256.clone();
        let stop = self.shutdown.child_token();
        lock(&self.table.0).insert(name.clone(), fresh_row(&compiled, &settings));
        (self.changed)();
        let task = tokio::spawn(run_plugin(
            self.engine.clone(),
            self.clock,
            Arc::new(compiled),
            settings,
            self.table.clone(),
            self.changed.clone(),
            stop.clone(),
        ));
        self.running.insert(
            name,
            Running {
                stamp,
                sha256,
                stop,
                task: Some(task),
            },
        );
    }

    fn reject(
        &mut self,
        name: String,
        path: &std::path::Path,
        stamp: Stamp,
        settings: &PluginSettings,
        why: String,
    ) {
        let why = format!("{}: {why}", path.display());
        if let Some(r) = self.running.get_mut(&name) {
            // A broken replacement (still being copied, truncated, wrong): the old version
            // keeps running; the file is retried when it changes.
            tracing::error!(plugin = %name, error = %why, "plugin file rejected; the previous version keeps running");
            r.stamp = stamp;
            return;
        }
        tracing::error!(plugin = %name, error = %why, "plugin file rejected");
        lock(&self.table.0).insert(name.clone(), rejected_row(&name, path, &why, settings));
        self.running.insert(
            name,
            Running {
                stamp,
                sha256: String::new(),
                stop: CancellationToken::new(),
                task: None,
            },
        );
        (self.changed)();
    }
}

async fn stop(r: Running) {
    r.stop.cancel();
    if let Some(task) = r.task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "plugin task failed");
    }
}

/// The `*.wasm` files of the folder: name (stem) → (path, (length, modified)).
async fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, (PathBuf, Stamp)>> {
    let mut found = BTreeMap::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        found.insert(
            stem.to_string(),
            (path.clone(), (meta.len(), meta.modified().ok())),
        );
    }
    Ok(found)
}

/// Reads, compiles and validates one file.
pub async fn load_file(
    engine: &PluginEngine,
    name: &str,
    path: &Path,
    settings: &PluginSettings,
) -> Result<Compiled, String> {
    if !valid_name(name) {
        return Err(format!(
            "\"{name}\" is not a plugin name: rename the file to 1 to 64 letters, digits, '-' or '_' plus .wasm"
        ));
    }
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{len} bytes is larger than the {} MiB a plugin may be",
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    engine.load(name, path, &bytes, settings).await
}

fn fresh_row(compiled: &Compiled, settings: &PluginSettings) -> PluginStatus {
    PluginStatus {
        name: compiled.name.clone(),
        kind: compiled.description.name.clone(),
        version: compiled.description.version.clone(),
        file: compiled.file.clone(),
        check: Check::Failing("no check yet".into()),
        value: "Starting".into(),
        failures: 0,
        last_success: None,
        fault: None,
        checks: 0,
        counts_toward_led: settings.counts_toward_led,
        switch_trigger: settings.switch_trigger,
        trigger_after: settings.trigger_after,
    }
}

fn rejected_row(name: &str, path: &Path, why: &str, settings: &PluginSettings) -> PluginStatus {
    PluginStatus {
        name: name.into(),
        kind: String::new(),
        version: String::new(),
        file: path.to_path_buf(),
        check: Check::Failing(format!("not loaded: {why}")),
        value: "Invalid".into(),
        failures: 0,
        last_success: None,
        fault: None,
        checks: 0,
        counts_toward_led: settings.counts_toward_led,
        switch_trigger: false,
        trigger_after: settings.trigger_after,
    }
}

/// Runs one plugin on its interval until `stop`.
async fn run_plugin(
    engine: Arc<PluginEngine>,
    clock: duet_base::Clock,
    compiled: Arc<Compiled>,
    settings: PluginSettings,
    table: PluginTable,
    changed: OnChange,
    stop: CancellationToken,
) {
    let name = compiled.name.clone();
    let every = settings.interval.unwrap_or(Duration::from_millis(u64::from(
        compiled.description.default_interval_ms,
    )));
    let effective =
        super::sandbox::Grants::effective(&compiled.description.capabilities, &settings);
    if !effective.unused.is_empty() {
        tracing::warn!(plugin = %name, unused = ?effective.unused, "granted but not declared by the plugin: not given");
    }
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut instance: Option<Instance> = None;
    let mut backoff = Duration::ZERO;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        if retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            continue;
        }
        let result = match instance.as_mut() {
            Some(i) => i.check(&settings).await,
            None => match compiled.instantiate(&engine, &settings).await {
                Ok(i) => instance.insert(i).check(&settings).await,
                Err(f) => Err(f),
            },
        };
        let now = clock.now();
        let shown = match result {
            Ok((answer, denied)) => {
                backoff = Duration::ZERO;
                retry_at = None;
                table.update(&name, |row| record(row, answer, &denied, now))
            }
            Err(fault) => {
                // The instance may be inconsistent (a trap, a call cut short): start afresh.
                instance = None;
                backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                retry_at = Some(tokio::time::Instant::now() + backoff);
                tracing::error!(plugin = %name, fault = %fault, retry_in = ?backoff, "plugin stopped");
                let runtime_error = fault.is_runtime_error();
                let why = if runtime_error {
                    format!(
                        "plugin fault: {fault}; restarting in {}",
                        humantime::format_duration(backoff)
                    )
                } else {
                    format!(
                        "{fault}; retrying in {}",
                        humantime::format_duration(backoff)
                    )
                };
                table.update(&name, |row| {
                    row.checks += 1;
                    row.check = Check::Failing(why);
                    row.value = "Failing".into();
                    row.fault = runtime_error.then(|| fault.to_string());
                })
            }
        };
        if shown {
            changed();
        }
    }
}

/// Writes a check's answer into the row.
fn record(
    row: &mut PluginStatus,
    answer: Result<types::Outcome, String>,
    denied: &[String],
    now: TimestampMs,
) {
    row.checks += 1;
    row.fault = None;
    let sandbox =
        (!denied.is_empty()).then(|| format!("the sandbox refused: {}", denied.join("; ")));
    match answer {
        Ok(o) => {
            row.value = o.value;
            match o.status {
                types::Status::Ok => {
                    row.check = Check::Ok;
                    row.failures = 0;
                    row.last_success = Some(now);
                }
                types::Status::Failing => {
                    let reason = o.reason.unwrap_or_else(|| "failing".into());
                    row.check = Check::Failing(match sandbox {
                        Some(s) => format!("{s}; the plugin says: {reason}"),
                        None => reason,
                    });
                    row.failures = row.failures.saturating_add(1);
                }
            }
        }
        Err(why) => {
            // The probe itself or its configuration is at fault, not the checked thing: shown,
            // not counted as a failure (so it never fires a switch trigger).
            row.value = "Probe fault".into();
            row.check = Check::Failing(match sandbox {
                Some(s) => format!("probe fault: {s}; the plugin says: {why}"),
                None => format!("probe fault: {why}"),
            });
        }
    }
}

/// What `duet plugin check` found.
pub struct CheckReport {
    pub description: types::Description,
    pub sha256: String,
    /// The capabilities both declared and granted.
    pub grants: super::sandbox::Grants,
    /// The check's answer, or the fault that stopped it.
    pub result: Result<(Result<types::Outcome, String>, Vec<String>), Fault>,
}

/// Validates a plugin file and runs one check with `settings` (`duet plugin check`).
pub async fn check_file(
    path: &Path,
    name: &str,
    settings: &PluginSettings,
) -> anyhow::Result<Result<CheckReport, String>> {
    let engine = PluginEngine::standalone(None)?;
    let compiled = match load_file(&engine, name, path, settings).await {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    let grants = super::sandbox::Grants::effective(&compiled.description.capabilities, settings);
    let result = match compiled.instantiate(&engine, settings).await {
        Ok(mut i) => i.check(settings).await,
        Err(f) => Err(f),
    };
    Ok(Ok(CheckReport {
        description: compiled.description.clone(),
        sha256: compiled.sha256.clone(),
        grants,
        result,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, settings: &PluginSettings) -> PluginStatus {
        PluginStatus {
            switch_trigger: settings.switch_trigger,
            ..rejected_row(name, Path::new("x.wasm"), "", settings)
        }
    }

    fn failing(reason: &str) -> Result<types::Outcome, String> {
        Ok(types::Outcome {
            status: types::Status::Failing,
            value: "Down".into(),
            reason: Some(reason.into()),
            metrics: Vec::new(),
        })
    }

    #[test]
    fn a_switch_trigger_fires_after_its_failures_in_a_row_but_never_on_a_probe_fault() {
        let settings = PluginSettings {
            switch_trigger: true,
            trigger_after: 2,
            ..PluginSettings::default()
        };
        let table = PluginTable::default();
        lock(&table.0).insert("db".into(), row("db", &settings));
        for _ in 0..5 {
            table.update("db", |r| {
                record(r, Err("config.host is missing".into()), &[], 1)
            });
        }
        assert!(
            table.triggers().is_empty(),
            "a probe fault is not the target failing"
        );
        table.update("db", |r| record(r, failing("refused"), &[], 2));
        assert!(
            table.triggers().is_empty(),
            "one failure is below trigger_after"
        );
        table.update("db", |r| record(r, failing("refused"), &[], 3));
        assert_eq!(table.triggers(), ["plugin:db"]);
        table.update("db", |r| {
            record(
                r,
                Ok(types::Outcome {
                    status: types::Status::Ok,
                    value: "Up".into(),
                    reason: None,
                    metrics: Vec::new(),
                }),
                &[],
                4,
            )
        });
        assert!(table.triggers().is_empty(), "a success resets the count");
        assert_eq!(table.probes()[0].last_success, Some(4));
    }

    #[test]
    fn each_plugin_in_runtime_error_counts_once_and_sandbox_refusals_lead_the_reason() {
        let table = PluginTable::default();
        for name in ["a", "b", "c"] {
            lock(&table.0).insert(name.into(), row(name, &PluginSettings::default()));
        }
        for _ in 0..3 {
            table.update("a", |r| {
                r.fault = Some("exceeded its deadline of 1s".into())
            });
        }
        table.update("b", |r| r.fault = Some("trapped".into()));
        assert_eq!(table.faults(), 2);
        table.update("c", |r| {
            record(
                r,
                failing("connect: permission denied"),
                &["connect to 10.0.0.1:80 is not granted".into()],
                1,
            )
        });
        let probes = table.probes();
        assert_eq!(
            probes[2].status,
            Check::Failing("the sandbox refused: connect to 10.0.0.1:80 is not granted; the plugin says: connect: permission denied".into())
        );
        assert_eq!(probes[2].key, "plugin:c");
    }
}
