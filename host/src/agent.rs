//! The agent: probes run on their own schedules and write what they saw; the tick loop hands it
//! to the core (`failover.step`, then `rules.evaluate`), carries out the decision and publishes
//! the status. The loop never waits on the network: probes and the peer exchange run apart.
//!
//! The agents exchange [`PeerReport`]s over the peer link ([`crate::peer`]): state, Status
//! column, go-offline request and answer. Requests and answers are therefore asynchronous,
//! idempotent (tagged with a request id) and never block either side.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use duet_core::api::{DecisionSummary, HistoryEntry, Status};
use duet_core::{
    Action, Answer, BuddyView, Check, Decision, FailoverState, Heartbeat, HeartbeatKind, Input,
    MachineState, Mode, Observations, OperatorCommand, ReceivedReport, Report, RequestReason,
    TimestampMs,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HeartbeatConfig};
use crate::failover_log::FailoverLog;
use crate::lock;
use crate::net::{Network, PingError, Pinger, Tcp};
use crate::peer::{LinkStats, PathSpec};
use crate::runtime::{CoreOrigin, CoreRuntime, Limits};

/// What an agent tells its buddy, on every peer-link exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerReport {
    pub agent: String,
    /// A random number per run of the agent: a restarted buddy's tick count starts again.
    pub boot: u64,
    /// The fingerprint of the settings both agents must share ([`Config::fingerprint`]).
    pub fingerprint: String,
    pub priority: u32,
    pub state: FailoverState,
    /// Its failover mode (shown in the buddy's Failover Config window).
    pub mode: Mode,
    /// All inverted heartbeats fail.
    pub isolated: bool,
    /// This agent's own Status column.
    pub report: Report,
    /// The decision loop's tick number and period: a tick that stops moving is a stuck agent,
    /// not a live one.
    pub tick: u64,
    pub tick_ms: u64,
    /// This agent was Online before its restart and has not switched since (tie-break).
    pub was_online: bool,
    /// This agent recently stepped down and will not claim (tie-break).
    pub yielding: Option<u64>,
    /// How long before this report its freshest inverted heartbeat last succeeded (none when
    /// none is configured or none has succeeded): an isolated Online buddy hands over only when
    /// this shows the outside answering after its own isolation began. An age, so no clock is
    /// shared.
    #[serde(default)]
    pub outside_age_ms: Option<u64>,
    /// This agent's pending request that the buddy go offline: its id and reason.
    pub request: Option<(u64, RequestReason)>,
    /// This agent's answer to the buddy's request with that id.
    pub answer: Option<(u64, Answer)>,
    /// The settings both agents must share, by key ([`crate::probes::configuration`]), sent
    /// while the buddy's fingerprint differs from ours so it can name the key that differs.
    /// Empty otherwise, and from an agent that predates it.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// This agent's MAC addresses: once it is declared dead, an ARP answer for a VIP from one
    /// of them is its lapsing lease, not an occupant.
    #[serde(default)]
    pub macs: Vec<String>,
}

/// One tick's outcome, for observers (tests, tools).
#[derive(Debug, Clone)]
pub struct TickRecord {
    pub tick: u64,
    pub decision: Decision,
    /// The core that answered `failover.step` on this tick.
    pub by: CoreOrigin,
    /// A loaded core that failed on this tick's step, and why.
    pub failed: Option<(CoreOrigin, String)>,
}

/// What happened to the core file.
#[derive(Debug, Clone)]
pub enum CoreEvent {
    /// A new core was validated and now answers.
    Installed(CoreOrigin),
    /// A changed file was refused; the previous core keeps answering.
    Rejected(CoreOrigin, String),
}

impl PeerReport {
    /// What the core sees of the buddy, from this report received at `received_at`.
    pub fn view(&self, received_at: TimestampMs) -> BuddyView {
        BuddyView {
            name: self.agent.clone(),
            priority: self.priority,
            state: self.state,
            isolated: self.isolated,
            received_at,
            was_online: self.was_online,
            yielding: self.yielding,
            outside_ok_at: self
                .outside_age_ms
                .map(|age| received_at.saturating_sub(age)),
        }
    }
}

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
}

/// How many decisions the history keeps.
const HISTORY: usize = 1_000;

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Counters {
    /// Decisions by reason code.
    pub decisions: std::collections::BTreeMap<String, u64>,
    /// Transitions by the state entered.
    pub transitions: std::collections::BTreeMap<String, u64>,
}

