//! duet-kernel: the decision kernel — everything on the path from "a heartbeat failed" to "go
//! online". Probes run on their own schedules and write what they saw; the tick loop
//! ([`tick`]) hands it to the core (`failover.step`, then `rules.evaluate`), carries out the
//! decision and publishes the status. The loop never waits on the network: the probes and the
//! peer exchange run apart.
//!
//! - [`config`]: the kernel's sections of the configuration file.
//! - [`peer`]: the peer link (agent heartbeats and the sync connection) over [`net`]; the
//!   agents exchange [`PeerReport`]s: state, Status column, go-offline request and answer.
//! - [`failover_log`] and [`state_file`]: the failover log and the remembered state.
//! - [`configuration`]: the Configuration row (the pair's shared settings compared).
//! - [`reload`]: which settings a configuration reload changes while the kernel runs
//!   ([`Kernel::reload`]); the tick loop applies them at a tick boundary.
//! - [`decision`]: the decision path's own threads, at raised priority; [`fence`]: the agent
//!   whose loop stalls past what its buddy tolerates fences itself.
//! - [`witness`]: the witness gate — the pair's lease as a client outside the kernel sees it
//!   (handed to the core each tick), and whether the agent wants it.
//!
//! The kernel depends on no plugin, event-log, API, NATS or web crate: what those show it
//! comes through [`Surroundings`], what it raises goes to [`Alarms`], and the buddy's event
//! batches go to an [`Inbox`]. It carries out the virtual IP actions itself ([`duet_vip`]).

#![warn(clippy::too_many_lines)]

pub mod config;
pub mod configuration;
pub mod decision;
pub mod failover_log;
pub mod fence;
pub mod net;
mod paths;
pub mod peer;
pub mod reload;
mod report;
mod requests;
pub mod state_file;
mod tick;
pub mod witness;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use duet_base::pulse::Pulse;
use duet_base::watchdog::{Watchdog, WatchdogConfig};
use duet_base::{Alarms, Clock, lock, millis};
use duet_core::api::{HistoryEntry, Status};
use duet_core::{
    Check, FailoverState, Heartbeat, HeartbeatKind, Nic, OperatorCommand, Probe, Report,
    TimestampMs,
};
use duet_runtime::CoreRuntime;
use duet_vip::Vips;
use duet_vip::hooks::Hooks;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::KernelConfig;
use crate::net::{BoxFuture, Listener, Network};
use crate::peer::{LinkStats, PathSpec};

pub use paths::{Attempt, Slot};
pub use report::{PeerReport, TickRecord};
pub use requests::{Exchange, Requests};

/// What the capabilities outside the kernel show it, read once per tick. Each answer comes
/// from a snapshot the capability keeps up to date: none may wait.
pub trait Surroundings: Send + Sync {
    /// The probe plugins' switch triggers that fire now.
    fn plugin_triggers(&self) -> Vec<String>;
    /// The event log's switch trigger (a failing database), when it fires.
    fn event_log_trigger(&self) -> Option<String>;
    /// Components in runtime error outside the kernel's watchdog (plugins).
    fn faults(&self) -> u32;
    /// The watched NICs, each flagged when it carries a virtual IP.
    fn nics(&self) -> Vec<Nic>;
    /// The Database row.
    fn database(&self) -> Check;
    /// The NATS communication row.
    fn nats(&self) -> Check;
    /// The other probe rows, in order: plugins, virtual IPs, and DB Sync while `online`.
    fn rows(&self, online: bool) -> Vec<Probe>;
}

/// Where the buddy's event batches go (the event log's forwarding arrives on the peer port,
/// undecoded): the answer is the highest sequence number held.
pub trait Inbox: Send + Sync {
    fn receive(
        &self,
        origin: String,
        events: serde_json::Value,
    ) -> BoxFuture<'_, Result<u64, Refusal>>;
}

