//! One plugin in its sandbox: compiling (with a cache), validating (exports, WIT version,
//! manifest), and calling it under a per-call deadline, a memory limit and an output limit,
//! with WASI granting only what is both declared and granted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::config::PluginSettings;
use crate::bindings::probe::duet::probe::{host, types};
use crate::bindings::probe::{ProbePlugin, ProbePluginPre};
use crate::guard::Refusals;

/// The export a probe plugin must have, with the WIT version this host speaks.
pub const PROBE_EXPORT: &str = "duet:probe/probe@0.1.0";

/// Epoch ticks (2 ms each) between the yields of a running plugin: a plugin never holds an
/// executor thread for longer than about this.
const YIELD_TICKS: u64 = 5;

/// The largest plugin file read: plugins are a few hundred KiB, and compiling costs about
/// 20 times a file's size in memory and a second per MiB (issue 19 found 56 MB taking 67 s and
/// 1.26 GB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The longest a plugin's compilation is waited for; past it the file is refused (the compile
/// thread's result is dropped when it ends).
pub const COMPILE_DEADLINE: Duration = Duration::from_secs(60);

/// Compilations at once, over all plugins: a burst of new files cannot take every core and
/// the memory of many compilations.
const COMPILES: usize = 2;

/// The engine and linker every plugin shares.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    cache_dir: Option<PathBuf>,
    /// Compiled components by the sha256 of their file: a file copied under several names, or
    /// touched without change, is compiled once.
    compiled: Mutex<std::collections::HashMap<String, Component>>,
    /// Turns to compile: held by the compile thread itself, so that a compilation given up at
    /// its deadline still counts until it ends.
    compiles: Arc<tokio::sync::Semaphore>,
}

/// The most compiled components kept in memory by hash.
const MEMO: usize = 64;

impl PluginEngine {
    /// Plugins on an existing engine (the core runtime's), which must have epoch interruption
    /// on and an epoch ticker running.
    pub fn on(engine: &Engine, cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::guard::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        ProbePlugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;
        Ok(PluginEngine {
            engine: engine.clone(),
            linker,
            cache_dir,
            compiled: Mutex::new(std::collections::HashMap::new()),
            compiles: Arc::new(tokio::sync::Semaphore::new(COMPILES)),
        })
    }

    /// An engine of its own with its epoch ticker (`duet plugin check`, benches).
    pub fn standalone(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        duet_runtime::spawn_epoch_ticker(&engine);
        Self::on(&engine, cache_dir)
    }

