//! Runs the core component: one wasmtime engine, the embedded core.wasm and at most one core
//! loaded from a file. Every call has a deadline (epoch interruption) and a memory limit; when
//! the loaded core traps or overruns, the embedded one answers the same call and takes over.
//! [`watch_core_file`] loads `core.path` at start and whenever it changes.

#![warn(clippy::too_many_lines)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use duet_core::wit::WitInto;
use duet_core::{
    Columns, Decision, Input, MachineState, Observations, PairReport, ReceivedReport, RulesConfig,
    TimestampMs,
};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings;
mod watch;

pub use watch::{CoreEvent, watch_core_file};

use crate::bindings::{Core, CorePre};
use duet_base::lock;

/// The core.wasm built from this workspace, embedded at build time.
pub static EMBEDDED_CORE: &[u8] = include_bytes!(env!("DUET_EMBEDDED_CORE"));

/// The exports a core component must have.
pub const REQUIRED_EXPORTS: [&str; 2] = ["duet:core/rules@0.1.0", "duet:core/failover@0.1.0"];

/// How often the engine's epoch advances; deadlines are counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Limits of every core call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a single call may run.
    pub deadline: Duration,
    /// Largest linear memory the core may grow to, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
        }
    }
}

/// Where a core came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreOrigin {
    /// The core.wasm embedded in this binary.
    Embedded,
    /// A core.wasm loaded from this file.
    File(PathBuf),
    /// duet-core compiled into the host: the last resort if the embedded core.wasm fails too.
    Native,
}

impl std::fmt::Display for CoreOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreOrigin::Embedded => f.write_str("embedded core.wasm"),
            CoreOrigin::File(p) => write!(f, "core.wasm from {}", p.display()),
            CoreOrigin::Native => f.write_str("native duet-core"),
        }
    }
}

/// Why a core was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a valid component at all.
    #[error("not a valid WebAssembly component: {0:#}")]
    Invalid(anyhow::Error),
    /// A component, but not a duet core.
    #[error("the component does not export {missing} (it exports: {exports})")]
    MissingExport { missing: String, exports: String },
    /// The exports exist but their types do not match this host's WIT.
    #[error("the component's exports do not match duet:core@0.1.0: {0:#}")]
    Mismatch(anyhow::Error),
}

/// A value, which core produced it, and which core failed on this same call, if any.
#[derive(Debug, Clone)]
pub struct Answered<T> {
    pub value: T,
    pub by: CoreOrigin,
    /// The loaded core that failed this call (and was replaced), with the reason.
    pub failed: Option<(CoreOrigin, String)>,
}

/// State of one store: WASI with nothing granted, plus the limits.
struct CoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for CoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled, validated core and its live instance (re-created after any failure).
pub struct LoadedCore {
    origin: CoreOrigin,
    pre: CorePre<CoreState>,
    live: Mutex<Option<(Store<CoreState>, Core)>>,
}

/// The engine, the embedded core and the core loaded from a file, if any.
pub struct CoreRuntime {
    engine: Engine,
    linker: Linker<CoreState>,
    limits: Limits,
    embedded: LoadedCore,
    loaded: Mutex<Option<Arc<LoadedCore>>>,
    /// The last loaded core that failed and was replaced, with why: a runtime error until a
    /// new core is installed.
    fault: Mutex<Option<(CoreOrigin, String)>>,
    /// How many calls a loaded core failed (trap, deadline, memory) since start.
    fallbacks: std::sync::atomic::AtomicU64,
}