/// Why a batch of events was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// Read, but not stored (out of order, a bad hash, the store down): answered, and the
    /// buddy retries.
    Refused(String),
    /// Not events at all: an unreadable message, like any other (counted, shown in the
    /// Configuration row, the connection ends).
    Unreadable(String),
}

/// What the kernel is built from.
pub struct Parts {
    pub config: KernelConfig,
    /// `[watchdog]`: whether a runtime error is a switch trigger.
    pub watchdog_config: WatchdogConfig,
    pub runtime: Arc<CoreRuntime>,
    pub clock: Clock,
    pub network: Arc<dyn Network>,
    /// Notified by anything that changed what the next decision sees.
    pub changed: Arc<Notify>,
    pub watchdog: Arc<Watchdog>,
    pub surroundings: Arc<dyn Surroundings>,
    pub alarms: Arc<dyn Alarms>,
    pub inbox: Arc<dyn Inbox>,
    pub vips: Arc<Vips>,
    pub hooks: Hooks,
    /// Where the decision path's tasks run ([`decision::DecisionRuntime`], or the caller's
    /// runtime in the simulation).
    pub decision: tokio::runtime::Handle,
    /// The decision loop's pulse ([`fence::pulse`]; never late in the simulation).
    pub pulse: Arc<Pulse>,
    /// The pair's witness ([`witness`]); none when `[witness]` is not configured.
    pub witness: Option<Arc<dyn witness::Witness>>,
}

/// How many decisions the history keeps.
const HISTORY: usize = 1_000;

/// Counters for `/metrics`.
#[derive(Default, Clone)]
pub struct Counters {
    /// Decisions by reason code.
    pub decisions: std::collections::BTreeMap<String, u64>,
    /// Transitions by the state entered.
    pub transitions: std::collections::BTreeMap<String, u64>,
}

/// The kernel of one agent: its paths to the buddy, the buddy's last report, the decisions.
/// Its state is its own; others read it through the methods below.
pub struct Kernel {
    /// The settings as started; those that change live are read from `live`.
    config: KernelConfig,
    /// The settings in force: published by the tick loop when it applied a reload.
    live: watch::Sender<Arc<KernelConfig>>,
    /// The newest reloaded settings, for the tick loop to apply at its next tick.
    proposed: watch::Sender<Arc<KernelConfig>>,
    watchdog_config: WatchdogConfig,
    started_at: TimestampMs,
    clock: Clock,
    /// Operators' commands for the next tick (bounded: a flood is refused, not queued).
    commands: mpsc::Sender<OperatorCommand>,
    /// The receiving end, taken by the tick loop when it starts.
    command_rx: Mutex<Option<mpsc::Receiver<OperatorCommand>>>,
    /// Decisions that changed something, newest last.
    history: Mutex<VecDeque<HistoryEntry>>,
    counters: Mutex<Counters>,
    /// Stops the API, the probes, the tick loop and long-lived responses: cancelled by the tick
    /// loop once it has handed over (planned shutdown), or when a task fails.
    stop: CancellationToken,
    runtime: Arc<CoreRuntime>,
    /// The remembered state read from the state file at start.
    remembered: Option<FailoverState>,
    heartbeats: Mutex<Vec<Heartbeat>>,
    /// The sync connection, measured like a heartbeat path; `None` when not configured.
    sync: Option<Mutex<Heartbeat>>,
    /// The buddy's newest report and when it arrived.
    buddy: Mutex<Option<(PeerReport, TimestampMs)>>,
    network: Arc<dyn Network>,
    link: LinkStats,
    peer: watch::Sender<PeerReport>,
    /// Shared as an `Arc`: a reader holds the channel's lock only for a pointer copy, never
    /// for a deep copy that a preempted reader could stretch while the loop waits to publish.
    status: watch::Sender<Arc<Status>>,
    changed: Arc<Notify>,
    watchdog: Arc<Watchdog>,
    surroundings: Arc<dyn Surroundings>,
    alarms: Arc<dyn Alarms>,
    inbox: Arc<dyn Inbox>,
    vips: Arc<Vips>,
    hooks: Hooks,
    decision: tokio::runtime::Handle,
    pulse: Arc<Pulse>,
    /// Fenced, and the stall that fenced it: until the loop decided Offline.
    fenced: Mutex<Option<u64>>,
    witness: Option<Arc<dyn witness::Witness>>,
    /// An operator's force online without the witness, asked or in force.
    witness_override: Mutex<witness::Override>,
}