    /// Compiles (on a blocking thread, or takes from the caches) and validates a plugin file's
    /// bytes, then asks the plugin to describe itself under its limits.
    pub async fn load(
        &self,
        name: &str,
        file: &Path,
        bytes: &[u8],
        settings: &PluginSettings,
    ) -> Result<Compiled, String> {
        let sha256 = hex(&sha2::Sha256::digest(bytes));
        let memo = lock(&self.compiled).get(&sha256).cloned();
        let component = match memo {
            Some(c) => c,
            None => {
                let (engine, cache) = (self.engine.clone(), self.cache_dir.clone());
                let (bytes, sha) = (bytes.to_vec(), sha256.clone());
                let turn = self
                    .compiles
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| format!("cannot compile: {e}"))?;
                // Copies of one file loaded at once: compiled by the first to get a turn.
                let memo = lock(&self.compiled).get(&sha256).cloned();
                if let Some(c) = memo {
                    drop(turn);
                    return self.validate(name, file, sha256, c, settings).await;
                }
                let compiling = tokio::task::spawn_blocking(move || {
                    let compiled = compile(&engine, cache.as_deref(), &bytes, &sha);
                    drop(turn);
                    compiled
                });
                let c = tokio::time::timeout(COMPILE_DEADLINE, compiling)
                    .await
                    .map_err(|_| {
                        format!(
                            "compiling took longer than {}: refused",
                            humantime::format_duration(COMPILE_DEADLINE)
                        )
                    })?
                    .map_err(|e| format!("the compile task failed: {e}"))??;
                let mut memo = lock(&self.compiled);
                if memo.len() >= MEMO {
                    memo.clear();
                }
                memo.insert(sha256.clone(), c.clone());
                c
            }
        };
        self.validate(name, file, sha256, component, settings).await
    }

    /// Checks a compiled component's exports and imports, then asks it to describe itself.
    async fn validate(
        &self,
        name: &str,
        file: &Path,
        sha256: String,
        component: Component,
        settings: &PluginSettings,
    ) -> Result<Compiled, String> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.iter().any(|e| e == PROBE_EXPORT) {
            let other = exports.iter().find(|e| e.starts_with("duet:probe/probe@"));
            return Err(match other {
                Some(o) => format!(
                    "built against {o}, this host speaks {PROBE_EXPORT}: rebuild it with this duet's SDK"
                ),
                None => format!(
                    "not a duet probe plugin: it does not export {PROBE_EXPORT} (it exports: {})",
                    if exports.is_empty() {
                        "nothing".into()
                    } else {
                        exports.join(", ")
                    }
                ),
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("its imports do not match this host: {e:#}"))?;
        let pre = ProbePluginPre::new(pre)
            .map_err(|e| format!("its exports do not match {PROBE_EXPORT}: {e:#}"))?;
        let mut compiled = Compiled {
            name: name.into(),
            file: file.to_path_buf(),
            sha256,
            pre,
            refusal_log: Arc::default(),
            description: types::Description {
                name: String::new(),
                version: String::new(),
                default_interval_ms: 0,
                capabilities: Vec::new(),
            },
        };
        // The manifest: asked in a sandbox with nothing granted, under the plugin's limits.
        let mut instance = compiled
            .instantiate_with(self, &PluginSettings::default(), settings)
            .await
            .map_err(|e| format!("instantiation failed: {e}"))?;
        let description = instance
            .describe(settings)
            .await
            .map_err(|e| format!("describe failed: {e}"))?;
        validate_description(&description)?;
        compiled.description = description;
        Ok(compiled)
    }
}

/// Compiles a component, or takes it from the cache of compiled plugins.
fn compile(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    sha256: &str,
) -> Result<Component, String> {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let cached = cache_dir.map(|d| d.join(format!("{sha256}-{:016x}.cwasm", h.finish())));
    if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
        // Read into memory, not mapped: a cache file truncated under a running host must not
        // become a SIGBUS.
        let read = std::fs::read(path).map_err(wasmtime::Error::from);
        // SAFETY: the cache holds only files this host serialized itself (written to a
        // temporary name, then renamed), keyed by the sha256 of the source and the engine;
        // wasmtime still checks the header and the engine compatibility.
        match read.and_then(|bytes| unsafe { Component::deserialize(engine, bytes) }) {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %format!("{e:#}"), "unusable plugin cache entry; compiling")
            }
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(|e| format!("not a valid WebAssembly component: {e:#}"))?;
    if let Some(path) = cached
        && let Err(e) = write_cache(&path, &component)
    {
        tracing::warn!(cache = %path.display(), error = %format!("{e:#}"), "failed to cache a compiled plugin");
    }
    Ok(component)
}

fn write_cache(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize().map_err(anyhow::Error::from)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn validate_description(d: &types::Description) -> Result<(), String> {
    if !super::config::valid_name(&d.name) {
        return Err(format!(
            "manifest: name \"{}\" is not 1 to 64 letters, digits, '-' or '_'",
            d.name.escape_debug()
        ));
    }
    let semver = d.version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = semver.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "manifest: version \"{}\" is not semver (1.2.3)",
            d.version.escape_debug()
        ));
    }
    if !(100..=3_600_000).contains(&d.default_interval_ms) {
        return Err(format!(
            "manifest: default interval {} ms is out of range (100 ms to 1 h)",
            d.default_interval_ms
        ));
    }
    if d.capabilities.len() > 64 {
        return Err("manifest: more than 64 capabilities".into());
    }
    Ok(())
}

/// A compiled, validated plugin: ready to instantiate any number of times.
pub struct Compiled {
    /// The instance name: the file's stem (row key `plugin:<name>`).
    pub name: String,
    pub file: PathBuf,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// What the plugin said about itself.
    pub description: types::Description,
    pre: ProbePluginPre<PluginState>,
    /// The log lines of the sandbox's refusals, rate-limited over the plugin's instances.
    refusal_log: Arc<Mutex<crate::guard::RefusalLog>>,
}