impl CoreRuntime {
    /// Creates the engine and compiles the embedded core.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to link WASI")?;
        let embedded = compile(&engine, &linker, EMBEDDED_CORE, CoreOrigin::Embedded)
            .context("the embedded core.wasm is invalid")?;
        Ok(CoreRuntime {
            engine,
            linker,
            limits,
            embedded,
            loaded: Mutex::new(None),
            fault: Mutex::new(None),
            fallbacks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Compiles and validates a core component without using it.
    pub fn load(&self, bytes: &[u8], origin: CoreOrigin) -> Result<LoadedCore, LoadError> {
        compile(&self.engine, &self.linker, bytes, origin)
    }

    /// Makes `core` the one that answers from the next call on (an atomic swap).
    pub fn install(&self, core: LoadedCore) {
        tracing::info!(core = %core.origin, "core installed");
        // Under the same lock as the failure path, so a failing call cannot race the swap.
        let mut slot = lock(&self.loaded);
        *slot = Some(Arc::new(core));
        *lock(&self.fault) = None;
    }

    /// The loaded core that failed and was replaced by the embedded one, and why (a runtime
    /// error until another core is installed).
    pub fn fault(&self) -> Option<(CoreOrigin, String)> {
        lock(&self.fault).clone()
    }

    /// Calls a loaded core failed since start.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The engine (epoch interruption on, its ticker running), shared with the plugins.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Which core answers the next call.
    pub fn active(&self) -> CoreOrigin {
        lock(&self.loaded)
            .as_ref()
            .map_or(CoreOrigin::Embedded, |c| c.origin.clone())
    }

    /// `failover.step` through the active core.
    pub fn step(
        &self,
        state: &MachineState,
        input: &Input,
        now: TimestampMs,
    ) -> Answered<Decision> {
        let (state_w, input_w) = ((*state).wit_into(), input.clone().wit_into());
        self.call(
            |core, store| {
                core.duet_core_failover()
                    .call_step(store, state_w, &input_w, now)
            },
            || duet_core::failover::step(state, input, now),
        )
    }

    /// `rules.evaluate` through the active core. Only when the buddy's report arrived crosses
    /// into the core; where the rules show the report as sent, the host fills it in. Takes the
    /// inputs by value: the observations become the call's arguments and the buddy's report
    /// moves into the answer, neither is copied.
    pub fn evaluate(
        &self,
        local: Observations,
        buddy: Option<ReceivedReport>,
        config: &RulesConfig,
        now: TimestampMs,
    ) -> Answered<PairReport> {
        let local_w: crate::bindings::duet::core::types::Observations = local.wit_into();
        let received_at = buddy.as_ref().map(|b| b.received_at);
        let config_w = (*config).wit_into();
        let native = |local_w: &crate::bindings::duet::core::types::Observations| {
            duet_core::rules::columns(&local_w.clone().wit_into(), received_at, config, now)
        };
        let answered: Answered<Columns> = self.call(
            |core, store| {
                core.duet_core_rules()
                    .call_evaluate(store, &local_w, received_at, config_w, now)
            },
            || native(&local_w),
        );
        match answered.value.with_buddy(buddy) {
            Some(pair) => Answered {
                value: pair,
                by: answered.by,
                failed: answered.failed,
            },
            None => {
                let why = "it showed the buddy's report as sent, but none had arrived".to_string();
                tracing::error!(core = %answered.by, "{why}; native duet-core answers");
                Answered {
                    value: native(&local_w)
                        .with_buddy(None)
                        .expect("no report: the rules make the buddy's column"),
                    by: CoreOrigin::Native,
                    failed: Some((answered.by, why)),
                }
            }
        }
    }

    fn call<W, T>(
        &self,
        wasm: impl Fn(&Core, &mut Store<CoreState>) -> wasmtime::Result<W>,
        native: impl FnOnce() -> T,
    ) -> Answered<T>
    where
        W: WitInto<T>,
    {
        let loaded = lock(&self.loaded).clone();
        let mut failed = None;
        if let Some(core) = loaded {
            match core.call(self, &wasm) {
                Ok(v) => {
                    return Answered {
                        value: v.wit_into(),
                        by: core.origin.clone(),
                        failed,
                    };
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::error!(core = %core.origin, error = %why, "core call failed; the embedded core answers and replaces it");
                    let mut slot = lock(&self.loaded);
                    // Only if no newer core was installed meanwhile: that one is not at fault.
                    if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &core)) {
                        *slot = None;
                        *lock(&self.fault) = Some((core.origin.clone(), why.clone()));
                    }
                    drop(slot);
                    self.fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    failed = Some((core.origin.clone(), why));
                }
            }
        }
        match self.embedded.call(self, &wasm) {
            Ok(v) => Answered {
                value: v.wit_into(),
                by: CoreOrigin::Embedded,
                failed,
            },
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the embedded core failed; native duet-core answers");
                Answered {
                    value: native(),
                    by: CoreOrigin::Native,
                    failed,
                }
            }
        }
    }
}

impl LoadedCore {
    /// Where this core came from.
    pub fn origin(&self) -> &CoreOrigin {
        &self.origin
    }

