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
use crate::budget::{CpuBudget, thread_cpu};
use duet_base::lock;

/// The first wait before re-instantiating a faulted plugin; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a plugin's row shows, and what the tick loop reads from it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PluginStatus {
    /// The instance name (file stem); row key `plugin:<name>`.
    pub name: String,
    /// The plugin's kind and version, from its manifest (empty if it never loaded).
    pub kind: String,
    pub version: String,
    pub file: PathBuf,
    /// The file is a symbolic link to this, followed (shown in the row's label).
    pub link: Option<PathBuf>,
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
    /// The metrics of the last good check (valid names only, at most [`MAX_METRICS`]).
    pub metrics: Vec<(String, f64)>,
    /// CPU time its checks used, on its thread.
    pub cpu: Duration,
    /// Its interval is stretched by the CPU budget.
    pub slowed: bool,
}

/// The most metrics of one plugin shown in `/metrics`; a plugin's further ones are dropped.
pub const MAX_METRICS: usize = 16;
/// The most plugin-reported series in `/metrics`, all plugins together.
pub const MAX_SERIES: usize = 1024;

/// The rows of all plugins, shared by the loader, the runners and the tick loop.
#[derive(Clone, Default)]
pub struct PluginTable(pub(crate) Arc<Mutex<BTreeMap<String, PluginStatus>>>);

impl PluginTable {
    /// The rows for the core's observations.
    pub fn probes(&self) -> Vec<Probe> {
        lock(&self.0)
            .values()
            .map(|p| Probe {
                key: format!("plugin:{}", p.name),
                label: match &p.link {
                    Some(target) => format!("Plugin {} (link to {})", p.name, target.display()),
                    None => format!("Plugin {}", p.name),
                },
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

    /// The plugins' part of `/metrics` (Prometheus text), labelled with `agent` and each plugin.
    pub fn metrics(&self, agent: &str) -> String {
        use std::fmt::Write as _;
        let rows = self.snapshot();
        let agent = escape(agent);
        let mut out = String::new();
        type Read = fn(&PluginStatus) -> f64;
        let families: [(&str, &str, &str, Read); 4] = [
            (
                "duet_plugin_checks_total",
                "counter",
                "Checks run since the plugin's file was loaded.",
                |p| p.checks as f64,
            ),
            (
                "duet_plugin_cpu_seconds_total",
                "counter",
                "CPU time the plugin's checks used, on its own thread.",
                |p| p.cpu.as_secs_f64(),
            ),
            (
                "duet_plugin_slowed",
                "gauge",
                "1 while the plugin's interval is stretched by the plugins' CPU budget.",
                |p| f64::from(u8::from(p.slowed)),
            ),
            (
                "duet_plugin_fault",
                "gauge",
                "1 while the plugin is in runtime error.",
                |p| f64::from(u8::from(p.fault.is_some())),
            ),
        ];
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in &rows {
                let _ = writeln!(
                    out,
                    "{name}{{agent=\"{agent}\",plugin=\"{}\"}} {}",
                    p.name,
                    read(p)
                );
            }
        }
        let name = "duet_plugin_metric";
        let _ = writeln!(
            out,
            "# HELP {name} A number a plugin measured (label metric: its name; at most {MAX_METRICS} per plugin).\n# TYPE {name} gauge"
        );
        for (p, (metric, value)) in rows
            .iter()
            .flat_map(|p| p.metrics.iter().map(move |m| (p, m)))
            .take(MAX_SERIES)
        {
            let _ = writeln!(
                out,
                "{name}{{agent=\"{agent}\",plugin=\"{}\",metric=\"{metric}\"}} {value}",
                p.name
            );
        }
        out
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
    /// Resolves when the plugin's thread ended.
    task: Option<tokio::sync::oneshot::Receiver<()>>,
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
        budget: Arc::new(CpuBudget::new(config.cpu_budget_percent)),
        engine,
        clock,
        interval: config.scan_interval,
        config,
        table,
        changed,
        shutdown,
        running: BTreeMap::new(),
        pending: BTreeMap::new(),
    };
    let mut missing_dir_logged = false;
    let mut interval = tokio::time::interval(folder.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = folder.shutdown.cancelled() => break,
            _ = interval.tick() => {}
        }
        let (found, keep) = match scan(&dir).await {
            Ok(f) => {
                missing_dir_logged = false;
                f
            }
            Err(e) => {
                // A folder that cannot be read (gone, or no descriptor left) says nothing
                // about its plugins: the running ones keep running.
                if !missing_dir_logged {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugins folder (plugins.dir); the loaded plugins keep running; retrying");
                    missing_dir_logged = true;
                }
                continue;
            }
        };
        folder.drop_removed(&found, &keep).await;
        for (name, entry) in found {
            let current = |stamp: &Stamp| *stamp == entry.stamp;
            if folder.running.get(&name).is_some_and(|r| current(&r.stamp))
                || folder
                    .pending
                    .get(&name)
                    .is_some_and(|p| current(&p.entry.stamp))
            {
                continue;
            }
            folder.start_load(name, entry);
        }
        folder.finish_loads().await;
    }
    for (_, p) in std::mem::take(&mut folder.pending) {
        p.task.abort();
    }
    for (_, r) in std::mem::take(&mut folder.running) {
        stop(r).await;
    }
    Ok(())
}

/// A file being read and compiled, off the folder's loop: a slow one delays no other.
struct Pending {
    entry: Entry,
    task: tokio::task::JoinHandle<Result<Compiled, String>>,
}

/// The plugins folder's watcher: what runs, and what it needs to start more.
struct Folder {
    budget: Arc<CpuBudget>,
    engine: Arc<PluginEngine>,
    clock: duet_base::Clock,
    interval: std::time::Duration,
    config: PluginsConfig,
    table: PluginTable,
    changed: OnChange,
    shutdown: CancellationToken,
    running: BTreeMap<String, Running>,
    pending: BTreeMap<String, Pending>,
}

impl Folder {
    /// Starts reading and compiling a new or changed file (in place of an older such start).
    fn start_load(&mut self, name: String, entry: Entry) {
        let engine = self.engine.clone();
        let settings = self.config.settings(&name);
        let (n, path) = (name.clone(), entry.path.clone());
        let task = tokio::spawn(async move { load_file(&engine, &n, &path, &settings).await });
        if let Some(old) = self.pending.insert(name, Pending { entry, task }) {
            old.task.abort();
        }
    }