impl Compiled {
    /// Creates a live instance with the grants the plugin declared and `settings` grant.
    pub async fn instantiate(
        &self,
        engine: &PluginEngine,
        settings: &PluginSettings,
    ) -> Result<Instance, Fault> {
        self.instantiate_with(engine, settings, settings).await
    }

    /// `grants` decide the sandbox, `limits` the deadline and memory.
    async fn instantiate_with(
        &self,
        engine: &PluginEngine,
        grants: &PluginSettings,
        limits: &PluginSettings,
    ) -> Result<Instance, Fault> {
        let effective = Grants::effective(&self.description.capabilities, grants);
        let refusals = Refusals {
            plugin: self.name.clone(),
            this_call: Arc::new(Mutex::new(Vec::new())),
            log: self.refusal_log.clone(),
        };
        let wasi = effective
            .wasi(&self.name, refusals.clone())
            .map_err(Fault::Grant)?;
        let mut store = Store::new(
            &engine.engine,
            PluginState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemoryLimiter {
                    limit: limits.memory_limit_bytes,
                    held: 0,
                    exceeded: None,
                },
                handles: crate::guard::Handles::new(limits.max_sockets, limits.max_files),
                grants: effective,
                refusals,
                deadline: Instant::now() + limits.timeout,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(YIELD_TICKS))
            }
        });
        store.set_epoch_deadline(YIELD_TICKS);
        let wait = arm(&mut store, limits);
        let _call = duet_runtime::GuestCall::begin();
        let result = tokio::time::timeout(wait, self.pre.instantiate_async(&mut store)).await;
        let plugin = classify(&store, result, limits)?;
        Ok(Instance { store, plugin })
    }
}

/// Arms the deadline and memory limit of one call into the plugin; returns how long the host
/// waits for it. The epoch callback stops guest code at the deadline; the returned wait stops
/// a call blocked in the host (a connect to a silent address) a little later.
fn arm(store: &mut Store<PluginState>, limits: &PluginSettings) -> Duration {
    store.data_mut().deadline = Instant::now() + limits.timeout;
    store.data_mut().limiter.exceeded = None;
    store.data_mut().handles.exceeded = None;
    store.set_epoch_deadline(YIELD_TICKS);
    limits.timeout + Duration::from_millis(50)
}

/// What became of a call: its value, or the fault that stopped it.
fn classify<T>(
    store: &Store<PluginState>,
    result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    limits: &PluginSettings,
) -> Result<T, Fault> {
    match result {
        Err(_) => Err(Fault::Deadline(limits.timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if let Some(desired) = store.data().limiter.exceeded {
                return Err(Fault::Memory {
                    limit: limits.memory_limit_bytes,
                    desired,
                });
            }
            if let Some((what, limit)) = store.data().handles.exceeded {
                return Err(Fault::Handles { what, limit });
            }
            match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => Err(Fault::Deadline(limits.timeout)),
                Some(wasmtime::Trap::UnreachableCodeReached) => Err(Fault::Trap(
                    "wasm `unreachable` executed (a panic or abort in the plugin)".into(),
                )),
                Some(trap) => Err(Fault::Trap(trap.to_string())),
                None => {
                    let text = format!("{e:#}");
                    Err(Fault::Trap(
                        text.lines().next().unwrap_or("trap").to_string(),
                    ))
                }
            }
        }
    }
}

/// A live plugin instance. After a [`Fault`] it must be dropped and re-created.
pub struct Instance {
    store: Store<PluginState>,
    plugin: ProbePlugin,
}

impl Instance {
    /// `describe`, under the limits.
    pub async fn describe(&mut self, limits: &PluginSettings) -> Result<types::Description, Fault> {
        let wait = arm(&mut self.store, limits);
        let call = self
            .plugin
            .duet_probe_probe()
            .call_describe(&mut self.store);
        let _call = duet_runtime::GuestCall::begin();
        let result = tokio::time::timeout(wait, call).await;
        let d = classify(&self.store, result, limits)?;
        let size = d.name.len()
            + d.version.len()
            + d.capabilities
                .iter()
                .map(|c| match c {
                    types::Capability::Outbound(s)
                    | types::Capability::ReadDir(s)
                    | types::Capability::Env(s) => s.len() + 8,
                })
                .sum::<usize>();
        if size > limits.max_output_bytes {
            return Err(Fault::Output {
                bytes: size,
                limit: limits.max_output_bytes,
            });
        }
        Ok(d)
    }

