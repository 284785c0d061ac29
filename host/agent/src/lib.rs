//! duet-host: wires one agent together from the capability crates. It is the only crate that
//! knows them all (and the `duet` binary, which runs it):
//!
//! - [`config`]: the configuration file, each section validated by the crate that owns it.
//! - [`reload`]: the configuration file reloaded into the running agent (SIGHUP, `duet
//!   reload`): the kernel takes what it can live, the rest is named as waiting for a restart.
//! - [`notify`]: systemd's notify protocol (READY, STATUS, STOPPING, the watchdog fed by the
//!   decision loop's pulse) when run as a `Type=notify` service.
//! - [`run`]: builds the kernel ([`duet_kernel`]) with what the capabilities show it
//!   ([`surroundings`]), and runs it beside the API ([`duet_api`]), the virtual IPs
//!   ([`duet_vip`]), the probe plugins ([`duet_plugins`]), the built-in probes
//!   ([`duet_probes`]) and the event log ([`duet_events`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = duet_host::config::load(std::path::Path::new("duet.toml"))?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! duet_host::run(config, duet_host::RunOptions::default(), shutdown).await
//! # }
//! ```

#![warn(clippy::too_many_lines)]

pub mod config;
pub mod notify;
pub mod reload;
mod surroundings;
mod witness;

use std::sync::Arc;

use anyhow::Context as _;
use duet_base::pulse::Pulse;
use duet_base::watchdog::Watchdog;
use duet_base::{Alarms, Wake};
use duet_core::OperatorCommand;
use duet_events::EventLog;
use duet_kernel::decision::DecisionRuntime;
use duet_kernel::net::{Network, Tcp};
use duet_kernel::{Kernel, Parts};
use duet_plugins::PluginTable;
use duet_probes::nats::NatsState;
use duet_probes::nic::NicWatcher;
use duet_runtime::{CoreRuntime, Limits};
use duet_vip::Vips;
use duet_vip::hooks::Hooks;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use duet_base::Clock;
/// The peer link's frame codec (its own crate, so the fuzz target builds without wasmtime).
pub use duet_frame as frame;
pub use duet_kernel::fence::bound as fence_bound;
pub use duet_kernel::witness::{Witness, wants as witness_wants};
pub use duet_kernel::{PeerReport, Requests, TickRecord, net, state_file};
pub use duet_plugins as plugins;
pub use duet_runtime as runtime;
pub use duet_runtime::CoreEvent;
pub use duet_vip::netif::release as release_vips;
pub use duet_vip::pcap;

use surroundings::{Builtin, HostSurroundings};

/// Optional hooks into a running agent.
#[derive(Default)]
pub struct RunOptions {
    /// Receives every tick's decision.
    pub ticks: Option<mpsc::UnboundedSender<TickRecord>>,
    /// Use this runtime instead of creating one (tests share one compiled engine).
    pub runtime: Option<Arc<CoreRuntime>>,
    /// Receives every load or refusal of the core file.
    pub core_events: Option<mpsc::UnboundedSender<CoreEvent>>,
    /// Receives the API's bound address once it listens.
    pub bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    /// The network for the peer link and the ICMP heartbeats (default: the real one).
    pub network: Option<Arc<dyn Network>>,
    /// Do not serve the HTTP API (the simulation runs many agents in one process).
    pub no_api: bool,
    /// Do not run the event log's store and forwarding (the simulation): the Database, DB Sync
    /// and DB Sync Stack rows are not shown, raised events are dropped.
    pub no_events: bool,
    /// The clock (default: the system's, read at start).
    pub clock: Option<Clock>,
    /// Receives a sender for operator commands, as the API would give them.
    pub commands: Option<tokio::sync::oneshot::Sender<mpsc::Sender<OperatorCommand>>>,
    /// Run the decision path on the caller's runtime, without its own threads and without the
    /// fence (the simulation: many agents on one paused runtime, where the real clock says
    /// nothing about them).
    pub shared_runtime: bool,
    /// The configuration file to reload on request (SIGHUP, the API); none: no reloads.
    pub reload: Option<reload::ReloadFrom>,
    /// The witness the kernel consults instead of `[witness]`'s NATS client (the simulation's
    /// in-memory witness, on paused time); none: `[witness]` decides.
    pub witness: Option<Arc<dyn duet_kernel::witness::Witness>>,
}

/// The capabilities of one agent, built before anything runs.
struct Agent {
    config: Config,
    kernel: Arc<Kernel>,
    events: Arc<EventLog>,
    vips: Arc<Vips>,
    builtin: Builtin,
    plugins: PluginTable,
    wake: Wake,
    /// The witness client and the decision path's runtime it runs on.
    witness: Option<(Arc<duet_witness::client::Client>, tokio::runtime::Handle)>,
}