/// State shared between the tick loop, the probes and the API.
pub(crate) struct Shared {
    pub config: Config,
    pub started_at: TimestampMs,
    pub clock: Clock,
    /// Operators' commands for the next tick (bounded: a flood is refused, not queued).
    pub commands: mpsc::Sender<OperatorCommand>,
    /// Decisions that changed something, newest last.
    pub history: Mutex<std::collections::VecDeque<HistoryEntry>>,
    pub counters: Mutex<Counters>,
    /// Stops the API, the probes, the tick loop and long-lived responses: cancelled by the tick
    /// loop once it has handed over (planned shutdown), or by `run` when a task fails.
    pub shutdown: CancellationToken,
    /// The core runtime, for its fault and fallback counts.
    pub runtime: Arc<CoreRuntime>,
    /// The remembered state read from the state file at start.
    pub remembered: Option<FailoverState>,
    pub(crate) heartbeats: Mutex<Vec<Heartbeat>>,
    /// The sync connection, measured like a heartbeat path; `None` when not configured.
    pub(crate) sync: Option<Mutex<Heartbeat>>,
    /// The buddy's newest report and when it arrived.
    buddy: Mutex<Option<(PeerReport, TimestampMs)>>,
    pub network: Arc<dyn Network>,
    /// The peer link's counters.
    pub link: LinkStats,
    pub peer: watch::Sender<PeerReport>,
    pub status: watch::Sender<Status>,
    changed: Notify,
    /// The probe plugins' rows (issue 9).
    pub plugins: crate::plugins::PluginTable,
    /// The built-in probes: NATS, NICs, the runtime-error watchdog.
    pub probes: crate::probes::Probes,
    /// The virtual IPs (`[[vip]]`; none configured: nothing to do).
    pub vips: Arc<crate::vip::Vips>,
    /// The hook commands (`[hooks]`).
    hooks: crate::vip::hooks::Hooks,
    /// The event log, its store and forwarding (issue 8).
    pub events: Arc<crate::events::EventLog>,
}

impl Shared {
    /// The buddy's last report and when it arrived, however old.
    pub(crate) fn buddy_report(&self) -> Option<(PeerReport, TimestampMs)> {
        lock(&self.buddy).clone()
    }

    /// This agent's report as it leaves now: the published one, with the age of its freshest
    /// inverted success taken from the live heartbeats at this moment. Taken when the tick
    /// built the report, the age would be short by the time until the next exchange, and the
    /// buddy would date this agent's outside success later than it was — enough to count a
    /// success from before a shared outage as evidence after it.
    pub(crate) fn outgoing_report(&self) -> PeerReport {
        let mut report = self.peer.borrow().clone();
        let now = self.clock.now();
        report.outside_age_ms = duet_core::failover::outside_ok_at(&lock(&self.heartbeats))
            .map(|at| now.saturating_sub(at));
        report
    }

    /// Takes a report received from the buddy over any path, if it is newer than the one held
    /// (paths race; a restarted buddy has a new boot number). Wakes the tick loop when the
    /// buddy's state or requests changed.
    pub(crate) fn receive(&self, report: PeerReport, now: TimestampMs) {
        let mut buddy = lock(&self.buddy);
        let (newer, changed) = match &*buddy {
            None => (true, true),
            Some((old, _)) => (
                old.boot != report.boot || report.tick > old.tick,
                old.state != report.state
                    || old.request != report.request
                    || old.answer != report.answer,
            ),
        };
        if newer {
            *buddy = Some((report, now));
            drop(buddy);
            if changed {
                self.changed.notify_one();
            }
        }
    }
}