impl Kernel {
    /// Builds the kernel; reads the state file, so the first report already carries a
    /// remembered Online.
    pub fn new(parts: Parts) -> anyhow::Result<Arc<Kernel>> {
        let config = parts.config;
        let now = parts.clock.now();
        let heartbeats = config
            .heartbeats
            .iter()
            .map(|h| paths::initial(&h.id, h.kind, &h.target, h.max_failures))
            .collect();
        let sync = config.sync.as_ref().map(|s| {
            Mutex::new(paths::initial(
                "sync",
                HeartbeatKind::Agent,
                &s.target.to_string(),
                s.max_failures,
            ))
        });
        // Read before the first report: the buddy's tie-break must see this agent's remembered
        // Online in the very first report it receives, not one tick later.
        let remembered = state_file::read(&config.state.file).map(|r| r.state);
        if let Some(state) = remembered {
            tracing::info!(file = %config.state.file.display(), state = state.label(), "remembered state");
        }
        let first = first_report(&config, remembered, now)?;
        let (commands, command_rx) = mpsc::channel(16);
        let live = Arc::new(config.clone());
        Ok(Arc::new(Kernel {
            live: watch::Sender::new(live.clone()),
            proposed: watch::Sender::new(live),
            started_at: now,
            commands,
            command_rx: Mutex::new(Some(command_rx)),
            clock: parts.clock,
            history: Mutex::new(VecDeque::new()),
            counters: Mutex::new(Counters::default()),
            runtime: parts.runtime,
            remembered,
            stop: CancellationToken::new(),
            heartbeats: Mutex::new(heartbeats),
            sync,
            buddy: Mutex::new(None),
            network: parts.network,
            link: LinkStats::default(),
            peer: watch::Sender::new(first),
            status: watch::Sender::new(Arc::new(Status::default())),
            changed: parts.changed,
            watchdog: parts.watchdog,
            surroundings: parts.surroundings,
            alarms: parts.alarms,
            inbox: parts.inbox,
            vips: parts.vips,
            hooks: parts.hooks,
            decision: parts.decision,
            pulse: parts.pulse,
            fenced: Mutex::new(None),
            witness: parts.witness,
            witness_override: Mutex::new(witness::Override::default()),
            watchdog_config: parts.watchdog_config,
            config,
        }))
    }

    /// Listens on the peer port (`peer.listen`).
    pub async fn listen(&self) -> anyhow::Result<Box<dyn Listener>> {
        let at = self.config.peer.listen;
        self.network
            .listen(at)
            .await
            .with_context(|| format!("failed to listen on {at} (peer.listen)"))
    }