/// Runs an agent until `shutdown` is cancelled: on shutdown while Online it hands over first.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Before anything opens a file: the API's share of descriptors is taken from this limit.
    duet_base::fds::raise_limit();
    let runtime = match options.runtime {
        Some(rt) => rt,
        None => core_runtime(&config).await?,
    };
    let clock = options.clock.unwrap_or_else(Clock::system);
    let network = options.network.unwrap_or_else(|| Arc::new(Tcp));
    let (decision, decision_runtime) = if options.shared_runtime {
        (tokio::runtime::Handle::current(), None)
    } else {
        let rt = DecisionRuntime::start(config.kernel.core.priority)
            .context("cannot start the decision path's threads")?;
        (rt.handle().clone(), Some(rt))
    };
    let pulse = if options.shared_runtime {
        Arc::new(Pulse::new(None))
    } else {
        duet_kernel::fence::pulse(&config.kernel)
    };
    let agent = assemble(
        config,
        runtime,
        clock,
        network,
        (decision, pulse.clone()),
        options.witness,
    )?;
    if let Some(tx) = options.commands {
        let _ = tx.send(agent.kernel.commands());
    }
    let peer_listener = agent.kernel.listen().await?;
    let api_listener = if options.no_api {
        None
    } else {
        Some(bind_api(&agent.config, options.bound).await?)
    };

    // `shutdown` asks the agent to stop: the tick loop hands over first (planned handover) and
    // then cancels the kernel's stop token, which ends the API, the probes and the watchers.
    // The API keeps serving during the handover, so the buddy sees it.
    let stop = agent.kernel.stop().clone();
    let mut tasks = JoinSet::new();
    let reloader = options.reload.map(|from| {
        let alarms: Arc<dyn Alarms> = agent.events.clone();
        let (reloader, requests) = reload::Reloader::new(from, agent.kernel.clone(), alarms);
        tasks.spawn(reloader.clone().serve(requests, stop.clone()));
        reloader
    });
    if let Some(listener) = api_listener {
        tasks.spawn(duet_api::serve(listener, agent.api(reloader), stop.clone()));
    }
    agent.spawn_capabilities(&mut tasks, options.core_events, options.no_events, &stop)?;
    if let Some(notifier) = notify::Notifier::from_env() {
        notify::spawn(notifier, agent.kernel.clone(), pulse, shutdown.clone())
            .context("cannot start the thread that notifies systemd")?;
    }
    agent
        .kernel
        .spawn(&mut tasks, peer_listener, options.ticks, shutdown)?;

    let result = join(&mut tasks, &stop).await;
    drop(decision_runtime);
    result
}

/// How long the agent's other tasks get to end once the kernel stopped: a plugin blocked in
/// I/O must not keep the process from exiting.
const STRAGGLERS: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for the agent's tasks; the first that failed stops the others. Once the kernel
/// stopped, tasks still running after [`STRAGGLERS`] are abandoned.
async fn join(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut first_error = None;
    loop {
        let next = tokio::select! {
            next = tasks.join_next() => next,
            () = async { stop.cancelled().await; tokio::time::sleep(STRAGGLERS).await } => {
                tracing::warn!(tasks = tasks.len(), "tasks did not end after the agent stopped: abandoned");
                tasks.abort_all();
                break;
            }
        };
        let Some(done) = next else { break };
        let result = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "agent task failed; shutting down");
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The core runtime with the configured limits (compiling the embedded core takes a moment:
/// off the async threads).
async fn core_runtime(config: &Config) -> anyhow::Result<Arc<CoreRuntime>> {
    let limits = Limits {
        deadline: config.kernel.core.deadline,
        memory_bytes: config.kernel.core.memory_limit_bytes,
    };
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || CoreRuntime::new(limits))
            .await
            .context("core runtime task failed")??,
    ))
}