/// Runs an agent until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let runtime = match options.runtime {
        Some(rt) => rt,
        None => {
            let limits = Limits {
                deadline: config.core.deadline,
                memory_bytes: config.core.memory_limit_bytes,
            };
            Arc::new(
                tokio::task::spawn_blocking(move || CoreRuntime::new(limits))
                    .await
                    .context("core runtime task failed")??,
            )
        }
    };
    let clock = options.clock.unwrap_or_else(Clock::system);
    let now = clock.now();
    let heartbeats = config.heartbeats.iter().map(initial_heartbeat).collect();
    let sync = config.sync.as_ref().map(|s| {
        Mutex::new(initial_heartbeat(&HeartbeatConfig {
            id: "sync".into(),
            kind: HeartbeatKind::Agent,
            target: s.target.to_string(),
            interval: s.interval,
            timeout: s.timeout,
            max_failures: s.max_failures,
            source: s.source,
        }))
    });
    let mut boot = [0u8; 8];
    getrandom::fill(&mut boot).map_err(|e| anyhow::anyhow!("failed to read random bytes: {e}"))?;
    // Read before the first report: the buddy's tie-break must see this agent's remembered
    // Online in the very first report it receives, not one tick later.
    let remembered = crate::state_file::read(&config.state.file).map(|r| r.state);
    if let Some(state) = remembered {
        tracing::info!(file = %config.state.file.display(), state = state.label(), "remembered state");
    }
    let first = PeerReport {
        agent: config.agent.name.clone(),
        boot: u64::from_le_bytes(boot),
        fingerprint: config.fingerprint(),
        priority: config.agent.priority,
        state: FailoverState::Offline,
        mode: config.agent.mode,
        isolated: false,
        report: Report {
            agent: config.agent.name.clone(),
            generated_at: now,
            state: Some(FailoverState::Offline),
            led: duet_core::Led::Transparent,
            rows: Vec::new(),
        },
        was_online: remembered == Some(FailoverState::Online),
        yielding: None,
        outside_age_ms: None,
        tick: 0,
        tick_ms: millis(config.core.tick),
        request: None,
        answer: None,
        settings: crate::probes::configuration::shared_settings(&config),
        macs: crate::vip::netif::all_macs()
            .iter()
            .map(crate::vip::arp::format_mac)
            .collect(),
    };
    let (commands, command_rx) = mpsc::channel(16);
    if let Some(tx) = options.commands {
        let _ = tx.send(commands.clone());
    }
    let hooks = crate::vip::hooks::Hooks::start(config.hooks.clone(), config.agent.name.clone());
    let shared = Arc::new_cyclic(|me: &std::sync::Weak<Shared>| Shared {
        started_at: now,
        commands,
        clock,
        history: Mutex::new(std::collections::VecDeque::new()),
        counters: Mutex::new(Counters::default()),
        runtime: runtime.clone(),
        remembered,
        shutdown: CancellationToken::new(),
        heartbeats: Mutex::new(heartbeats),
        sync,
        buddy: Mutex::new(None),
        network: options.network.unwrap_or_else(|| Arc::new(Tcp)),
        link: LinkStats::default(),
        peer: watch::Sender::new(first),
        status: watch::Sender::new(Status::default()),
        changed: Notify::new(),
        plugins: crate::plugins::PluginTable::default(),
        probes: crate::probes::Probes::default(),
        vips: {
            let me = me.clone();
            let raise_to = me.clone();
            crate::vip::Vips::new(
                config.vips.clone(),
                Arc::new(move || {
                    if let Some(shared) = me.upgrade() {
                        shared.changed.notify_one();
                    }
                }),
                Arc::new(move || clock.now()),
                Arc::new(move |severity, code: &str, message| {
                    if let Some(shared) = raise_to.upgrade() {
                        shared.events.raise(severity, code, message);
                    }
                }),
            )
        },
        hooks,
        events: crate::events::EventLog::new(
            config.database.clone(),
            &config.agent.name,
            &config.buddy.name,
            clock,
        ),
        config,
    });

    let peer_listener = shared
        .network
        .listen(shared.config.peer.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (peer.listen)",
                shared.config.peer.listen
            )
        })?;
    let api_listener = if options.no_api {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(shared.config.api.listen)
            .await
            .with_context(|| {
                format!(
                    "failed to listen on {} (api.listen)",
                    shared.config.api.listen
                )
            })?;
        let bound = listener
            .local_addr()
            .context("failed to read the API's address")?;
        tracing::info!(agent = %shared.config.agent.name, api = %bound, peer = %shared.config.peer.listen, "duet agent started");
        if let Some(tx) = options.bound {
            let _ = tx.send(bound);
        }
        Some(listener)
    };

    // `shutdown` asks the agent to stop: the tick loop hands over first (planned handover) and
    // then cancels `stop`, which ends the API, the probes and the watcher. The API keeps
    // serving during the handover, so the buddy sees it.
    let stop = shared.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = api_listener {
        tasks.spawn(crate::api::serve(listener, shared.clone(), stop.clone()));
    }
    tasks.spawn(crate::peer::serve(
        shared.clone(),
        peer_listener,
        stop.clone(),
    ));
    for (i, hb) in shared.config.heartbeats.iter().enumerate() {
        match hb.kind {
            HeartbeatKind::Agent => {
                let spec = PathSpec {
                    target: hb.target.parse().context("validated as address:port")?,
                    source: hb.source,
                    interval: hb.interval,
                    timeout: hb.timeout,
                };
                tasks.spawn(crate::peer::path(
                    shared.clone(),
                    Slot::Heartbeat(i),
                    spec,
                    stop.clone(),
                ))
            }
            HeartbeatKind::Ping | HeartbeatKind::Inverted => {
                tasks.spawn(icmp_heartbeat(shared.clone(), i, hb.clone(), stop.clone()))
            }
        };
    }
    if let Some(sync) = &shared.config.sync {
        let spec = PathSpec {
            target: sync.target,
            source: sync.source,
            interval: sync.interval,
            timeout: sync.timeout,
        };
        tasks.spawn(crate::peer::path(
            shared.clone(),
            Slot::Sync,
            spec,
            stop.clone(),
        ));
    }
    if shared.vips.enabled() {
        tasks.spawn(shared.vips.clone().run(stop.clone()));
    }
    if let Some(path) = shared.config.core.path.clone() {
        tasks.spawn(watch_core_file(
            runtime.clone(),
            path,
            shared.config.core.watch_interval,
            options.core_events,
            stop.clone(),
        ));
    }
    if shared.config.plugins.dir.is_some() {
        let engine = crate::plugins::PluginEngine::on(
            runtime.engine(),
            shared.config.plugins.cache_dir.clone(),
        )?;
        let wake = shared.clone();
        tasks.spawn(crate::plugins::run(
            Arc::new(engine),
            shared.clock,
            shared.config.plugins.clone(),
            shared.plugins.clone(),
            Arc::new(move || wake.changed.notify_one()),
            stop.clone(),
        ));
    }
    spawn_probes(&shared, &mut tasks, &stop);
    if options.no_events {
        shared.events.disable();
    } else {
        tasks.spawn(shared.events.clone().run(stop.clone()));
        tasks.spawn(crate::events::forward::run(shared.clone(), stop.clone()));
    }
    tasks.spawn(tick_loop(
        shared,
        runtime,
        command_rx,
        options.ticks,
        shutdown.clone(),
    ));

    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        let result = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "agent task failed; shutting down");
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The built-in probes' tasks: the NIC watcher, the NATS probe. (The watchdog is checked
/// every tick.)
fn spawn_probes(
    shared: &Arc<Shared>,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    stop: &CancellationToken,
) {
    let waker = |shared: &Arc<Shared>| -> Arc<dyn Fn() + Send + Sync> {
        let shared = shared.clone();
        Arc::new(move || shared.changed.notify_one())
    };
    tasks.spawn(shared.probes.nics.clone().run(stop.clone(), waker(shared)));
    tasks.spawn(probe_events(shared.clone(), stop.clone()));
    if let Some(nats) = shared.config.nats.clone() {
        tasks.spawn(crate::probes::nats::run(
            nats,
            shared.config.agent.name.clone(),
            shared.config.buddy.name.clone(),
            shared.probes.nats.clone(),
            shared.probes.watchdog.clone(),
            shared.config.watchdog.deadline,
            waker(shared),
            stop.clone(),
        ));
    }
}