    /// One `check` under the limits: the plugin's answer (`Err`: the probe's own fault), and
    /// what the sandbox refused it during the call.
    pub async fn check(
        &mut self,
        settings: &PluginSettings,
    ) -> Result<(Result<types::Outcome, String>, Vec<String>), Fault> {
        lock(&self.store.data().refusals.this_call).clear();
        let wait = arm(&mut self.store, settings);
        let call = self
            .plugin
            .duet_probe_probe()
            .call_check(&mut self.store, &settings.config_json);
        let _call = duet_runtime::GuestCall::begin();
        let result = tokio::time::timeout(wait, call).await;
        let answer = classify(&self.store, result, settings)?;
        let size = match &answer {
            Ok(o) => {
                o.value.len()
                    + o.reason.as_ref().map_or(0, String::len)
                    + o.metrics.iter().map(|m| m.name.len() + 8).sum::<usize>()
            }
            Err(e) => e.len(),
        };
        if size > settings.max_output_bytes {
            return Err(Fault::Output {
                bytes: size,
                limit: settings.max_output_bytes,
            });
        }
        let denied = std::mem::take(&mut *lock(&self.store.data().refusals.this_call));
        Ok((answer, denied))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    duet_base::lock(m)
}

/// Why a plugin was stopped: a runtime error, reported on its row and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A call ran past its deadline (a loop, or a call stuck waiting).
    #[error("exceeded its deadline of {}", humantime::format_duration(*.0))]
    Deadline(Duration),
    /// The plugin tried to grow its memories and tables, all together, past the limit.
    #[error("grew past its memory limit of {} MiB (asked for {} MiB in all)", .limit >> 20, .desired.div_ceil(1 << 20))]
    Memory { limit: usize, desired: usize },
    /// The plugin tried to hold more sockets or files open than its cap.
    #[error(
        "tried to hold more than {limit} {what} open at once (plugins.plugin.<name>.max_{what})"
    )]
    Handles { what: &'static str, limit: usize },
    /// The answer was larger than allowed.
    #[error("returned {bytes} bytes, more than its output limit of {} KiB", .limit >> 10)]
    Output { bytes: usize, limit: usize },
    /// The plugin trapped (a panic, an unreachable, a bad memory access).
    #[error("trapped: {0}")]
    Trap(String),
    /// A granted capability cannot be set up (a granted directory that does not exist):
    /// the operator's configuration, not the plugin, is at fault.
    #[error("{0}")]
    Grant(String),
}

impl Fault {
    /// A runtime error of the plugin (counted in RTE Count), not a configuration problem.
    pub fn is_runtime_error(&self) -> bool {
        !matches!(self, Fault::Grant(_))
    }
}

/// The capabilities that are both declared by the plugin and granted by the operator.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub connect: Vec<SocketAddr>,
    pub read_dirs: Vec<PathBuf>,
    pub env: Vec<String>,
    /// Grants the plugin did not declare, and declarations not granted (for the log).
    pub unused: Vec<String>,
}

impl Grants {
    /// Declared ∩ granted.
    pub fn effective(declared: &[types::Capability], granted: &PluginSettings) -> Self {
        let mut g = Grants::default();
        for addr in &granted.connect {
            if declared.iter().any(|c| match c {
                types::Capability::Outbound(p) => outbound_matches(p, *addr),
                _ => false,
            }) {
                g.connect.push(*addr);
            } else {
                g.unused.push(format!("connect {addr} (not declared)"));
            }
        }
        for dir in &granted.read_dirs {
            if declared.iter().any(|c| match c {
                types::Capability::ReadDir(p) => p == "*" || dir.starts_with(p),
                _ => false,
            }) {
                g.read_dirs.push(dir.clone());
            } else {
                g.unused
                    .push(format!("read_dir {} (not declared)", dir.display()));
            }
        }
        for key in &granted.env {
            if declared.iter().any(|c| match c {
                types::Capability::Env(p) => p == "*" || p == key,
                _ => false,
            }) {
                g.env.push(key.clone());
            } else {
                g.unused.push(format!("env {key} (not declared)"));
            }
        }
        g
    }