    /// Starts the kernel's tasks on the decision runtime: the peer server on `listener`, one
    /// task per path to the buddy or the outside, the virtual IPs' renewals, and the tick loop,
    /// which ends the others through [`Kernel::stop`] once `shutdown` is asked and the
    /// handover is done; and the fence thread.
    pub fn spawn(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
        listener: Box<dyn Listener>,
        observer: Option<mpsc::UnboundedSender<TickRecord>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        duet_base::fds::refill();
        let stop = self.stop.clone();
        let on = &self.decision;
        tasks.spawn_on(peer::serve(self.clone(), listener, stop.clone()), on);
        if self.vips.enabled() {
            tasks.spawn_on(self.vips.clone().run(stop.clone()), on);
        }
        for (i, hb) in self.config.heartbeats.iter().enumerate() {
            match hb.kind {
                HeartbeatKind::Agent => {
                    let spec = PathSpec {
                        target: hb.target.parse().context("validated as address:port")?,
                        source: hb.source,
                        interval: hb.interval,
                        timeout: hb.timeout,
                    };
                    let path = peer::path(self.clone(), Slot::Heartbeat(i), spec, stop.clone());
                    tasks.spawn_on(path, on)
                }
                HeartbeatKind::Ping | HeartbeatKind::Inverted => {
                    tasks.spawn_on(paths::icmp(self.clone(), i, hb.clone(), stop.clone()), on)
                }
            };
        }
        if let Some(sync) = &self.config.sync {
            let spec = PathSpec {
                target: sync.target,
                source: sync.source,
                interval: sync.interval,
                timeout: sync.timeout,
            };
            tasks.spawn_on(peer::path(self.clone(), Slot::Sync, spec, stop.clone()), on);
        }
        let commands = lock(&self.command_rx)
            .take()
            .context("the kernel's tasks were started twice")?;
        tasks.spawn_on(tick::run(self.clone(), commands, observer, shutdown), on);
        fence::watch(self.clone()).context("cannot start the fence thread")?;
        Ok(())
    }

    /// The kernel's settings as started. Those a reload changes ([`reload`]):
    /// [`Kernel::live_config`].
    pub fn config(&self) -> &KernelConfig {
        &self.config
    }

    /// The settings in force: as started, with what reloads changed since, once the tick loop
    /// applied them.
    pub fn live_config(&self) -> Arc<KernelConfig> {
        self.live.borrow().clone()
    }

    /// Takes the live settings of a new, validated configuration ([`reload::merge`]); the tick
    /// loop applies them at its next tick. Returns what differs from the running settings:
    /// taken, or waiting for a restart. Never waits.
    pub fn reload(&self, new: &KernelConfig) -> reload::Changes {
        let running = self.proposed.borrow().clone();
        let (merged, changes) = reload::merge(&running, new);
        if !changes.applied.is_empty() {
            self.proposed.send_replace(Arc::new(merged));
            self.changed.notify_one();
        }
        changes
    }

    /// Waits, at most `within`, until the tick loop applied the newest reloaded settings (they
    /// are then in force: the next attempt of each path uses them); whether it did.
    pub async fn reloaded(&self, within: std::time::Duration) -> bool {
        let newest = self.proposed.borrow().clone();
        let mut live = self.live.subscribe();
        let applied = live.wait_for(|c| Arc::ptr_eq(c, &newest));
        matches!(tokio::time::timeout(within, applied).await, Ok(Ok(_)))
    }

