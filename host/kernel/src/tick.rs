//! The tick loop, as a sequence of named steps: wait for a tick or a change, [`gather`] the
//! inputs, [`Loop::step`] the state machine, [`Loop::carry_out`] its actions, [`Loop::observe`]
//! this agent, [`Loop::evaluate`] the status rules, [`Loop::publish`] the report and the
//! status. The pure parts ([`core_input`], [`handover_end`], [`record`]'s history rule) are
//! tested below without an agent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use duet_base::{Severity, lock, millis, snake};
use duet_core::api::{DecisionSummary, HistoryEntry, Status};
use duet_core::{
    Action, Check, Decision, FailoverState, Heartbeat, Input, MachineState, Observations,
    OperatorCommand, PairReport, ReceivedReport, TimestampMs,
};
use duet_runtime::Answered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::KernelConfig;
use crate::failover_log::{FailoverLog, LogFile};
use crate::paths::{in_doubt, sync_up};
use crate::state_file::{Remembered, StateFile};
use crate::{Exchange, HISTORY, Kernel, PeerReport, Requests, TickRecord};

/// Runs the tick loop until the agent stops, then stops the kernel's other tasks; the
/// failover log, the last state and the hooks are flushed on every exit, error or not.
pub(crate) async fn run(
    kernel: Arc<Kernel>,
    commands: mpsc::Receiver<OperatorCommand>,
    observer: Option<mpsc::UnboundedSender<TickRecord>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = &kernel.config;
    let mut log = FailoverLog::start(LogFile::of(&config.log), config.agent.name.clone());
    let mut ticks = Loop::new(kernel.clone(), commands, observer);
    let result = ticks.run(&shutdown, &mut log).await;
    // Only now stop the API and the probes: the buddy saw the handover through them.
    kernel.stop.cancel();
    tokio::join!(log.close(), ticks.state_file.close());
    kernel.hooks.close().await;
    result
}

/// The tick loop's own state.
struct Loop {
    kernel: Arc<Kernel>,
    commands: mpsc::Receiver<OperatorCommand>,
    observer: Option<mpsc::UnboundedSender<TickRecord>>,
    machine: MachineState,
    requests: Requests,
    /// The remembered state's writer.
    state_file: StateFile,
    tick: u64,
    /// The settings in force ([`Kernel::live_config`]), replaced at a tick boundary when a
    /// reload arrives on `proposed`.
    config: Arc<KernelConfig>,
    proposed: tokio::sync::watch::Receiver<Arc<KernelConfig>>,
    fingerprint: String,
    settings: std::collections::BTreeMap<String, String>,
    /// Set once shutdown is asked while Online: hand over, then stop by this deadline.
    handover: Option<TimestampMs>,
    handover_asked: bool,
}

/// What one tick read before deciding.
struct Sighting {
    now: TimestampMs,
    command: Option<OperatorCommand>,
    heartbeats: Vec<Heartbeat>,
    sync: Option<Heartbeat>,
    /// The buddy's last report, however old: the rules judge its age themselves (to say how
    /// long it has been silent).
    last_report: Option<(PeerReport, TimestampMs)>,
    /// The same report if still fresh (`status.buddy_timeout`): all the failover core sees.
    buddy: Option<(PeerReport, TimestampMs)>,
    exchange: Exchange,
    /// The agent fenced itself, after a stall of this many ms.
    fenced: Option<u64>,
    /// The witness lease as its client sees it; none without a witness.
    witness: Option<duet_core::Witness>,
    /// An operator asked to force online without the witness (the command above says so).
    without_witness: Option<String>,
    /// An operator's force online without the witness is in force: the core decides as if no
    /// witness were configured.
    overridden: bool,
}

impl Sighting {
    fn sync_up(&self) -> bool {
        self.sync.as_ref().is_some_and(sync_up)
    }

    /// The fresh report of the buddy, if any.
    fn buddy(&self) -> Option<&PeerReport> {
        self.buddy.as_ref().map(|(p, _)| p)
    }