    fn wasi(&self, name: &str, refusals: Refusals) -> Result<WasiCtx, String> {
        let mut b = WasiCtxBuilder::new();
        for key in &self.env {
            if let Ok(value) = std::env::var(key) {
                b.env(key, value);
            }
        }
        for dir in &self.read_dirs {
            let guest = dir.to_string_lossy().into_owned();
            b.preopened_dir(dir, &guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    format!(
                        "granted directory {} cannot be opened ({e}): check plugins.plugin.{name}.read_dirs",
                        dir.display()
                    )
                })?;
        }
        let allowed = self.connect.clone();
        let name = name.to_string();
        // No address granted: no socket can even be created (each try is refused by name).
        b.allow_tcp(!allowed.is_empty())
            .allow_udp(!allowed.is_empty())
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let ok = match usage {
                    // Implicit binds before a connect or send use the wildcard address.
                    SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                        !allowed.is_empty() && addr.ip().is_unspecified() && addr.port() == 0
                    }
                    SocketAddrUse::TcpConnect
                    | SocketAddrUse::UdpSend
                    | SocketAddrUse::UdpReceive => allowed
                        .iter()
                        .any(|g| g.ip() == addr.ip() && (g.port() == 0 || g.port() == addr.port())),
                    SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
                };
                if !ok {
                    let what = match usage {
                        SocketAddrUse::TcpConnect => "connect to",
                        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => "bind",
                        SocketAddrUse::UdpSend => "send to",
                        SocketAddrUse::UdpReceive => "receive from",
                        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => "listen on",
                    };
                    refusals.refuse(format!(
                        "{what} {addr} is not granted (plugins.plugin.{name}.connect)"
                    ));
                }
                Box::pin(async move { ok })
            });
        Ok(b.build())
    }
}

fn outbound_matches(pattern: &str, addr: SocketAddr) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(ip) = pattern.strip_suffix(":*") {
        return ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == addr.ip());
    }
    pattern
        .parse::<SocketAddr>()
        .is_ok_and(|p| p.ip() == addr.ip() && (p.port() == 0 || p.port() == addr.port()))
}

/// State of one plugin's store.
pub struct PluginState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limiter: MemoryLimiter,
    /// The sockets and files the instance holds, against its caps.
    pub(crate) handles: crate::guard::Handles,
    pub(crate) grants: Grants,
    pub(crate) refusals: Refusals,
    /// When the running call must stop.
    deadline: Instant,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    async fn disk_space_of(&mut self, path: String) -> Result<host::DiskSpace, String> {
        // The grant first, on the path as written, before anything on the host is touched:
        // an ungranted path gets one answer whether it exists or not.
        let refused = || format!("{path} is not in a granted directory (read_dirs)");
        let Some(lexical) = normalize(Path::new(&path)) else {
            self.refusals.refuse(format!(
                "disk_space_of {path}: not an absolute path in a granted directory"
            ));
            return Err(refused());
        };
        let dirs: Vec<PathBuf> = self.grants.read_dirs.clone();
        if !dirs
            .iter()
            .any(|d| normalize(d).is_some_and(|d| lexical.starts_with(d)))
        {
            self.refusals.refuse(format!(
                "disk_space_of {path} is not granted (plugins.plugin.{}.read_dirs)",
                self.refusals.plugin
            ));
            return Err(refused());
        }
        // Inside a granted directory: resolved (symbolic links), it must still lie in one.
        let answer = tokio::task::spawn_blocking(move || {
            let resolved = std::fs::canonicalize(&lexical).map_err(Some)?;
            let inside = dirs
                .iter()
                .any(|d| std::fs::canonicalize(d).is_ok_and(|d| resolved.starts_with(d)));
            if !inside {
                return Err(None);
            }
            statvfs(&resolved).map_err(Some)
        })
        .await
        .map_err(|e| format!("{path}: {e}"))?;
        answer.map_err(|e| match e {
            Some(e) => format!("{path}: {e}"),
            None => refused(),
        })
    }
}