    /// The agent's clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Cancelled when the agent stops (after the handover), or when a task failed.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Gives an operator's command to the next tick; refused when too many wait already.
    pub fn command(&self, command: OperatorCommand) -> Result<(), &'static str> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "too many commands are waiting",
            mpsc::error::TrySendError::Closed(_) => "the agent is stopping",
        })
    }

    /// An operator's force online without the witness, for the next tick: the agent goes
    /// online as if no witness were configured, until it holds the lease or is Offline again
    /// (see [`witness::Override`]). Refused when no witness is configured.
    pub fn force_online_without_witness(&self, by: String) -> Result<(), &'static str> {
        if self.witness.is_none() {
            return Err("no witness is configured ([witness]): use force online");
        }
        lock(&self.witness_override).asked = Some(by);
        self.changed.notify_one();
        Ok(())
    }

    /// The witness lease as this agent's client sees it now; none without a witness.
    pub fn witness_lease(&self) -> Option<duet_core::api::WitnessLease> {
        let view = self.witness.as_ref()?.view();
        Some(duet_core::api::WitnessLease {
            holder: view.holder,
            held: view.held,
            reachable: view.reachable,
            overridden_by: self.witness_override(),
        })
    }

    /// The operator whose force online without the witness is in force, if any.
    pub fn witness_override(&self) -> Option<String> {
        lock(&self.witness_override).by.clone()
    }

    /// A sender of operator commands, as the API gives them (for tests and tools).
    pub fn commands(&self) -> mpsc::Sender<OperatorCommand> {
        self.commands.clone()
    }

    /// The status as last published.
    pub fn status(&self) -> Status {
        let status = self.status.borrow().clone();
        Status::clone(&status)
    }

    /// Shows a fence in the published status at once: the loop that would publish it is the
    /// one that stalled, and an API that says Online while the virtual IPs are gone would
    /// mislead the operator.
    pub(crate) fn show_fence(&self, stall: u64) {
        self.status.send_modify(|published| {
            let mut status = Status::clone(published);
            fence::overlay(&mut status, stall, self.clock.now());
            *published = Arc::new(status);
        });
    }

    /// Every status from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    /// The newest `limit` decisions that changed something, oldest first.
    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        let all = lock(&self.history);
        all.iter()
            .skip(all.len().saturating_sub(limit))
            .cloned()
            .collect()
    }

    /// Decisions by reason and transitions by state, since start.
    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }

    /// The paths' last measurements (heartbeats, in configuration order).
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        lock(&self.heartbeats).clone()
    }

    /// What a path last measured.
    pub fn path(&self, slot: Slot) -> Option<Heartbeat> {
        match slot {
            Slot::Sync => self.sync.as_ref().map(|s| lock(s).clone()),
            Slot::Heartbeat(i) => lock(&self.heartbeats).get(i).cloned(),
        }
    }

    /// The peer link's counters.
    pub fn link(&self) -> &LinkStats {
        &self.link
    }

    /// The core runtime (its faults and fallbacks).
    pub fn runtime(&self) -> &Arc<CoreRuntime> {
        &self.runtime
    }

    /// The decision loop's pulse: the gaps between its ticks, and whether it is late.
    pub fn pulse(&self) -> &Pulse {
        &self.pulse
    }

    /// Fenced (the stall that fenced it), until the loop decided Offline.
    pub fn fenced(&self) -> Option<u64> {
        *lock(&self.fenced)
    }

    /// The buddy's last report and when it arrived, however old.
    pub fn buddy_report(&self) -> Option<(PeerReport, TimestampMs)> {
        lock(&self.buddy).clone()
    }

    /// This agent's report as it leaves now: the published one, with the age of its freshest
    /// inverted success taken from the live heartbeats at this moment. Taken when the tick
    /// built the report, the age would be short by the time until the next exchange, and the
    /// buddy would date this agent's outside success later than it was — enough to count a
    /// success from before a shared outage as evidence after it.
    ///
    /// A late loop fences the agent first ([`fence`]); a fenced agent reports itself Offline
    /// and yielding, and accepts the buddy's pending request, whatever its loop last said.
    pub(crate) fn outgoing_report(&self) -> PeerReport {
        let fenced = fence::check(self);
        let mut report = self.peer.borrow().clone();
        if fenced.is_some() {
            report.fenced = true;
            report.state = FailoverState::Offline;
            report.yielding = Some(0);
            report.request = None;
            report.was_online = false;
            let request = lock(&self.buddy).as_ref().and_then(|(p, _)| p.request);
            report.answer = request.map(|(id, _)| (id, duet_core::Answer::Accepted));
        }
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
                report.newer_than(old),
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

/// The report before the first tick: Offline, with the remembered Online for the tie-break.
fn first_report(
    config: &KernelConfig,
    remembered: Option<FailoverState>,
    now: TimestampMs,
) -> anyhow::Result<PeerReport> {
    let mut boot = [0u8; 8];
    getrandom::fill(&mut boot).map_err(|e| anyhow::anyhow!("failed to read random bytes: {e}"))?;
    Ok(PeerReport {
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
        settings: configuration::shared_settings(config),
        macs: duet_vip::netif::all_macs()
            .iter()
            .map(duet_vip::arp::format_mac)
            .collect(),
        fenced: false,
    })
}