    /// The buddy counts as dead, by the core's own rule.
    fn buddy_dead(&self) -> bool {
        duet_core::failover::buddy_dead(&self.heartbeats, self.sync_up())
    }
}

enum Wake {
    Tick,
    Stop,
}

impl Loop {
    fn new(
        kernel: Arc<Kernel>,
        commands: mpsc::Receiver<OperatorCommand>,
        observer: Option<mpsc::UnboundedSender<TickRecord>>,
    ) -> Loop {
        let config = kernel.live_config();
        let mut proposed = kernel.proposed.subscribe();
        proposed.mark_unchanged();
        Loop {
            machine: MachineState::new(
                FailoverState::Offline,
                config.agent.mode,
                kernel.started_at,
            ),
            requests: Requests::default(),
            state_file: StateFile::start(config.state.file.clone()),
            tick: 0,
            fingerprint: config.fingerprint(),
            settings: crate::configuration::shared_settings(&config),
            config,
            proposed,
            handover: None,
            handover_asked: false,
            commands,
            observer,
            kernel,
        }
    }

    async fn run(
        &mut self,
        shutdown: &CancellationToken,
        log: &mut FailoverLog,
    ) -> anyhow::Result<()> {
        let mut interval = tokio::time::interval(self.kernel.config.core.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Wake::Stop = self.wait(&mut interval, shutdown, log).await {
                return Ok(());
            }
            self.tick += 1;
            // First thing after the wait: a loop that was stalled (or a process that was
            // stopped) past the fence bound fences the agent before deciding anything.
            let fenced = crate::fence::check(&self.kernel);
            self.apply_reload();
            let mut seen = self.gather(fenced);
            self.agree_on_bound(&seen);
            self.take_override(&mut seen, log);
            let (decision, answered) = self.step(&seen, log).await?;
            self.carry_out(&decision, &seen, log);
            self.settle(&decision, &seen);
            self.end_override(&seen, log);
            let observations = self.observe(&seen);
            let pair = self.evaluate(observations, &seen, log).await?;
            self.publish(pair, &decision, answered, &seen);
            self.kernel.pulse.beat();
            if seen.fenced.is_some() && self.machine.state == FailoverState::Offline {
                // The core took the fence: the reports tell the truth again by themselves.
                *lock(&self.kernel.fenced) = None;
            }
            if let Some(deadline) = self.handover
                && let Some(line) = handover_end(
                    // The paths as they are now, after this tick's calls.
                    duet_core::failover::buddy_dead(&self.kernel.heartbeats(), seen.sync_up()),
                    seen.buddy()
                        .is_some_and(|p| p.state == FailoverState::Online),
                    self.machine.state,
                    seen.now,
                    deadline,
                )
            {
                log.write(seen.now, Severity::Info, line);
                return Ok(());
            }
        }
    }