/// Builds every capability and the kernel that reads them.
fn assemble(
    config: Config,
    runtime: Arc<CoreRuntime>,
    clock: Clock,
    network: Arc<dyn Network>,
    (decision, pulse): (tokio::runtime::Handle, Arc<Pulse>),
    gate: Option<Arc<dyn duet_kernel::witness::Witness>>,
) -> anyhow::Result<Agent> {
    let changed = Arc::new(Notify::new());
    let wake: Wake = {
        let changed = changed.clone();
        Arc::new(move || changed.notify_one())
    };
    let name = &config.kernel.agent.name;
    let events = EventLog::new(
        config.database.clone(),
        name,
        &config.kernel.buddy.name,
        clock,
    );
    let alarms: Arc<dyn Alarms> = events.clone();
    let vips = Vips::new(
        config.vips.clone(),
        wake.clone(),
        clock,
        alarms.clone(),
        pulse.clone(),
    );
    let builtin = Builtin {
        watchdog: Arc::new(Watchdog::default()),
        nics: Arc::new(NicWatcher::default()),
        nats: Arc::new(NatsState::default()),
    };
    let plugins = PluginTable::default();
    let surroundings = HostSurroundings {
        witness: None,
        plugins: plugins.clone(),
        nics: builtin.nics.clone(),
        nats: config.nats.is_some().then(|| builtin.nats.clone()),
        vips: vips.clone(),
        events: events.clone(),
        vip_nics: config.vip_nics().into_iter().map(str::to_string).collect(),
    };
    let witness = config
        .witness
        .clone()
        .map(|w| duet_witness::client::Client::new(w, name.clone()));
    if let Some(w) = &witness {
        w.notify(changed.clone());
    }
    let surroundings = Arc::new(HostSurroundings {
        witness: witness.clone(),
        ..surroundings
    });
    let kernel = Kernel::new(Parts {
        config: config.kernel.clone(),
        watchdog_config: config.watchdog,
        runtime,
        clock,
        network,
        changed,
        watchdog: builtin.watchdog.clone(),
        surroundings,
        alarms,
        inbox: events.clone(),
        vips: vips.clone(),
        hooks: Hooks::start(config.hooks.clone(), name.clone()),
        decision: decision.clone(),
        pulse,
        witness: gate.or_else(|| {
            witness
                .clone()
                .map(|w| Arc::new(witness::Gate(w)) as Arc<dyn duet_kernel::witness::Witness>)
        }),
    })?;
    Ok(Agent {
        witness: witness.map(|w| (w, decision)),
        config,
        kernel,
        events,
        vips,
        builtin,
        plugins,
        wake,
    })
}

/// Binds the API's port (`api.listen`) and says where it listens.
async fn bind_api(
    config: &Config,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<tokio::net::TcpListener> {
    let at = config.api.listen;
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("failed to listen on {at} (api.listen)"))?;
    let addr = listener
        .local_addr()
        .context("failed to read the API's address")?;
    tracing::info!(agent = %config.kernel.agent.name, api = %addr, peer = %config.kernel.peer.listen, "duet agent started");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    Ok(listener)
}

impl Agent {
    /// What the API serves from.
    fn api(&self, reloader: Option<Arc<reload::Reloader>>) -> duet_api::Api {
        let agent = self.config.kernel.agent.name.clone();
        let mut more_metrics: Vec<Arc<dyn Fn() -> String + Send + Sync>> = vec![{
            let (plugins, agent) = (self.plugins.clone(), agent.clone());
            Arc::new(move || plugins.metrics(&agent))
        }];
        if let Some((client, _)) = self.witness.as_ref() {
            let (client, kernel, agent) = (client.clone(), self.kernel.clone(), agent.clone());
            more_metrics.push(Arc::new(move || {
                witness::metrics(&client, kernel.witness_override().is_some(), &agent)
            }));
        }
        if let Some(reloader) = reloader.clone() {
            more_metrics.push(Arc::new(move || reloader.metrics(&agent)));
        }
        duet_api::Api {
            kernel: self.kernel.clone(),
            events: self.events.clone(),
            vips: self.vips.clone(),
            config: Arc::new(self.config.api.clone()),
            web: self.config.web,
            connections: Arc::default(),
            more_metrics,
            reloader: reloader.map(|r| r as Arc<dyn duet_api::Reloader>),
        }
    }

    /// Starts everything beside the kernel: the core file's watcher, the plugins, the built-in probes and the event log.
    fn spawn_capabilities(
        &self,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        core_events: Option<mpsc::UnboundedSender<CoreEvent>>,
        no_events: bool,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let config = &self.config;
        if let Some(path) = config.kernel.core.path.clone() {
            tasks.spawn(duet_runtime::watch_core_file(
                self.kernel.runtime().clone(),
                path,
                config.kernel.core.watch_interval,
                core_events,
                stop.clone(),
            ));
        }
        if config.plugins.dir.is_some() {
            // In a process of their own: see duet_plugins::process.
            tasks.spawn(duet_plugins::process::supervise(
                config.plugins.clone(),
                self.plugins.clone(),
                self.wake.clone(),
                stop.clone(),
            ));
        }
        self.builtin
            .spawn(config, &self.events, &self.wake, tasks, stop);
        if let Some((client, decision)) = &self.witness {
            // On the decision path's threads, over its own connection: the lease is part of
            // every decision to be or become Online.
            let run = decision.spawn(client.clone().run(stop.clone()));
            tasks.spawn(async move { run.await.context("witness task failed") });
            tasks.spawn({
                let (client, events, stop) = (client.clone(), self.events.clone(), stop.clone());
                async move {
                    witness::events(client, events, stop).await;
                    Ok(())
                }
            });
        }
        if no_events {
            self.events.disable();
        } else {
            tasks.spawn(self.events.clone().run(stop.clone()));
            tasks.spawn(duet_events::forward::run(
                self.events.clone(),
                self.kernel.clone(),
                stop.clone(),
            ));
            tasks.spawn(duet_events::shown::run(
                self.events.clone(),
                self.kernel.clone(),
                stop.clone(),
            ));
        }
        Ok(())
    }
}