/// Raises the built-in probes' changes in the event log: a NIC unplugged or back, a component
/// entering or leaving runtime error.
async fn probe_events(shared: Arc<Shared>, stop: CancellationToken) -> anyhow::Result<()> {
    use crate::events::Severity;
    let mut nics = shared.probes.nics.subscribe();
    let mut rte = shared.probes.watchdog.subscribe();
    let mut links = nics.borrow_and_update().clone();
    let mut failed = rte.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            changed = nics.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = nics.borrow_and_update().clone();
                for (name, link) in &now {
                    match links.get(name).map(|l| l.up) {
                        // A NIC down since start is no news: only a change is.
                        Some(true) | None if !link.up && link.changed => shared.events.raise(
                            Severity::Warning,
                            "nic_unplugged",
                            format!("NIC {name} is unavailable (down or unplugged)"),
                        ),
                        Some(false) if link.up => shared.events.raise(
                            Severity::Info,
                            "nic_available",
                            format!("NIC {name} is available again"),
                        ),
                        _ => {}
                    }
                }
                links = now;
            }
            changed = rte.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = rte.borrow_and_update().clone();
                for component in now.difference(&failed) {
                    shared.events.raise(
                        Severity::Error,
                        "runtime_error",
                        format!("runtime error: {component} missed its deadline"),
                    );
                }
                for component in failed.difference(&now) {
                    shared.events.raise(
                        Severity::Info,
                        "runtime_error_cleared",
                        format!("{component} answers in time again"),
                    );
                }
                failed = now;
            }
        }
    }
}

fn initial_heartbeat(hb: &HeartbeatConfig) -> Heartbeat {
    Heartbeat {
        id: hb.id.clone(),
        kind: hb.kind,
        target: hb.target.clone(),
        ok: false,
        failures: 0,
        max_failures: hb.max_failures,
        last_success: None,
        reason: Some("no attempt yet".into()),
        rtt_us: None,
    }
}

/// Distinct components in runtime error: those the watchdog caught (calls past their
/// deadline), the core when a loaded core.wasm failed and the embedded one answers, and each
/// plugin in runtime error.
fn rte_count(shared: &Shared, runtime: &CoreRuntime) -> u32 {
    let mut components = shared.probes.watchdog.check();
    if runtime.fault().is_some() {
        components.insert("core".into());
    }
    u32::try_from(components.len())
        .unwrap_or(u32::MAX)
        .saturating_add(shared.plugins.faults())
}

/// The switch triggers that fire: plugins, and a runtime error when `watchdog.switch_trigger`.
/// (A VIP's NIC going down is the core's own trigger, from the NICs in its input.)
fn triggers(shared: &Shared) -> Vec<String> {
    let mut triggers = shared.plugins.triggers();
    if shared.config.watchdog.switch_trigger
        && let Some(component) = shared.probes.watchdog.in_error().first()
    {
        triggers.push(format!("rte:{component}"));
    }
    triggers
}

/// This agent's configuration problems that only the machine shows (a path's source address
/// that is not on it). Only read when a path names a source address.
fn local_configuration_problems(config: &Config) -> Vec<String> {
    let pinned = config.heartbeats.iter().any(|h| h.source.is_some())
        || config.sync.as_ref().is_some_and(|s| s.source.is_some());
    if !pinned {
        return Vec::new();
    }
    match crate::probes::configuration::local_addresses() {
        Ok(addresses) => crate::probes::configuration::local_problems(config, &addresses),
        Err(e) => vec![format!("cannot list this machine's addresses: {e}")],
    }
}

/// The watched NICs, each flagged when it carries a virtual IP.
fn nics(shared: &Shared) -> Vec<duet_core::Nic> {
    shared
        .probes
        .nics
        .nics(|nic| crate::probes::nic::carries_vip(&shared.config, nic))
}

/// How long a core call may take, scheduling included, before the watchdog counts it.
fn core_deadline(config: &Config) -> Duration {
    config.core.deadline * 4 + Duration::from_secs(1)
}

/// The agent's clock: milliseconds since the Unix epoch, as the system clock said at start.
///
/// Read once from the system clock, then advanced by the monotonic clock: a clock step (NTP,
/// a board without a real-time clock) never stretches or skips a timeout, a start-up wait or
/// the ping-pong guard. The price: if the clock was wrong at start (no real-time clock, NTP not
/// yet synced), timestamps in the log and the API stay off by that much until a restart. The
/// monotonic clock is tokio's, so a simulation with paused time runs the agent on virtual time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: TimestampMs,
    start: tokio::time::Instant,
}