    /// Waits for the next tick or a change. Shutdown asked while Online starts the planned
    /// handover (at once, without waiting for the buddy's heartbeats to time out).
    async fn wait(
        &mut self,
        interval: &mut tokio::time::Interval,
        shutdown: &CancellationToken,
        log: &mut FailoverLog,
    ) -> Wake {
        let kernel = &self.kernel;
        // While idle the loop says it is alive (only it can: a stuck loop does not), so a
        // stop's silence counts from when the stop began, not from the last tick.
        let period = kernel.pulse.idle_period(kernel.config.core.tick);
        let mut idle = tokio::time::interval(period.unwrap_or(kernel.config.core.tick));
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled(), if self.handover.is_none() => {
                    if self.machine.state != FailoverState::Online {
                        return Wake::Stop;
                    }
                    let config = &self.config;
                    let f = &config.failover;
                    let limit = f.going_offline_timeout + f.prepare_timeout + config.core.tick * 4;
                    let now = kernel.clock.now();
                    self.handover = Some(now + millis(limit));
                    log.write(now, Severity::Info, &format!("Shutting down: handing over to {} ...", config.buddy.name));
                }
                _ = interval.tick() => {}
                () = kernel.changed.notified() => {}
                // A failed task stopped the agent: stop deciding on frozen inputs, so the process
                // exits and its supervisor restarts it.
                () = kernel.stop.cancelled() => return Wake::Stop,
                _ = idle.tick(), if period.is_some() => {
                    // A stop (SIGSTOP, a VM pause) just ended is judged before saying alive.
                    crate::fence::check(kernel);
                    kernel.pulse.alive();
                    continue;
                }
            }
            return Wake::Tick;
        }
    }

    /// Applies reloaded settings, if any arrived: the paths' allowed failures, the shared
    /// settings compared with the buddy's, the fence bound; then publishes them, so the paths
    /// take their new timings on their next attempt. A longer fence bound waits until the
    /// buddy's settings agree ([`Loop::agree_on_bound`]): until then the buddy may still
    /// count this agent dead on the old timings.
    fn apply_reload(&mut self) {
        if !self.proposed.has_changed().unwrap_or(false) {
            return;
        }
        let config = self.proposed.borrow_and_update().clone();
        let kernel = &self.kernel;
        for (state, hb) in lock(&kernel.heartbeats).iter_mut().zip(&config.heartbeats) {
            state.max_failures = hb.max_failures;
        }
        if let (Some(state), Some(sync)) = (&kernel.sync, &config.sync) {
            lock(state).max_failures = sync.max_failures;
        }
        self.fingerprint = config.fingerprint();
        self.settings = crate::configuration::shared_settings(&config);
        if let Some(bound) = kernel.pulse.bound() {
            kernel
                .pulse
                .set_bound(bound.min(crate::fence::bound(&config)));
        }
        kernel.live.send_replace(config.clone());
        self.config = config;
    }

    /// The fence bound follows the settings in force once the buddy's shared settings (its
    /// paths' timings among them) are the same as this agent's.
    fn agree_on_bound(&self, seen: &Sighting) {
        let pulse = &self.kernel.pulse;
        if let Some(bound) = pulse.bound()
            && seen
                .buddy()
                .is_some_and(|p| p.fingerprint == self.fingerprint)
        {
            let agreed = crate::fence::bound(&self.config);
            if agreed != bound {
                pulse.set_bound(agreed);
            }
        }
    }

    /// Reads the paths, the buddy's report and an operator's command, once.
    fn gather(&mut self, fenced: Option<u64>) -> Sighting {
        let kernel = &self.kernel;
        let now = kernel.clock.now();
        let mut without_witness = None;
        let command = if self.handover.is_some() && !self.handover_asked {
            self.handover_asked = true;
            Some(OperatorCommand {
                by: "shutdown".into(),
                command: duet_core::Command::Switch,
            })
        } else if let Some(by) = lock(&kernel.witness_override).asked.take() {
            without_witness = Some(by.clone());
            Some(OperatorCommand {
                by,
                command: duet_core::Command::ForceOnline,
            })
        } else {
            self.commands.try_recv().ok()
        };
        // The paths first, then the buddy's report: a path records the report it brought
        // before its own success, so a success is never seen without its report.
        let heartbeats = lock(&kernel.heartbeats).clone();
        let sync = kernel.sync.as_ref().map(|s| lock(s).clone());
        let last_report = lock(&kernel.buddy).clone();
        let fresh = millis(self.config.status.buddy_timeout);
        let buddy = last_report
            .clone()
            .filter(|(_, at)| now.saturating_sub(*at) <= fresh);
        let exchange = self.requests.exchange(
            buddy.as_ref().and_then(|(p, _)| p.request),
            buddy.as_ref().and_then(|(p, _)| p.answer.as_ref()),
        );
        let seen = Sighting {
            now,
            command,
            heartbeats,
            sync,
            last_report,
            buddy,
            exchange,
            fenced,
            witness: kernel.witness.as_ref().map(|w| w.view()),
            without_witness,
            overridden: false,
        };
        kernel.vips.set_buddy(
            seen.last_report.as_ref().map_or(&[][..], |(p, _)| &p.macs),
            seen.buddy_dead(),
        );
        // A takeover may be near: its ARP check overlaps the rest of detection. Once the
        // buddy is declared dead the check made ahead is kept for the claim (it goes stale by
        // itself); it is dropped when the buddy is heard again.
        let claimable = matches!(
            self.machine.state,
            FailoverState::Offline | FailoverState::PreparingToGoOnline
        );
        if !in_doubt(&seen.heartbeats, seen.sync.as_ref()) {
            kernel.vips.forget_ahead();
        } else if claimable && !seen.buddy_dead() {
            kernel.vips.look_ahead();
        }
        seen
    }

    /// An operator's force online without the witness: taken (logged and raised with who
    /// gave it) when this agent is Offline or preparing; then the core sees no witness.
    fn take_override(&self, seen: &mut Sighting, log: &mut FailoverLog) {
        let kernel = &self.kernel;
        let mut o = lock(&kernel.witness_override);
        if let Some(by) = seen.without_witness.take() {
            let agent = &kernel.config.agent.name;
            if crate::witness::overridable(self.machine.state) {
                let text = format!(
                    "{agent} forced online without the witness by {by}: the witness lease is not \
                     required until {agent} holds it (the operator vouches that {} is not Online)",
                    kernel.config.buddy.name
                );
                log.write(seen.now, Severity::Warning, &text);
                kernel
                    .alarms
                    .raise(Severity::Warning, "witness_overridden", text);
                o.by = Some(by);
            } else {
                let text = format!(
                    "Command force online without the witness by {by} ignored: this agent is {}",
                    self.machine.state.label()
                );
                log.write(seen.now, Severity::Warning, &text);
            }
        }
        seen.overridden = o.by.is_some();
    }

    /// Ends the override once the agent holds the lease or is Offline again.
    fn end_override(&self, seen: &Sighting, log: &mut FailoverLog) {
        let kernel = &self.kernel;
        let held = kernel.witness.as_ref().is_some_and(|w| w.view().held);
        let mut o = lock(&kernel.witness_override);
        if o.by.is_some() && crate::witness::override_ends(self.machine.state, held) {
            let by = o.by.take().unwrap_or_default();
            let text = if held {
                format!(
                    "The force online without the witness by {by} ended: this agent holds the witness lease"
                )
            } else {
                format!("The force online without the witness by {by} ended: this agent is Offline")
            };
            log.write(seen.now, Severity::Info, &text);
            kernel
                .alarms
                .raise(Severity::Info, "witness_override_ended", text);
        }
    }

    /// `failover.step`, timed by the watchdog; a loaded core that fails is logged and raised.
    async fn step(
        &self,
        seen: &Sighting,
        log: &mut FailoverLog,
    ) -> anyhow::Result<(Decision, Answered<Decision>)> {
        let kernel = &self.kernel;
        let input = core_input(
            &self.config,
            seen,
            kernel.vips.enabled(),
            Extra {
                started_at: kernel.started_at,
                remembered: kernel.remembered,
                triggers: self.triggers(),
                vip: kernel.vips.take_result(),
                nics: kernel.surroundings.nics(),
            },
        );
        #[cfg(debug_assertions)]
        freeze_for_tests().await;
        let rt = kernel.runtime.clone();
        let (before, now) = (self.machine, seen.now);
        let decided = kernel
            .watchdog
            .call(
                "core",
                core_deadline(&kernel.config),
                tokio::task::spawn_blocking(move || rt.step(&before, &input, now)),
            )
            .await
            .context("core call task failed")?;
        if let Some((core, why)) = &decided.failed {
            let line = format!("{core} failed ({why}); the embedded core answers and replaces it");
            log.write(now, Severity::Error, &line);
            kernel.alarms.raise(Severity::Error, "runtime_error", line);
        }
        Ok((decided.value.clone(), decided))
    }

    /// The switch triggers that fire, in this order (the core names the first): plugins, a
    /// runtime error when `watchdog.switch_trigger`, the event log's. (A VIP's NIC going down
    /// is the core's own trigger, from the NICs in its input.)
    fn triggers(&self) -> Vec<String> {
        let kernel = &self.kernel;
        let mut triggers = kernel.surroundings.plugin_triggers();
        if kernel.watchdog_config.switch_trigger
            && let Some(component) = kernel.watchdog.in_error().first()
        {
            triggers.push(format!("rte:{component}"));
        }
        triggers.extend(kernel.surroundings.event_log_trigger());
        triggers
    }

    /// Carries out the decision's actions (requests and answers: [`Loop::settle`]).
    fn carry_out(&self, decision: &Decision, seen: &Sighting, log: &mut FailoverLog) {
        let kernel = &self.kernel;
        let now = seen.now;
        let vips = || kernel.vips.describe().unwrap_or_default();
        for action in &decision.actions {
            match action {
                Action::Log(line) => log.write(now, Severity::Info, line),
                Action::Raise(event) => {
                    let line = format!("[{}] {}", event.code, event.message);
                    log.write(now, event.severity, &line);
                    kernel
                        .alarms
                        .raise(event.severity, &event.code, event.message.clone());
                }
                Action::AskBuddyOffline(_) | Action::AnswerBuddy(_) => {}
                Action::HandOver => {
                    log.write(
                        now,
                        Severity::Info,
                        &format!("Handing over to {}", kernel.config.buddy.name),
                    );
                }
                Action::Persist(state) => self.state_file.persist(Remembered {
                    state: *state,
                    at: now,
                }),
                Action::AcquireVip if kernel.fenced().is_some() => {
                    // Decided before the fence tripped: the next step takes the fence.
                    log.write(
                        now,
                        Severity::Warning,
                        "Fenced: not acquiring the virtual IP",
                    );
                }
                Action::AcquireVip => {
                    log.write(
                        now,
                        Severity::Info,
                        &format!("Acquiring Virtual IP Address {}", vips()),
                    );
                    kernel.vips.acquire();
                }
                Action::ReleaseVip => {
                    log.write(
                        now,
                        Severity::Info,
                        &format!("Releasing Virtual IP Address {}", vips()),
                    );
                    kernel.vips.release();
                }
                Action::RunHook(hook) => kernel.hooks.run(
                    *hook,
                    vec![
                        ("DUET_STATE".into(), decision.state.state.label().into()),
                        ("DUET_VIPS".into(), vips()),
                    ],
                ),
            }
        }
    }

    /// Takes the decision: the requests' bookkeeping, the history and counters, the new state.
    fn settle(&mut self, decision: &Decision, seen: &Sighting) {
        self.requests.apply(&seen.exchange, decision, seen.now);
        record(
            &self.kernel,
            &self.machine,
            decision,
            seen.command.as_ref(),
            self.tick,
            seen.now,
        );
        if decision.state.state != self.machine.state {
            // A new state decides again at once (Preparing with a dead buddy claims on its
            // first step): no tick period is added to a failover.
            self.kernel.changed.notify_one();
        }
        self.machine = decision.state;
        if let Some(witness) = &self.kernel.witness {
            witness.want(crate::witness::wants(self.machine.state));
        }
    }

    /// What this agent shows in its own Status column.
    fn observe(&self, seen: &Sighting) -> Observations {
        let kernel = &self.kernel;
        let config = &self.config;
        let online = self.machine.state == FailoverState::Online;
        let local = kernel
            .link
            .configuration_problems()
            .into_iter()
            .chain(crate::configuration::local_problems_of(config));
        let configuration = crate::configuration::check(
            local.collect(),
            &self.settings,
            &self.fingerprint,
            seen.buddy(),
        )
        .into_iter()
        .chain(kernel.vips.configuration_problem())
        .reduce(|a, b| format!("{a}; {b}"))
        .map_or(Check::Ok, Check::Failing);
        Observations {
            agent: config.agent.name.clone(),
            buddy: config.buddy.name.clone(),
            started_at: kernel.started_at,
            state: self.machine.state,
            mode: self.machine.mode,
            configuration,
            heartbeats: seen.heartbeats.clone(),
            sync: match &seen.sync {
                None => Check::NotConfigured,
                Some(s) if s.ok => Check::Ok,
                Some(s) => Check::Failing(
                    s.reason
                        .clone()
                        .unwrap_or_else(|| "not connected yet".into()),
                ),
            },
            database: kernel.surroundings.database(),
            nats: kernel.surroundings.nats(),
            rte_count: self.rte_count(),
            probes: {
                let mut rows = kernel.surroundings.rows(online);
                rows.push(self.loop_row(seen));
                rows
            },
            nics: kernel.surroundings.nics(),
        }
    }

    /// The Decision loop row: the gaps between ticks (the period is `core.tick`), and the
    /// fence while it holds.
    fn loop_row(&self, seen: &Sighting) -> duet_core::Probe {
        let pulse = &self.kernel.pulse;
        let value = format!(
            "tick gap {} ms (largest {} ms)",
            pulse.gap().as_millis(),
            pulse.max_gap().as_millis()
        );
        duet_core::Probe {
            key: "decision-loop".into(),
            label: "Decision loop".into(),
            status: match seen.fenced {
                Some(stall) => {
                    Check::Failing(format!("stalled for {stall} ms: this agent fenced itself"))
                }
                None => Check::Ok,
            },
            value,
            counts_toward_led: false,
            failures: 0,
            last_success: Some(seen.now),
        }
    }

    /// Distinct components in runtime error: those the watchdog caught (calls past their
    /// deadline), the core when a loaded core.wasm failed and the embedded one answers, and
    /// each plugin in runtime error.
    fn rte_count(&self) -> u32 {
        let kernel = &self.kernel;
        let mut components = kernel.watchdog.check();
        if kernel.runtime.fault().is_some() {
            components.insert("core".into());
        }
        u32::try_from(components.len())
            .unwrap_or(u32::MAX)
            .saturating_add(kernel.surroundings.faults())
    }

    /// `rules.evaluate` of both columns, timed by the watchdog.
    async fn evaluate(
        &self,
        observations: Observations,
        seen: &Sighting,
        log: &mut FailoverLog,
    ) -> anyhow::Result<PairReport> {
        let kernel = &self.kernel;
        let received = seen.last_report.as_ref().map(|(p, at)| ReceivedReport {
            report: p.report.clone(),
            received_at: *at,
        });
        let rt = kernel.runtime.clone();
        let rules = self.config.rules(kernel.vips.enabled());
        let now = seen.now;
        let pair = kernel
            .watchdog
            .call(
                "core",
                core_deadline(&kernel.config),
                tokio::task::spawn_blocking(move || {
                    rt.evaluate(observations, received, &rules, now)
                }),
            )
            .await
            .context("core call task failed")?;
        if let Some((core, why)) = &pair.failed {
            log.write(
                now,
                Severity::Error,
                &format!("{core} failed ({why}); the embedded core answers and replaces it"),
            );
        }
        Ok(pair.value)
    }

    /// Publishes this agent's peer report and status, and the tick to its observer.
    fn publish(
        &self,
        pair: PairReport,
        decision: &Decision,
        answered: Answered<Decision>,
        seen: &Sighting,
    ) {
        let kernel = &self.kernel;
        let config = &self.config;
        let machine = self.machine;
        let previous = kernel.peer.borrow().clone();
        kernel.peer.send_replace(PeerReport {
            agent: config.agent.name.clone(),
            boot: previous.boot,
            fingerprint: self.fingerprint.clone(),
            priority: config.agent.priority,
            state: machine.state,
            mode: machine.mode,
            isolated: duet_core::failover::isolated(&seen.heartbeats),
            was_online: duet_core::failover::was_online(&machine, kernel.remembered),
            yielding: duet_core::failover::yielding(
                &machine,
                &config.state_machine(kernel.vips.enabled()),
                seen.now,
            ),
            // Taken when the report leaves ([`Kernel::outgoing_report`]).
            outside_age_ms: None,
            report: pair.local.clone(),
            tick: self.tick,
            tick_ms: millis(config.core.tick),
            request: self.requests.outgoing(),
            answer: self.requests.answered(),
            // The settings travel only while the fingerprints differ (the buddy then names
            // the key); the common case keeps the report small.
            settings: if seen
                .buddy()
                .is_some_and(|p| p.fingerprint == self.fingerprint)
            {
                Default::default()
            } else {
                self.settings.clone()
            },
            macs: previous.macs,
            fenced: false,
        });
        let mut status = Status {
            pair: Some(pair),
            decision: Some(DecisionSummary {
                tick: self.tick,
                at: seen.now,
                state: machine,
                reason: decision.reason.clone(),
            }),
            core: answered.by.to_string(),
        };
        // The fence tripped during this step (the loop stalled in it): what the step decided
        // predates the fence, which the next step takes.
        if seen.fenced.is_none()
            && let Some(stall) = kernel.fenced()
        {
            crate::fence::overlay(&mut status, stall, seen.now);
        }
        kernel.status.send_replace(Arc::new(status));
        if let Some(tx) = &self.observer {
            let _ = tx.send(TickRecord {
                tick: self.tick,
                decision: decision.clone(),
                by: answered.by,
                failed: answered.failed,
            });
        }
    }
}