    /// Takes the loads that finished into service.
    async fn finish_loads(&mut self) {
        let done: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.task.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for name in done {
            let Some(p) = self.pending.remove(&name) else {
                continue;
            };
            let loaded = p
                .task
                .await
                .unwrap_or_else(|e| Err(format!("the load task failed: {e}")));
            self.load(name, p.entry, loaded).await;
        }
    }

    /// Removed files: stop their task, drop their row.
    async fn drop_removed(&mut self, found: &BTreeMap<String, Entry>, keep: &[String]) {
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !found.contains_key(*n) && !keep.contains(n))
            .cloned()
            .collect();
        self.pending.retain(|n, p| {
            let kept = found.contains_key(n) || keep.contains(n);
            if !kept {
                p.task.abort();
            }
            kept
        });
        for name in gone {
            if let Some(r) = self.running.remove(&name) {
                stop(r).await;
            }
            lock(&self.table.0).remove(&name);
            tracing::info!(plugin = %name, "plugin file removed; plugin stopped");
            (self.changed)();
        }
    }

    /// A new or changed file, loaded: run it in place of the old version; a broken one leaves
    /// the old version running (or shows a rejected row).
    async fn load(&mut self, name: String, entry: Entry, loaded: Result<Compiled, String>) {
        let Entry { path, stamp, link } = entry;
        let settings = self.config.settings(&name);
        let compiled = match (loaded, &link) {
            (Ok(compiled), _) => compiled,
            (Err(why), Some(target)) => {
                let why = format!(
                    "a symbolic link to {}, not followed: {why}",
                    target.display()
                );
                return self.reject(name, &path, stamp, &settings, why);
            }
            (Err(why), None) => return self.reject(name, &path, stamp, &settings, why),
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
        tracing::info!(plugin = %name, kind = %compiled.description.name, version = %compiled.description.version, file = %path.display(), link = ?link, "plugin loaded");
        let sha256 = compiled.sha256.clone();
        let stop = self.shutdown.child_token();
        let row = PluginStatus {
            link,
            ..fresh_row(&compiled, &settings)
        };
        lock(&self.table.0).insert(name.clone(), row);
        (self.changed)();
        let runner = Runner {
            engine: self.engine.clone(),
            clock: self.clock,
            compiled: Arc::new(compiled),
            settings,
            table: self.table.clone(),
            changed: self.changed.clone(),
            budget: self.budget.clone(),
            stop: stop.clone(),
        };
        let task =
            crate::budget::spawn(&name, self.config.io_threads, self.config.nice, move || {
                runner.run()
            });
        let task = match task {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "cannot start the plugin's thread");
                self.table.update(&name, |row| {
                    row.check = Check::Failing(format!(
                        "cannot start its thread: {e}; retried when the file changes"
                    ));
                    row.value = "Failing".into();
                });
                None
            }
        };
        self.running.insert(
            name,
            Running {
                stamp,
                sha256,
                stop,
                task,
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

/// How long a stopped plugin's thread gets to end (its running call is cut at its deadline).
const STOP_WAIT: Duration = Duration::from_secs(5);

async fn stop(r: Running) {
    r.stop.cancel();
    if let Some(task) = r.task
        && tokio::time::timeout(STOP_WAIT, task).await.is_err()
    {
        tracing::error!("a stopped plugin's thread did not end in time: abandoned");
    }
}

/// One `*.wasm` entry of the folder.
struct Entry {
    path: PathBuf,
    stamp: Stamp,
    /// Where a symbolic link points (followed when it leads to a regular file).
    link: Option<PathBuf>,
}

/// The `*.wasm` entries of the folder by name (stem); what is not a regular file is listed too,
/// so that loading it refuses it with a row. An entry that cannot be looked at keeps the
/// plugin of that name as it is (`keep`).
async fn scan(dir: &Path) -> std::io::Result<(BTreeMap<String, Entry>, Vec<String>)> {
    let mut found = BTreeMap::new();
    let mut keep = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Ok(meta) = entry.metadata().await else {
            keep.push(stem.to_string());
            continue;
        };
        let (meta, link) = if meta.file_type().is_symlink() {
            let target = tokio::fs::read_link(&path).await.unwrap_or_default();
            // The target's stamp, so that a changed target is a changed plugin.
            (
                tokio::fs::metadata(&path).await.unwrap_or(meta),
                Some(target),
            )
        } else {
            (meta, None)
        };
        found.insert(
            stem.to_string(),
            Entry {
                path: path.clone(),
                stamp: (meta.len(), meta.modified().ok()),
                link,
            },
        );
    }
    Ok((found, keep))
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
    let file = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || read_regular(&file, MAX_FILE_BYTES))
        .await
        .map_err(|e| format!("cannot read: {e}"))??;
    engine.load(name, path, &bytes, settings).await
}

/// Reads a regular file of at most `max` bytes. What is not a regular file (a FIFO, a device,
/// a socket, a directory; through a symbolic link too) is refused before it is opened, and
/// opened without blocking in case it was swapped since; a file growing while read is cut at
/// `max` and refused.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let regular = |meta: &std::fs::Metadata| -> Result<(), String> {
        if !meta.is_file() {
            return Err(format!(
                "{} is {}, not a regular file: refused",
                path.display(),
                file_kind(&meta.file_type())
            ));
        }
        if meta.len() > max {
            return Err(format!(
                "{} bytes is larger than the {} MiB a plugin may be",
                meta.len(),
                max >> 20
            ));
        }
        Ok(())
    };
    regular(&std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    regular(&file.metadata().map_err(|e| format!("cannot read: {e}"))?)?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "larger than the {} MiB a plugin may be (it grew while read)",
            max >> 20
        ));
    }
    Ok(bytes)
}