/// An absolute path with `.` and `..` taken away lexically (nothing on the host is asked);
/// `None` for a relative path.
fn normalize(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

// The field types differ between targets (u32 or u64): `From` keeps this portable.
#[allow(clippy::useless_conversion)]
fn statvfs(path: &Path) -> std::io::Result<host::DiskSpace> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to writable memory of the
    // right type; statvfs writes only into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let s = unsafe { s.assume_init() };
    let frag = u64::from(s.f_frsize);
    Ok(host::DiskSpace {
        total_bytes: u64::from(s.f_blocks) * frag,
        free_bytes: u64::from(s.f_bfree) * frag,
        available_bytes: u64::from(s.f_bavail) * frag,
    })
}

/// Caps what one instance holds — all its linear memories and tables together, one limit —
/// and remembers a refused growth, so the fault can say so.
struct MemoryLimiter {
    limit: usize,
    /// Bytes held by every memory and table of the instance.
    held: usize,
    exceeded: Option<usize>,
}

/// Bytes counted per table element (a reference).
const TABLE_ELEMENT_BYTES: usize = size_of::<usize>();

impl MemoryLimiter {
    /// A memory or table grows from `current` to `desired` bytes (also called at creation,
    /// from 0).
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = (self.held - current.min(self.held)).saturating_add(desired);
        if total > self.limit {
            self.exceeded = Some(total);
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.limit
            ));
        }
        self.held = total;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    // Counts, besides the bytes: each memory reserves address space even when empty.
    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// The most core instances, memories and tables one plugin instance may create.
const MAX_INSTANCES: usize = 256;
const MAX_MEMORIES: usize = 32;
const MAX_TABLES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_patterns_match_addresses() {
        let a: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert!(outbound_matches("*", a));
        assert!(outbound_matches("127.0.0.1:*", a));
        assert!(outbound_matches("127.0.0.1:0", a));
        assert!(outbound_matches("127.0.0.1:8080", a));
        assert!(!outbound_matches("127.0.0.1:8081", a));
        assert!(!outbound_matches("10.0.0.1:*", a));
    }

    #[test]
    fn one_memory_limit_covers_every_memory_and_table_together() {
        let mut l = MemoryLimiter {
            limit: 16 << 20,
            held: 0,
            exceeded: None,
        };
        // Fifteen memories of 1 MiB, each created from 0: all fit.
        for _ in 0..15 {
            assert!(l.memory_growing(0, 1 << 20, None).expect("fits"));
        }
        // One growth of an existing memory counts only what it adds.
        assert!(
            l.memory_growing(1 << 20, (1 << 20) + 4096, None)
                .expect("fits")
        );
        // A table's elements count too: this one tips it over.
        assert!(l.table_growing(0, 1 << 17, None).is_err());
        assert_eq!(l.exceeded, Some(15 * (1 << 20) + 4096 + (1 << 20)));
    }

    #[test]
    fn paths_are_normalized_without_asking_the_host() {
        assert_eq!(
            normalize(Path::new("/srv/a/../b/./c")),
            Some(PathBuf::from("/srv/b/c"))
        );
        assert_eq!(
            normalize(Path::new("/../../etc")),
            Some(PathBuf::from("/etc"))
        );
        assert_eq!(normalize(Path::new("etc/passwd")), None);
    }

    #[test]
    fn a_capability_must_be_declared_and_granted() {
        let granted = PluginSettings {
            connect: vec!["127.0.0.1:80".parse().expect("addr")],
            read_dirs: vec![PathBuf::from("/var/lib")],
            env: vec!["HOME".into()],
            ..PluginSettings::default()
        };
        let none = Grants::effective(&[], &granted);
        assert!(none.connect.is_empty() && none.read_dirs.is_empty() && none.env.is_empty());
        assert_eq!(none.unused.len(), 3);
        let declared = [
            types::Capability::Outbound("127.0.0.1:*".into()),
            types::Capability::ReadDir("/var".into()),
            types::Capability::Env("PATH".into()),
        ];
        let g = Grants::effective(&declared, &granted);
        assert_eq!(g.connect.len(), 1);
        assert_eq!(g.read_dirs, [PathBuf::from("/var/lib")]);
        assert!(g.env.is_empty(), "HOME is granted but PATH was declared");
    }
}