/// What the core's input takes from beyond this tick's sighting.
struct Extra {
    started_at: TimestampMs,
    remembered: Option<FailoverState>,
    triggers: Vec<String>,
    vip: Option<duet_core::VipResult>,
    nics: Vec<duet_core::Nic>,
}

/// The state machine's input for this tick.
fn core_input(config: &KernelConfig, seen: &Sighting, vip_enabled: bool, extra: Extra) -> Input {
    Input {
        agent: config.agent.name.clone(),
        started_at: extra.started_at,
        config: config.state_machine(vip_enabled),
        // The sync connection is one more path to the buddy: "cut off from the buddy" counts
        // it with the agent heartbeats, once it has worked (like `sync_up`: a sync path with a
        // configuration fault counts no failures and must not keep the buddy alive).
        heartbeats: seen
            .heartbeats
            .iter()
            .chain(seen.sync.as_ref().filter(|s| s.last_success.is_some()))
            .cloned()
            .collect(),
        sync_up: seen.sync_up(),
        buddy: seen.buddy.as_ref().map(|(p, at)| p.view(*at)),
        command: seen.command.clone(),
        offline_request: seen.exchange.incoming.map(|(_, reason)| reason),
        remembered: extra.remembered,
        answer: seen.exchange.answer.clone(),
        triggers: extra.triggers,
        vip: extra.vip,
        nics: extra.nics,
        fenced: seen.fenced,
        witness: seen.witness.clone().filter(|_| !seen.overridden),
    }
}