impl Clock {
    /// The system clock, now.
    pub fn system() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock::starting_at(wall)
    }

    /// A clock that reads `wall` now.
    pub fn starting_at(wall: TimestampMs) -> Self {
        Clock {
            wall,
            start: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now(&self) -> TimestampMs {
        self.wall
            .saturating_add(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// Bookkeeping of the go-offline requests between the agents. Requests and answers are state
/// in each agent's peer report, tagged with the request's id: asynchronous, idempotent, and
/// nothing waits on the buddy. Shared with the model check, which drives it in simulation.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    /// Our pending request that the buddy go offline.
    outgoing: Option<(u64, RequestReason)>,
    /// The buddy's request we last answered, and the answer.
    answered: Option<(u64, Answer)>,
}

/// What the buddy's report says about requests this tick.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The buddy's request this agent has not answered yet.
    pub incoming: Option<(u64, RequestReason)>,
    /// The buddy's answer to our pending request.
    pub answer: Option<Answer>,
}

impl Requests {
    /// Reads the buddy's request and answer (from its last report, if fresh).
    pub fn exchange(
        &self,
        buddy_request: Option<(u64, RequestReason)>,
        buddy_answer: Option<&(u64, Answer)>,
    ) -> Exchange {
        let incoming =
            buddy_request.filter(|(id, _)| self.answered.as_ref().is_none_or(|(a, _)| a != id));
        let answer = match (self.outgoing, buddy_answer) {
            (Some((ours, _)), Some((id, a))) if *id == ours => Some(a.clone()),
            _ => None,
        };
        Exchange { incoming, answer }
    }

    /// Carries out a decision's request actions: a new request, an answer to the buddy's.
    pub fn apply(&mut self, exchange: &Exchange, decision: &Decision, now: TimestampMs) {
        for action in &decision.actions {
            match action {
                Action::AskBuddyOffline(reason) => self.outgoing = Some((now, *reason)),
                Action::AnswerBuddy(a) => {
                    if let Some((id, _)) = exchange.incoming {
                        self.answered = Some((id, a.clone()));
                    }
                }
                _ => {}
            }
        }
        // A request lives while we prepare and until its answer is used.
        if exchange.answer.is_some() || decision.state.state != FailoverState::PreparingToGoOnline {
            self.outgoing = None;
        }
    }

    /// Our pending request, for our peer report.
    pub fn outgoing(&self) -> Option<(u64, RequestReason)> {
        self.outgoing
    }

    /// Our answer to the buddy's last request, for our peer report.
    pub fn answered(&self) -> Option<(u64, Answer)> {
        self.answered.clone()
    }
}

async fn tick_loop(
    shared: Arc<Shared>,
    runtime: Arc<CoreRuntime>,
    commands: mpsc::Receiver<OperatorCommand>,
    observer: Option<mpsc::UnboundedSender<TickRecord>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = &shared.config;
    let mut log = FailoverLog::start(
        crate::failover_log::LogFile::of(&config.log),
        config.state.file.clone(),
        config.agent.name.clone(),
    );
    let result = ticks(&shared, runtime, commands, observer, shutdown, &mut log).await;
    // Only now stop the API and the probes: the buddy saw the handover through them. On every
    // exit, error or not, the failover log and the last state are flushed.
    shared.shutdown.cancel();
    log.close().await;
    shared.hooks.close().await;
    result
}

async fn ticks(
    shared: &Arc<Shared>,
    runtime: Arc<CoreRuntime>,
    mut commands: mpsc::Receiver<OperatorCommand>,
    observer: Option<mpsc::UnboundedSender<TickRecord>>,
    shutdown: CancellationToken,
    log: &mut FailoverLog,
) -> anyhow::Result<()> {
    let config = &shared.config;
    let mut machine =
        MachineState::new(FailoverState::Offline, config.agent.mode, shared.started_at);
    let mut requests = Requests::default();
    let mut interval = tokio::time::interval(config.core.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = 0u64;
    let fingerprint = config.fingerprint();
    let settings = crate::probes::configuration::shared_settings(config);
    // Set once shutdown is asked while Online: hand over, then stop by this deadline.
    let mut handover: Option<TimestampMs> = None;
    let mut handover_asked = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled(), if handover.is_none() => {
                if machine.state != FailoverState::Online {
                    break;
                }
                // Rule: planned handover on shutdown, at once, without waiting for the
                // buddy's heartbeats to time out.
                let f = &config.failover;
                let limit = f.going_offline_timeout + f.prepare_timeout + config.core.tick * 4;
                handover = Some(shared.clock.now() + millis(limit));
                log.write(shared.clock.now(), "INF", &format!("Shutting down: handing over to {} ...", config.buddy.name));
            }
            _ = interval.tick() => {}
            () = shared.changed.notified() => {}
            // A failed task stopped the agent: stop deciding on frozen inputs, so the process
            // exits and its supervisor restarts it.
            () = shared.shutdown.cancelled() => break,
        }
        tick += 1;
        let now = shared.clock.now();
        let command = if handover.is_some() && !handover_asked {
            handover_asked = true;
            Some(OperatorCommand {
                by: "shutdown".into(),
                command: duet_core::Command::Switch,
            })
        } else {
            commands.try_recv().ok()
        };
        let heartbeats = lock(&shared.heartbeats).clone();
        let sync = shared.sync.as_ref().map(|s| lock(s).clone());
        let sync_up = sync.as_ref().is_some_and(sync_up);
        // The buddy's last report: the rules judge its age themselves (to say how long it has
        // been silent); the failover core only sees a fresh one.
        let last_report = lock(&shared.buddy).clone();
        let buddy = last_report
            .clone()
            .filter(|(_, at)| now.saturating_sub(*at) <= millis(config.status.buddy_timeout));

        let buddy_dead = !sync_up
            && heartbeats
                .iter()
                .filter(|h| h.kind == HeartbeatKind::Agent)
                .all(Heartbeat::exceeded);
        shared.vips.set_buddy(
            last_report.as_ref().map_or(&[][..], |(p, _)| &p.macs),
            buddy_dead,
        );
        let exchange = requests.exchange(
            buddy.as_ref().and_then(|(p, _)| p.request),
            buddy.as_ref().and_then(|(p, _)| p.answer.as_ref()),
        );
        let input = Input {
            agent: config.agent.name.clone(),
            started_at: shared.started_at,
            config: config.failover(),
            // The sync connection is one more path to the buddy: "cut off from the buddy"
            // counts it with the agent heartbeats, once it has worked (like `sync_up`: a sync
            // path with a configuration fault counts no failures and must not keep the buddy
            // alive).
            heartbeats: heartbeats
                .iter()
                .chain(sync.as_ref().filter(|s| s.last_success.is_some()))
                .cloned()
                .collect(),
            sync_up,
            buddy: buddy.as_ref().map(|(p, at)| p.view(*at)),
            command: command.clone(),
            offline_request: exchange.incoming.map(|(_, reason)| reason),
            remembered: shared.remembered,
            answer: exchange.answer.clone(),
            triggers: {
                let mut triggers = triggers(shared);
                triggers.extend(shared.events.trigger());
                triggers
            },
            vip: shared.vips.take_result(),
            nics: nics(shared),
        };
        let rt = runtime.clone();
        let before = machine;
        let decided = shared
            .probes
            .watchdog
            .call(
                "core",
                core_deadline(config),
                tokio::task::spawn_blocking(move || rt.step(&before, &input, now)),
            )
            .await
            .context("core call task failed")?;
        let decision = decided.value.clone();
        if let Some((core, why)) = &decided.failed {
            let line = format!("{core} failed ({why}); the embedded core answers and replaces it");
            log.write(now, "ERR", &line);
            shared
                .events
                .raise(crate::events::Severity::Error, "runtime_error", line);
        }

        for action in &decision.actions {
            match action {
                Action::Log(line) => log.write(now, "INF", line),
                Action::Raise(event) => {
                    let level = match event.severity {
                        duet_core::Severity::Info => "INF",
                        duet_core::Severity::Warning => "WRN",
                        duet_core::Severity::Error | duet_core::Severity::Critical => "ERR",
                    };
                    log.write(now, level, &format!("[{}] {}", event.code, event.message));
                    shared
                        .events
                        .raise(event.severity.into(), &event.code, event.message.clone());
                }
                // Requests and answers: `requests.apply` below.
                Action::AskBuddyOffline(_) | Action::AnswerBuddy(_) => {}
                Action::HandOver => log.write(
                    now,
                    "INF",
                    &format!("Handing over to {}", config.buddy.name),
                ),
                Action::Persist(state) => log.persist(crate::state_file::Remembered {
                    state: *state,
                    at: now,
                }),
                Action::AcquireVip => {
                    log.write(
                        now,
                        "INF",
                        &format!(
                            "Acquiring Virtual IP Address {}",
                            shared.vips.describe().unwrap_or_default()
                        ),
                    );
                    shared.vips.acquire();
                }
                Action::ReleaseVip => {
                    log.write(
                        now,
                        "INF",
                        &format!(
                            "Releasing Virtual IP Address {}",
                            shared.vips.describe().unwrap_or_default()
                        ),
                    );
                    shared.vips.release();
                }
                Action::RunHook(hook) => shared.hooks.run(
                    *hook,
                    vec![
                        ("DUET_STATE".into(), decision.state.state.label().into()),
                        (
                            "DUET_VIPS".into(),
                            shared.vips.describe().unwrap_or_default(),
                        ),
                    ],
                ),
            }
        }
        requests.apply(&exchange, &decision, now);
        record(shared, &before, &decision, command.as_ref(), tick, now);
        if decision.state.state != before.state {
            // A new state decides again at once (Preparing with a dead buddy claims on its
            // first step): no tick period is added to a failover.
            shared.changed.notify_one();
        }
        machine = decision.state;

        let isolated = duet_core::failover::isolated(&heartbeats);
        let observations = Observations {
            agent: config.agent.name.clone(),
            buddy: config.buddy.name.clone(),
            started_at: shared.started_at,
            state: machine.state,
            mode: machine.mode,
            configuration: crate::probes::configuration::check(
                shared
                    .link
                    .configuration_problems()
                    .into_iter()
                    .chain(local_configuration_problems(config))
                    .collect(),
                &settings,
                &fingerprint,
                buddy.as_ref().map(|(p, _)| p),
            )
            .into_iter()
            .chain(shared.vips.configuration_problem())
            .reduce(|a, b| format!("{a}; {b}"))
            .map_or(Check::Ok, Check::Failing),
            heartbeats,
            sync: match &sync {
                None => Check::NotConfigured,
                Some(s) if s.ok => Check::Ok,
                Some(s) => Check::Failing(
                    s.reason
                        .clone()
                        .unwrap_or_else(|| "not connected yet".into()),
                ),
            },
            database: shared.events.database_check(),
            nats: match &config.nats {
                None => Check::NotConfigured,
                Some(_) => shared.probes.nats.check(),
            },
            rte_count: rte_count(shared, &runtime),
            probes: {
                let mut probes = [shared.plugins.probes(), shared.vips.probes()].concat();
                // Rule (reference §4): DB Sync and DB Sync Stack are shown on the Online agent.
                if machine.state == FailoverState::Online {
                    probes.extend(shared.events.rows());
                }
                probes
            },
            nics: nics(shared),
        };
        let received = last_report.as_ref().map(|(p, at)| ReceivedReport {
            report: p.report.clone(),
            received_at: *at,
        });
        let rt = runtime.clone();
        let rules = config.rules();
        let pair = shared
            .probes
            .watchdog
            .call(
                "core",
                core_deadline(config),
                tokio::task::spawn_blocking(move || {
                    rt.evaluate(observations, received, &rules, now)
                }),
            )
            .await
            .context("core call task failed")?;
        if let Some((core, why)) = &pair.failed {
            log.write(
                now,
                "ERR",
                &format!("{core} failed ({why}); the embedded core answers and replaces it"),
            );
        }

        let previous = shared.peer.borrow().clone();
        shared.peer.send_replace(PeerReport {
            agent: config.agent.name.clone(),
            boot: previous.boot,
            fingerprint: previous.fingerprint,
            priority: config.agent.priority,
            state: machine.state,
            mode: machine.mode,
            isolated,
            was_online: duet_core::failover::was_online(&machine, shared.remembered),
            yielding: duet_core::failover::yielding(&machine, &config.failover(), now),
            // Taken when the report leaves ([`Shared::outgoing_report`]).
            outside_age_ms: None,
            report: pair.value.local.clone(),
            tick,
            tick_ms: millis(config.core.tick),
            request: requests.outgoing(),
            answer: requests.answered(),
            // The settings travel only while the fingerprints differ (the buddy then names
            // the key); the common case keeps the report small.
            settings: if buddy
                .as_ref()
                .is_some_and(|(p, _)| p.fingerprint == fingerprint)
            {
                Default::default()
            } else {
                settings.clone()
            },
            macs: previous.macs,
        });
        shared.status.send_replace(Status {
            pair: Some(pair.value),
            decision: Some(DecisionSummary {
                tick,
                at: now,
                state: machine,
                reason: decision.reason.clone(),
            }),
            core: decided.by.to_string(),
        });
        if let Some(tx) = &observer {
            let _ = tx.send(TickRecord {
                tick,
                decision,
                by: decided.by,
                failed: decided.failed,
            });
        }
        if let Some(deadline) = handover {
            let buddy_online = buddy
                .as_ref()
                .is_some_and(|(p, _)| p.state == FailoverState::Online);
            let buddy_gone = !sync_up
                && lock(&shared.heartbeats)
                    .iter()
                    .filter(|h| h.kind == HeartbeatKind::Agent)
                    .all(|h| h.exceeded());
            let line = if buddy_gone {
                Some("Shutting down without handover: the buddy is gone")
            } else if machine.state == FailoverState::Online {
                Some("Shutting down without handover: no healthy buddy to hand over to")
            } else if machine.state == FailoverState::Offline && buddy_online {
                Some("Handover complete: the buddy is Online")
            } else if now >= deadline {
                Some("Shutting down: the handover did not complete in time")
            } else {
                None
            };
            if let Some(line) = line {
                log.write(now, "INF", line);
                break;
            }
        }
    }
    Ok(())
}

/// Counts the decision and remembers it in the history if it changed something.
fn record(
    shared: &Shared,
    before: &MachineState,
    decision: &Decision,
    command: Option<&OperatorCommand>,
    tick: u64,
    now: TimestampMs,
) {
    let changed = decision.state.state != before.state || decision.state.mode != before.mode;
    if decision.state.state != before.state {
        // Each switch step in the event log, with who or what triggered it.
        let by = command.map_or_else(
            || {
                format!(
                    "{} ({})",
                    snake(&decision.reason.code),
                    decision.reason.text
                )
            },
            |c| format!("{:?} by {}", c.command, c.by),
        );
        shared.events.raise(
            crate::events::Severity::Info,
            "switch",
            format!(
                "Failover Status {} => {}: {by}",
                before.state.label(),
                decision.state.state.label()
            ),
        );
    }
    {
        let mut counters = lock(&shared.counters);
        *counters
            .decisions
            .entry(snake(&decision.reason.code))
            .or_default() += 1;
        if decision.state.state != before.state {
            *counters
                .transitions
                .entry(snake(&decision.state.state))
                .or_default() += 1;
        }
    }
    let mut history = lock(&shared.history);
    let new_reason = history
        .back()
        .is_none_or(|last| last.decision.reason.code != decision.reason.code);
    if changed || new_reason || command.is_some() {
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(HistoryEntry {
            decision: DecisionSummary {
                tick,
                at: now,
                state: decision.state,
                reason: decision.reason.clone(),
            },
            by: command.map(|c| c.by.clone()),
        });
    }
}

/// A model enum's JSON name (`buddy_dead`), for labels and keys.
pub(crate) fn snake<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The outcome of one heartbeat attempt.
pub(crate) enum Attempt {
    /// An answer, after this round-trip time.
    Success(Duration),
    /// No answer: counts toward the path's allowed failures.
    Failure(String),
    /// The probe itself cannot work (no privilege, bad socket, a wrong target): shown, but
    /// never counted as a failure of the target — a broken probe must not look like a dead
    /// buddy or an isolation. The failure count stays as it was.
    Fault(String),
    /// The buddy answered but cannot be talked to (another pair key, another frame version):
    /// shown, and it proves the buddy alive, so the failure count is reset.
    Unusable(String),
}

/// Which measured path an attempt belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// `heartbeats[i]`.
    Heartbeat(usize),
    /// The sync connection.
    Sync,
}