/// What a file is, for a refusal.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// A label value for Prometheus.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A plugin's metrics as shown: valid names (`[a-z0-9_]`, 1 to 64), finite values, at most
/// [`MAX_METRICS`], first come first kept.
fn shown_metrics(metrics: Vec<types::Metric>) -> Vec<(String, f64)> {
    let mut shown: Vec<(String, f64)> = Vec::new();
    for m in metrics {
        let valid = !m.name.is_empty()
            && m.name.len() <= 64
            && m.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid && m.value.is_finite() && !shown.iter().any(|(n, _)| *n == m.name) {
            shown.push((m.name, m.value));
        }
        if shown.len() == MAX_METRICS {
            break;
        }
    }
    shown
}

fn fresh_row(compiled: &Compiled, settings: &PluginSettings) -> PluginStatus {
    PluginStatus {
        name: compiled.name.clone(),
        kind: compiled.description.name.clone(),
        version: compiled.description.version.clone(),
        file: compiled.file.clone(),
        link: None,
        check: Check::Failing("no check yet".into()),
        value: "Starting".into(),
        failures: 0,
        last_success: None,
        fault: None,
        checks: 0,
        counts_toward_led: settings.counts_toward_led,
        switch_trigger: settings.switch_trigger,
        trigger_after: settings.trigger_after,
        metrics: Vec::new(),
        cpu: Duration::ZERO,
        slowed: false,
    }
}