    fn call<W>(
        &self,
        rt: &CoreRuntime,
        f: &impl Fn(&Core, &mut Store<CoreState>) -> wasmtime::Result<W>,
    ) -> anyhow::Result<W> {
        let mut live = lock(&self.live);
        if live.is_none() {
            let mut store = Store::new(
                &rt.engine,
                CoreState {
                    wasi: WasiCtxBuilder::new().build(),
                    table: ResourceTable::new(),
                    limits: StoreLimitsBuilder::new()
                        .memory_size(rt.limits.memory_bytes)
                        .trap_on_grow_failure(true)
                        .build(),
                },
            );
            store.limiter(|s| &mut s.limits);
            store.set_epoch_deadline(deadline_ticks(rt.limits.deadline));
            let _call = GuestCall::begin();
            let core = self
                .pre
                .instantiate(&mut store)
                .map_err(anyhow::Error::from)
                .context("failed to instantiate the core")?;
            *live = Some((store, core));
        }
        let (store, core) = live.as_mut().expect("instantiated above");
        store.set_epoch_deadline(deadline_ticks(rt.limits.deadline));
        let result = {
            let _call = GuestCall::begin();
            f(core, store)
        };
        if result.is_err() {
            // A trapped instance may be left inconsistent: start afresh next time.
            *live = None;
        }
        result.map_err(|e| {
            if matches!(
                e.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            ) {
                anyhow::anyhow!("the call exceeded its deadline of {:?}", rt.limits.deadline)
            } else {
                anyhow::Error::from(e)
            }
        })
    }
}

fn compile(
    engine: &Engine,
    linker: &Linker<CoreState>,
    bytes: &[u8],
    origin: CoreOrigin,
) -> Result<LoadedCore, LoadError> {
    let component = Component::new(engine, bytes).map_err(|e| LoadError::Invalid(e.into()))?;
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if let Some(missing) = REQUIRED_EXPORTS
        .iter()
        .find(|want| !exports.iter().any(|e| e == *want))
    {
        let exports = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        return Err(LoadError::MissingExport {
            missing: (*missing).to_string(),
            exports,
        });
    }
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Mismatch(e.into()))?;
    let pre = CorePre::new(pre).map_err(|e| LoadError::Mismatch(e.into()))?;
    Ok(LoadedCore {
        origin,
        pre,
        live: Mutex::new(None),
    })
}

fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

/// Guest calls in flight in this process (any engine) and epoch tickers asleep for want of
/// one: the tickers only run while a call is in flight.
struct Calls {
    in_flight: usize,
    tickers_asleep: usize,
}

static GUEST_CALLS: (Mutex<Calls>, std::sync::Condvar) = (
    Mutex::new(Calls {
        in_flight: 0,
        tickers_asleep: 0,
    }),
    std::sync::Condvar::new(),
);

/// Marks a call into a guest (the core, a plugin) for as long as it lives: the epoch only
/// advances, and so deadlines only count, while some guest call is in flight. An idle host
/// therefore wakes no ticker thread at all.
#[must_use = "the epoch only advances while the guard lives"]
pub struct GuestCall(());

impl GuestCall {
    pub fn begin() -> Self {
        let (calls, wake) = &GUEST_CALLS;
        let mut calls = lock(calls);
        calls.in_flight += 1;
        // Only a sleeping ticker needs the (system) call to wake it; back-to-back guest calls
        // find it awake.
        if calls.tickers_asleep > 0 {
            wake.notify_all();
        }
        GuestCall(())
    }
}

impl Drop for GuestCall {
    fn drop(&mut self) {
        lock(&GUEST_CALLS.0).in_flight -= 1;
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while a [`GuestCall`] is in flight, until
/// the engine is dropped.
pub fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("duet-epoch".into())
        .spawn(move || {
            let (calls, wake) = &GUEST_CALLS;
            while let Some(engine) = weak.upgrade() {
                let idle = {
                    let mut calls = lock(calls);
                    if calls.in_flight == 0 {
                        // Wakes on the next call; the timeout only notices a dropped engine.
                        calls.tickers_asleep += 1;
                        let (mut calls, _) = wake
                            .wait_timeout(calls, Duration::from_secs(1))
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        calls.tickers_asleep -= 1;
                        calls.in_flight == 0
                    } else {
                        false
                    }
                };
                if !idle {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "failed to start the epoch thread: core calls have no deadline");
    }
}