/// Whether the sync connection counts as up: it has worked, and has not failed more often in
/// a row than it may.
fn sync_up(sync: &Heartbeat) -> bool {
    sync.last_success.is_some() && !sync.exceeded()
}

/// Writes an attempt's outcome into the path's state; wakes the tick loop on a change.
pub(crate) fn record_attempt(shared: &Shared, slot: Slot, attempt: Attempt, now: TimestampMs) {
    let changed = {
        let mut all;
        let mut sync;
        let state: &mut Heartbeat = match slot {
            Slot::Heartbeat(i) => {
                all = lock(&shared.heartbeats);
                &mut all[i]
            }
            Slot::Sync => match &shared.sync {
                Some(s) => {
                    sync = lock(s);
                    &mut sync
                }
                None => return,
            },
        };
        let before = (state.ok, state.reason.clone());
        match attempt {
            Attempt::Success(rtt) => {
                state.ok = true;
                state.failures = 0;
                state.last_success = Some(now);
                state.reason = None;
                state.rtt_us = Some(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
            }
            Attempt::Failure(why) => {
                state.ok = false;
                state.failures = state.failures.saturating_add(1);
                state.reason = Some(why);
            }
            // The failure count stays as it was: a fault says nothing about the target.
            Attempt::Fault(why) => {
                state.ok = false;
                state.reason = Some(why);
            }
            Attempt::Unusable(why) => {
                state.ok = false;
                state.failures = 0;
                state.reason = Some(why);
            }
        }
        // A path that worked and now fails: an alarm in the event log.
        if before.0 && !state.ok {
            let (code, what) = match slot {
                Slot::Heartbeat(_) => ("heartbeat_failing", format!("Heartbeat {}", state.id)),
                Slot::Sync => ("sync_failing", "Sync Connection".to_string()),
            };
            shared.events.raise(
                crate::events::Severity::Warning,
                code,
                format!(
                    "{what} to {} failing: {}",
                    state.target,
                    state.reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
        before != (state.ok, state.reason.clone())
    };
    if changed {
        shared.changed.notify_one();
    }
}

/// A "Ping to <ip>" or inverted heartbeat: ICMP echo ([`crate::net`]: a raw socket with root or
/// CAP_NET_RAW, else a datagram ping socket where allowed). Only an echo reply from the target
/// counts; an ICMP error is a failure that names it. Without the privilege the row says so, as
/// a probe fault.
async fn icmp_heartbeat(
    shared: Arc<Shared>,
    index: usize,
    hb: HeartbeatConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let target: std::net::IpAddr = hb
        .target
        .parse()
        .context("heartbeat target was validated as an IP")?;
    let ident = u16::try_from(index).unwrap_or(0) ^ (std::process::id() as u16);
    let mut interval = tokio::time::interval(hb.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut icmp: Option<Box<dyn Pinger>> = None;
    let mut seq: u16 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        let now = shared.clock.now();
        if icmp.is_none() {
            match shared
                .network
                .pinger(hb.source, target, ident, hb.timeout)
                .await
            {
                Ok(p) => icmp = Some(p),
                Err(e) => {
                    let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        "ICMP not permitted: duet needs root or CAP_NET_RAW for this heartbeat (a probe fault, not a failure of the target)".to_string()
                    } else {
                        format!(
                            "cannot open an ICMP socket: {e} (a probe fault, not a failure of the target)"
                        )
                    };
                    record_attempt(&shared, Slot::Heartbeat(index), Attempt::Fault(why), now);
                    continue;
                }
            }
        }
        let Some(p) = icmp.as_mut() else {
            continue;
        };
        seq = seq.wrapping_add(1);
        let attempt = match p.ping(seq).await {
            Ok(rtt) => Attempt::Success(rtt),
            Err(PingError::Timeout) => Attempt::Failure(format!(
                "no echo reply from {target} within {}",
                humantime::format_duration(hb.timeout)
            )),
            Err(PingError::Other(e)) => Attempt::Failure(format!("ping to {target} failed: {e}")),
        };
        record_attempt(&shared, Slot::Heartbeat(index), attempt, shared.clock.now());
    }
}

/// Loads the core file at start and whenever it changes; a broken file keeps the old core.
async fn watch_core_file(
    runtime: Arc<CoreRuntime>,
    path: PathBuf,
    every: Duration,
    events: Option<mpsc::UnboundedSender<CoreEvent>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut seen: Option<(u64, Option<SystemTime>)> = None;
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        let stamp = match tokio::fs::metadata(&path).await {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(e) => {
                if seen.is_some() {
                    tracing::warn!(path = %path.display(), error = %e, "core file is gone; keeping {}", runtime.active());
                    seen = None;
                }
                continue;
            }
        };
        if seen == Some(stamp) {
            continue;
        }
        seen = Some(stamp);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "failed to read the core file; keeping {}", runtime.active());
                continue;
            }
        };
        let rt = runtime.clone();
        let origin = CoreOrigin::File(path.clone());
        let loaded = tokio::task::spawn_blocking(move || rt.load(&bytes, origin))
            .await
            .context("core compile task failed")?;
        let event = match loaded {
            Ok(core) => {
                runtime.install(core);
                CoreEvent::Installed(CoreOrigin::File(path.clone()))
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "core file rejected; keeping {}", runtime.active());
                CoreEvent::Rejected(CoreOrigin::File(path.clone()), e.to_string())
            }
        };
        if let Some(tx) = &events {
            let _ = tx.send(event);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