/// A test hook (debug builds only): while the file named by `DUET_TEST_FREEZE` exists, the
/// decision loop waits here, as if a core call never returned; the rest of the process runs.
#[cfg(debug_assertions)]
async fn freeze_for_tests() {
    let Some(path) = std::env::var_os("DUET_TEST_FREEZE") else {
        return;
    };
    while std::path::Path::new(&path).exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How long a core call may take, scheduling included, before the watchdog counts it.
fn core_deadline(config: &KernelConfig) -> Duration {
    config.core.deadline * 4 + Duration::from_secs(1)
}

/// Whether a planned handover is over, and the failover log's line saying how.
fn handover_end(
    buddy_dead: bool,
    buddy_online: bool,
    state: FailoverState,
    now: TimestampMs,
    deadline: TimestampMs,
) -> Option<&'static str> {
    if buddy_dead {
        Some("Shutting down without handover: the buddy is gone")
    } else if state == FailoverState::Online {
        Some("Shutting down without handover: no healthy buddy to hand over to")
    } else if state == FailoverState::Offline && buddy_online {
        Some("Handover complete: the buddy is Online")
    } else if now >= deadline {
        Some("Shutting down: the handover did not complete in time")
    } else {
        None
    }
}

/// Counts the decision and remembers it in the history if it changed something.
fn record(
    kernel: &Kernel,
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
        kernel.alarms.raise(
            duet_base::Severity::Info,
            "switch",
            format!(
                "Failover Status {} => {}: {by}",
                before.state.label(),
                decision.state.state.label()
            ),
        );
    }
    {
        let mut counters = lock(&kernel.counters);
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
    let mut history = lock(&kernel.history);
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

#[cfg(test)]
mod tests {
    use duet_core::{HeartbeatKind, RequestReason};

    use super::*;

    fn path(id: &str, failures: u32, last_success: Option<TimestampMs>) -> Heartbeat {
        let mut h = crate::paths::initial(id, HeartbeatKind::Agent, "127.0.0.1:7202", 3);
        h.failures = failures;
        h.ok = failures == 0 && last_success.is_some();
        h.last_success = last_success;
        h
    }

    fn sighting(heartbeat: Heartbeat, sync: Heartbeat) -> Sighting {
        Sighting {
            now: 10_000,
            command: None,
            heartbeats: vec![heartbeat],
            sync: Some(sync),
            last_report: None,
            buddy: None,
            exchange: Exchange {
                incoming: Some((7, RequestReason::Operator)),
                answer: None,
            },
            fenced: None,
            witness: None,
            without_witness: None,
            overridden: false,
        }
    }

    fn extra() -> Extra {
        Extra {
            started_at: 1_000,
            remembered: Some(FailoverState::Online),
            triggers: vec!["plugin:db".into()],
            vip: None,
            nics: Vec::new(),
        }
    }

    #[test]
    fn the_sync_path_counts_with_the_agent_paths_only_once_it_has_worked() {
        let config = crate::config::minimal("a", "b", "[sync]\ntarget = \"127.0.0.1:7302\"");
        let never = sighting(path("hb0", 0, Some(9_000)), path("sync", 5, None));
        let input = core_input(&config, &never, false, extra());
        assert_eq!(input.heartbeats.len(), 1, "a sync path that never worked");
        assert!(!input.sync_up);
        let worked = sighting(path("hb0", 0, Some(9_000)), path("sync", 0, Some(9_900)));
        let input = core_input(&config, &worked, false, extra());
        assert_eq!(input.heartbeats.len(), 2);
        assert!(input.sync_up);
        assert_eq!(input.offline_request, Some(RequestReason::Operator));
        assert_eq!(input.remembered, Some(FailoverState::Online));
        assert_eq!(input.triggers, ["plugin:db"]);
        assert_eq!(input.config.priority, config.agent.priority);
    }

    #[test]
    fn the_buddy_is_dead_by_the_cores_rule_a_working_sync_path_keeps_it_alive() {
        let dead_paths = sighting(path("hb0", 4, Some(1)), path("sync", 0, Some(9_900)));
        assert!(!dead_paths.buddy_dead(), "the sync path is up");
        let all_dead = sighting(path("hb0", 4, Some(1)), path("sync", 4, Some(1)));
        assert!(all_dead.buddy_dead());
        let three = sighting(path("hb0", 3, Some(1)), path("sync", 4, Some(1)));
        assert!(
            !three.buddy_dead(),
            "three failures are allowed, the fourth kills"
        );
    }

    #[test]
    fn a_planned_handover_ends_as_soon_as_the_outcome_is_known() {
        use FailoverState::{Offline, Online};
        let deadline = 5_000;
        assert_eq!(
            handover_end(true, false, Online, 0, deadline),
            Some("Shutting down without handover: the buddy is gone")
        );
        assert_eq!(
            handover_end(false, false, Online, 0, deadline),
            Some("Shutting down without handover: no healthy buddy to hand over to")
        );
        assert_eq!(
            handover_end(false, true, Offline, 0, deadline),
            Some("Handover complete: the buddy is Online")
        );
        assert_eq!(
            handover_end(false, false, FailoverState::GoingOffline, 0, deadline),
            None
        );
        assert_eq!(
            handover_end(
                false,
                false,
                FailoverState::GoingOffline,
                deadline,
                deadline
            ),
            Some("Shutting down: the handover did not complete in time")
        );
    }
}