pub(crate) fn rejected_row(
    name: &str,
    path: &Path,
    why: &str,
    settings: &PluginSettings,
) -> PluginStatus {
    PluginStatus {
        name: name.into(),
        kind: String::new(),
        version: String::new(),
        file: path.to_path_buf(),
        link: None,
        check: Check::Failing(format!("not loaded: {why}")),
        value: "Invalid".into(),
        failures: 0,
        last_success: None,
        fault: None,
        checks: 0,
        counts_toward_led: settings.counts_toward_led,
        switch_trigger: false,
        trigger_after: settings.trigger_after,
        metrics: Vec::new(),
        cpu: Duration::ZERO,
        slowed: false,
    }
}

/// One plugin's task: runs it on its interval, within its share of the CPU budget, until
/// `stop`.
struct Runner {
    engine: Arc<PluginEngine>,
    clock: duet_base::Clock,
    compiled: Arc<Compiled>,
    settings: PluginSettings,
    table: PluginTable,
    changed: OnChange,
    budget: Arc<CpuBudget>,
    stop: CancellationToken,
}

impl Runner {
    async fn run(self) {
        let name = self.compiled.name.clone();
        self.checks(&name).await;
        self.budget.remove(&name);
    }

    async fn checks(&self, name: &str) {
        let (compiled, settings) = (&self.compiled, &self.settings);
        let every = settings.interval.unwrap_or(Duration::from_millis(u64::from(
            compiled.description.default_interval_ms,
        )));
        let effective =
            super::sandbox::Grants::effective(&compiled.description.capabilities, settings);
        if !effective.unused.is_empty() {
            tracing::warn!(plugin = %name, unused = ?effective.unused, "granted but not declared by the plugin: not given");
        }
        let mut instance: Option<Instance> = None;
        let mut backoff = Duration::ZERO;
        let mut cpu_per_check: Option<Duration> = None;
        let mut was_slowed = false;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
            let started = tokio::time::Instant::now();
            let cpu_before = thread_cpu();
            let result = match instance.as_mut() {
                Some(i) => i.check(settings).await,
                None => match compiled.instantiate(&self.engine, settings).await {
                    Ok(i) => instance.insert(i).check(settings).await,
                    Err(f) => Err(f),
                },
            };
            let cpu = thread_cpu().saturating_sub(cpu_before);
            let average = crate::budget::average(cpu_per_check, cpu);
            cpu_per_check = Some(average);
            let share = self.budget.schedule(name, average, every);
            if share.slowed.is_some() != was_slowed {
                was_slowed = share.slowed.is_some();
                match &share.slowed {
                    Some(why) => tracing::warn!(plugin = %name, "{why}"),
                    None => {
                        tracing::info!(plugin = %name, "back to its own interval: within its share of the CPU budget")
                    }
                }
            }
            next = started + share.interval;
            let now = self.clock.now();
            let shown = match result {
                Ok((answer, denied)) => {
                    backoff = Duration::ZERO;
                    self.table.update(name, |row| {
                        record(row, answer, &denied, now);
                        row.cpu += cpu;
                        row.slowed = share.slowed.is_some();
                        if let Some(why) = &share.slowed {
                            row.value = format!("{} ({why})", row.value);
                        }
                    })
                }
                Err(fault) => {
                    // The instance may be inconsistent (a trap, a call cut short): start afresh.
                    instance = None;
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    next = next.max(tokio::time::Instant::now() + backoff);
                    tracing::error!(plugin = %name, fault = %fault, retry_in = ?backoff, "plugin stopped");
                    self.table.update(name, |row| {
                        faulted(row, &fault, backoff);
                        row.cpu += cpu;
                        row.slowed = share.slowed.is_some();
                    })
                }
            };
            if shown {
                (self.changed)();
            }
        }
    }
}

/// Writes a fault into the row.
fn faulted(row: &mut PluginStatus, fault: &Fault, backoff: Duration) {
    let runtime_error = fault.is_runtime_error();
    let backoff = humantime::format_duration(backoff);
    row.checks += 1;
    row.check = Check::Failing(if runtime_error {
        format!("plugin fault: {fault}; restarting in {backoff}")
    } else {
        format!("{fault}; retrying in {backoff}")
    });
    row.value = "Failing".into();
    row.fault = runtime_error.then(|| fault.to_string());
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
            row.metrics = shown_metrics(o.metrics);
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
    fn only_regular_files_within_the_size_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.wasm");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo, 1 << 20).expect_err("a FIFO");
        assert!(
            err.ends_with("is a FIFO, not a regular file: refused"),
            "{err}"
        );
        let zero = dir.path().join("zero.wasm");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let err = read_regular(&zero, 1 << 20).expect_err("a device");
        assert!(err.contains("is a character device"), "{err}");
        let big = dir.path().join("big.wasm");
        std::fs::write(&big, vec![0u8; 2 << 20]).expect("write");
        let err = read_regular(&big, 1 << 20).expect_err("too large");
        assert!(err.contains("larger than the 1 MiB"), "{err}");
        std::fs::write(&big, b"\0asm").expect("write");
        assert_eq!(read_regular(&big, 1 << 20).expect("a small file"), b"\0asm");
    }

    #[test]
    fn plugin_metrics_keep_valid_names_and_are_bounded() {
        let m = |name: &str, value: f64| types::Metric {
            name: name.into(),
            value,
        };
        let mut all = vec![
            m("ok_1", 1.0),
            m("Bad", 2.0),
            m("x\"}", 3.0),
            m("nan", f64::NAN),
            m("ok_1", 4.0),
        ];
        all.extend((0..40).map(|i| m(&format!("m{i}"), 0.0)));
        let shown = shown_metrics(all);
        assert_eq!(shown.len(), MAX_METRICS);
        assert_eq!(shown[0], ("ok_1".to_string(), 1.0));
        assert!(shown.iter().all(|(n, _)| n == "ok_1" || n.starts_with('m')));
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
