//! The failover state machine: `step(state, input, now) -> decision`.
//!
//! One exhaustive `match` over the state; each arm names the rule it implements (the rules are
//! those of "Failover behaviour" in DESIGN.md, and `docs/failover-rules.md` lists them). Every
//! decision carries a machine-readable reason.

use crate::{
    Action, Answer, BuddyView, Command, Decision, Event, FailoverConfig, FailoverState, Heartbeat,
    HeartbeatKind, Hook, Input, MachineState, Mode, Nic, OperatorCommand, Reason, ReasonCode,
    RequestReason, Severity, TimestampMs, VipResult,
};

/// One step of the state machine, with every safeguard on.
pub fn step(state: &MachineState, input: &Input, now: TimestampMs) -> Decision {
    step_with(state, input, now, Safeguards::default())
}

/// Safeguards that exist only to be switched off by the model check, which must prove it
/// catches their absence. Production code calls [`step`], which has them all on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Safeguards {
    /// The deterministic tie-break; off, every agent believes it wins.
    pub tie_break: bool,
    /// The ping-pong guard; off, no switch is ever "too recent".
    pub ping_pong_guard: bool,
    /// An isolated Online agent hands over only on fresh evidence that its buddy reaches the
    /// outside now; off, it hands over whenever the buddy's last report did not say isolated.
    pub fresh_evidence: bool,
    /// The tie-break puts an agent that was Online before its restart first; off, it starts
    /// from the priority.
    pub remembered_first: bool,
    /// With a witness, an Online agent whose lease deadline passed steps down unless its buddy
    /// confirms over the peer link that it stays Offline; off, it stays Online regardless.
    pub renew_before_deadline: bool,
}

impl Default for Safeguards {
    fn default() -> Self {
        Safeguards {
            tie_break: true,
            ping_pong_guard: true,
            fresh_evidence: true,
            remembered_first: true,
            renew_before_deadline: true,
        }
    }
}

/// [`step`] with chosen safeguards (for the model check's mutation tests).
pub fn step_with(
    state: &MachineState,
    input: &Input,
    now: TimestampMs,
    safeguards: Safeguards,
) -> Decision {
    let mut state = *state;
    // Start-up ends the first time the buddy is heard from.
    state.met_buddy |= input.buddy.is_some();
    // Isolation is dated from the first step that saw it: only evidence newer than that counts.
    // When it ends, so do the evidence gathered during it and an operator's override.
    if isolated(&input.heartbeats) {
        state.isolated_since = state.isolated_since.or(Some(now));
    } else {
        state.isolated_since = None;
        state.evidence_failures = None;
        if state.state == FailoverState::Online {
            state.forced = false;
        }
    }
    // Rule: a mode change applies in every state, at once, and moves nothing else.
    if let Some(OperatorCommand {
        by,
        command: Command::SetMode(mode),
    }) = &input.command
    {
        let mut next = state;
        next.mode = *mode;
        let text = format!("mode set to {} by {by}", mode_label(*mode));
        return Decision {
            state: next,
            actions: vec![Action::Log(format!(
                "Failover Mode => {}",
                mode_label(*mode)
            ))],
            reason: Reason {
                code: ReasonCode::Operator,
                text,
            },
        };
    }
    // Rule: a fenced agent (its decision loop stalled past what the buddy tolerates; the host
    // already removed the virtual IP and told the buddy it yields) stops being Online or
    // claiming at once, and counts it as a switch: it yields to its buddy.
    if let Some(stall) = input.fenced
        && state.state != FailoverState::Offline
    {
        return fenced(state, input, stall, now);
    }
    let view = View::of(&state, input);
    let d = Step {
        state,
        actions: Vec::new(),
        input,
        view,
        now,
        safeguards,
    };
    let decision = match state.state {
        FailoverState::Offline => d.offline(),
        FailoverState::PreparingToGoOnline => d.preparing(),
        FailoverState::GoingOnline => d.going_online(),
        FailoverState::Online => d.online(),
        FailoverState::GoingOffline => d.going_offline(),
    };
    note_ignored_command(input, decision)
}

/// The agent fenced itself: Offline now, the virtual IP released (already gone: the host
/// removed it before this step), the fault hook run and the event raised.
fn fenced(mut state: MachineState, input: &Input, stall: u64, now: TimestampMs) -> Decision {
    let text = format!(
        "the decision loop stalled for {stall} ms: this agent fenced itself and yields to its buddy"
    );
    let mut actions = vec![Action::Log(format!("Failover Status => Offline ({text})"))];
    if input.offline_request.is_some() {
        // Rule: every request gets an answer.
        actions.push(Action::AnswerBuddy(Answer::Accepted));
    }
    if input.config.vip_enabled {
        actions.push(Action::ReleaseVip);
    }
    actions.push(Action::Persist(FailoverState::Offline));
    actions.push(Action::RunHook(Hook::Fault));
    actions.push(Action::Raise(Event {
        severity: Severity::Error,
        code: "fenced".into(),
        message: text.clone(),
    }));
    state.state = FailoverState::Offline;
    state.since = now;
    state.last_switch = Some(now);
    state.forced = false;
    Decision {
        state,
        actions,
        reason: Reason {
            code: ReasonCode::Fenced,
            text,
        },
    }
}

/// Rule: an operator's switch or force-online that this step could not act on (it arrived
/// during a transition, or asks for what already is) is logged with the reason, not dropped.
fn note_ignored_command(input: &Input, mut decision: Decision) -> Decision {
    if let Some(OperatorCommand { by, command }) = &input.command
        && decision.reason.code != ReasonCode::Operator
    {
        let name = match command {
            Command::Switch => "switch",
            Command::ForceOnline => "force online",
            Command::SetMode(_) => return decision,
        };
        decision.actions.push(Action::Log(format!(
            "Command {name} by {by} ignored: this agent is {} ({})",
            decision.state.state.label(),
            decision.reason.text
        )));
    }
    decision
}

/// Every inverted heartbeat reached its allowed failures: this agent is cut off from the
/// outside (false when none is configured). The host tells its buddy this in its peer report.
///
/// Rule: isolation counts one failure sooner than a dead buddy (`reached`, not `exceeded`).
/// When the Online agent's cables are pulled, its inverted heartbeats and its buddy's agent
/// heartbeats start failing at the same moment; with equal intervals the isolated agent thus
/// always steps down an attempt before its buddy takes over, never both Online at once.
pub fn isolated(heartbeats: &[Heartbeat]) -> bool {
    all_reached(heartbeats, HeartbeatKind::Inverted)
}

/// The buddy counts as dead: every agent heartbeat exceeded its allowed failures and the sync
/// connection is down. The host reads it with this rule too (a lapsing VIP lease, a planned
/// handover without a buddy).
pub fn buddy_dead(heartbeats: &[Heartbeat], sync_up: bool) -> bool {
    !sync_up && all_exceeded(heartbeats, HeartbeatKind::Agent)
}

/// When the freshest inverted heartbeat last succeeded: what an agent tells its buddy (as an
/// age) so that the buddy can tell "reaches the outside now" from "did before this outage".
pub fn outside_ok_at(heartbeats: &[Heartbeat]) -> Option<TimestampMs> {
    heartbeats
        .iter()
        .filter(|h| h.kind == HeartbeatKind::Inverted)
        .filter_map(|h| h.last_success)
        .max()
}

/// Rule: a NIC that carries a virtual IP and whose link is down is a switch trigger
/// (`nic:<name>`): on the Online agent it hands over to a healthy buddy, like any trigger.
pub fn nic_triggers(nics: &[Nic]) -> impl Iterator<Item = String> + '_ {
    nics.iter()
        .filter(|n| n.carries_vip && !n.up)
        .map(|n| format!("nic:{}", n.name))
}

/// The agent was Online before its restart and has not switched since — or is on its way back
/// online (preparing, acquiring the VIP): it gets the tie-break first (continuity), and the
/// host reports it to the buddy as `was-online`. Keeping it while the agent claims matters:
/// two agents that meet while both prepare settle it by the tie-break, and the remembered
/// agent must not lose the place its claim rests on.
pub fn was_online(state: &MachineState, remembered: Option<FailoverState>) -> bool {
    let claiming = matches!(
        state.state,
        FailoverState::PreparingToGoOnline | FailoverState::GoingOnline
    );
    remembered == Some(FailoverState::Online) && (state.last_switch.is_none() || claiming)
}

/// How long ago the agent stepped down or gave up going online, while that is within
/// `min_switch_interval_ms` and it is not Online (none otherwise): it will not claim (ping-pong
/// guard), so its buddy takes over. The host reports it to the buddy as `yielding`.
pub fn yielding(state: &MachineState, config: &FailoverConfig, now: TimestampMs) -> Option<u64> {
    let age = now.saturating_sub(state.last_switch?);
    let not_online = matches!(
        state.state,
        FailoverState::Offline | FailoverState::GoingOffline
    );
    (not_online && age < config.min_switch_interval_ms).then_some(age)
}

/// At least one heartbeat of `kind`, and all of them exceeded their allowed failures.
fn all_exceeded(heartbeats: &[Heartbeat], kind: HeartbeatKind) -> bool {
    let mut paths = heartbeats.iter().filter(|h| h.kind == kind).peekable();
    paths.peek().is_some() && paths.all(Heartbeat::exceeded)
}

/// At least one heartbeat of `kind`, and all of them reached their allowed failures (one
/// failure before [`all_exceeded`]).
fn all_reached(heartbeats: &[Heartbeat], kind: HeartbeatKind) -> bool {
    let mut paths = heartbeats.iter().filter(|h| h.kind == kind).peekable();
    paths.peek().is_some() && paths.all(|h| h.failures >= h.max_failures.max(1))
}

/// What the inputs say, derived once per step.
struct View {
    /// Every agent heartbeat exceeded its allowed failures and the sync connection is down.
    /// Pings prove a path, not the process: they never keep a dead buddy alive.
    buddy_dead: bool,
    /// Every inverted heartbeat reached its allowed failures ([`isolated`]).
    isolated: bool,
    /// Every agent heartbeat path (the sync connection among them, when the host passes it)
    /// reached its allowed failures: counted like isolation, one failure before the buddy
    /// declares this agent dead.
    cut_off: bool,
    /// The buddy, when it is alive and we have its report.
    buddy: Option<BuddyView>,
    /// This agent was Online before its restart and has not switched since.
    was_online: bool,
}

impl View {
    fn of(state: &MachineState, input: &Input) -> View {
        let buddy_dead = buddy_dead(&input.heartbeats, input.sync_up);
        View {
            buddy_dead,
            isolated: isolated(&input.heartbeats),
            cut_off: all_reached(&input.heartbeats, HeartbeatKind::Agent),
            buddy: if buddy_dead {
                None
            } else {
                input.buddy.clone()
            },
            was_online: was_online(state, input.remembered),
        }
    }
}

struct Step<'a> {
    state: MachineState,
    actions: Vec<Action>,
    input: &'a Input,
    view: View,
    now: TimestampMs,
    safeguards: Safeguards,
}

impl Step<'_> {
    fn offline(mut self) -> Decision {
        if let Some(cmd) = &self.input.command {
            let by = &cmd.by;
            match cmd.command {
                // Rule: force online — the operator vouches for it; the buddy is asked to yield.
                Command::ForceOnline => {
                    let text = format!("forced online by {by}");
                    self.state.forced = true;
                    return self.prepare(RequestReason::Operator, ReasonCode::Operator, text);
                }
                // Rule: a switch asked of the backup is a planned handover towards it.
                Command::Switch => {
                    let text = format!("switch requested by {by}");
                    self.state.forced = true;
                    return self.prepare(RequestReason::Operator, ReasonCode::Operator, text);
                }
                Command::SetMode(_) => {}
            }
        }
        if self.input.offline_request.is_some() {
            // Rule: a request to go offline is answered even when already offline (idempotent).
            self.actions.push(Action::AnswerBuddy(Answer::Accepted));
        }
        if self.view.buddy_dead {
            return self.buddy_looks_dead();
        }
        match self.view.buddy.clone() {
            // Rule: the buddy hands over (planned switch, shutdown, isolation, trigger) or yields
            // after stepping down: take over at once. The ping-pong guard does not apply: the
            // buddy is leaving, and if nobody moves, nobody is Online. Should both yield, their
            // requests cross and the tie-break settles it. A buddy that yields only because it
            // is isolated does not lift the guard (the tie-break rule below decides).
            Some(buddy)
                if (buddy.state == FailoverState::GoingOffline
                    || (self.buddy_yields_to_us(&buddy) && !buddy.isolated))
                    && !self.view.isolated =>
            {
                let text = if buddy.state == FailoverState::GoingOffline {
                    format!("{} is going offline: taking over", buddy.name)
                } else {
                    format!("{} stepped down and yields: taking over", buddy.name)
                };
                self.prepare(RequestReason::Handover, ReasonCode::BuddyRequest, text)
            }
            // Rule: neither agent is Online and both are alive: the deterministic tie-break
            // (was Online before a restart, then priority, then name) picks one; an isolated
            // buddy cannot serve, so we go.
            Some(buddy) if buddy.state == FailoverState::Offline && !self.view.isolated => {
                if self.recent_switch() {
                    // Rule: the agent that just stepped down does not reclaim (no fail-back).
                    let text = format!(
                        "this agent switched recently; leaving {} to take over. Preventing ping-pong.",
                        buddy.name
                    );
                    self.stay(ReasonCode::PingPongGuard, &text)
                } else if self.wins_tie_break(&buddy) {
                    let text = format!(
                        "neither agent is online; {} wins the tie-break over {}",
                        self.input.agent, buddy.name
                    );
                    self.prepare(RequestReason::TieBreak, ReasonCode::StartupTieBreak, text)
                } else if buddy.isolated {
                    let text = format!("neither agent is online and {} is isolated", buddy.name);
                    self.prepare(RequestReason::TieBreak, ReasonCode::StartupTieBreak, text)
                } else {
                    let text =
                        format!("neither agent is online; {} wins the tie-break", buddy.name);
                    self.stay(ReasonCode::LostTieBreak, &text)
                }
            }
            Some(buddy) if self.view.isolated => {
                let text = format!(
                    "all inverted heartbeats fail; {} is {}",
                    buddy.name,
                    buddy.state.label()
                );
                self.stay(ReasonCode::Isolated, &text)
            }
            Some(buddy) => {
                let text = format!("{} is alive and {}", buddy.name, buddy.state.label());
                self.stay(ReasonCode::BuddyAlive, &text)
            }
            None => self.stay(
                ReasonCode::BuddyAlive,
                "no fresh status report from the buddy, but its heartbeats have not failed yet",
            ),
        }
    }

    /// Offline, and every agent heartbeat fails with the sync connection down.
    fn buddy_looks_dead(self) -> Decision {
        // Rule: takeover only when all agent heartbeats fail and sync is down, unless isolated.
        if self.view.isolated {
            return self.stay(
                ReasonCode::Isolated,
                "all inverted heartbeats fail: this agent is the isolated one",
            );
        }
        // Rule: at start, a buddy never heard from gets a bounded time to show up, so two
        // agents starting together meet in the tie-break instead of both claiming. Within the
        // wait a buddy is not declared dead either while no heartbeat to it has ever worked,
        // even once heard from: the first report of a buddy that starts later can arrive
        // before this agent's own heartbeats to it had a chance to succeed (their failures
        // still count its absence). An agent that was Online before its restart takes its
        // place back at once.
        let wait = self.input.config.startup_wait_ms;
        let starting = !self.state.met_buddy;
        let never_reached = !self
            .input
            .heartbeats
            .iter()
            .any(|h| h.kind == HeartbeatKind::Agent && h.last_success.is_some());
        if !self.view.was_online
            && (starting || never_reached)
            && self.now < self.input.started_at.saturating_add(wait)
        {
            let text = format!(
                "starting up: waiting up to {} s for the buddy before taking over",
                wait / 1000
            );
            return self.stay(ReasonCode::StartingUp, &text);
        }
        // Rule: manual mode moves nothing on heartbeats — except at start-up, where it decides
        // like automatic mode (or a pair restarted in manual mode would never come online).
        if self.state.mode == Mode::Manual && !starting {
            return self.stay(
                ReasonCode::ManualMode,
                "the buddy looks dead, but manual mode: an operator decides",
            );
        }
        if self.recent_switch() {
            // Rule: no automatic switch within min_switch_interval of the previous one.
            let text = "all heartbeat paths are failing, but this agent switched too recently. Preventing ping-pong.";
            return self.stay(ReasonCode::PingPongGuard, text);
        }
        if let Some(w) = &self.input.witness
            && w.free
            && !w.held
            && w.holder.as_ref().is_some_and(|h| *h != self.input.agent)
            && let Some(heard) = self.last_heard()
            && self.now.saturating_sub(heard) < w.lease_ms
        {
            // Rule: a lapsed lease of the buddy is taken only once the buddy has been silent
            // for a whole lease: an Online buddy that could not renew stays Online on its
            // buddy's word alone, and if it froze (stopped, paused) just after the cut it could
            // not step down; its virtual IP's kernel lease, shorter than the witness lease, is
            // gone by then.
            let text = format!(
                "every path to the buddy fails and its witness lease lapsed; waiting until it has been silent for a whole lease ({} ms)",
                w.lease_ms
            );
            return self.stay(ReasonCode::Witness, &text);
        }
        if let Some(w) = &self.input.witness
            && !(w.free || w.held)
        {
            // Rule: with a witness, a buddy that looks dead is taken over only once its lease
            // is free: a lease still renewed means the buddy is alive and only the link between
            // the agents is cut; an unreachable witness proves nothing either way.
            let text = match &w.holder {
                _ if !w.reachable => {
                    "every path to the buddy fails, but the witness cannot be reached: no takeover without its lease".to_string()
                }
                Some(holder) => format!(
                    "every path to the buddy fails, but {holder} keeps renewing the witness lease: the link between the agents is cut"
                ),
                None => "every path to the buddy fails; waiting for the witness lease".to_string(),
            };
            return self.stay(ReasonCode::Witness, &text);
        }
        self.prepare(
            RequestReason::Takeover,
            ReasonCode::BuddyDead,
            "all agent heartbeats fail and the sync connection is down".into(),
        )
    }

    fn preparing(mut self) -> Decision {
        if self.view.isolated && !self.state.forced {
            // Rule: an isolated agent never claims; only an operator's request overrides it.
            if self.input.offline_request.is_some() {
                self.actions.push(Action::AnswerBuddy(Answer::Accepted));
            }
            return self.go(
                FailoverState::Offline,
                ReasonCode::Isolated,
                "all inverted heartbeats fail: this agent gives up going online".into(),
            );
        }
        match &self.input.answer {
            // Rule: the buddy agreed to go offline: acquire the VIP (or be online without one).
            Some(Answer::Accepted) => {
                return self.claim(ReasonCode::BuddyAnswer, "the buddy agreed to go offline");
            }
            // Rule: a refusal is logged with its reason and we stay Offline.
            Some(Answer::Refused(why)) => {
                let buddy = self.buddy_name();
                self.actions.push(Action::Log(format!(
                    "Failed setting state for '{buddy}' to Offline: {why}"
                )));
                let text = format!("{buddy} refused to go offline: {why}");
                return self.go(FailoverState::Offline, ReasonCode::BuddyAnswer, text);
            }
            None => {}
        }
        if let Some(reason) = self.input.offline_request {
            // Rule (seed 002): both prepare and ask each other; the tie-break decides at once,
            // and an operator's request always wins.
            // The request proves the buddy alive even while this agent's heartbeats to it still
            // count it dead: its report decides the tie-break.
            let yield_to_buddy = reason == RequestReason::Operator
                || self
                    .input
                    .buddy
                    .clone()
                    .is_some_and(|b| !self.wins_tie_break(&b));
            if yield_to_buddy {
                self.actions.push(Action::AnswerBuddy(Answer::Accepted));
                let text = format!("both agents asked to go online; {} goes", self.buddy_name());
                return self.go(FailoverState::Offline, ReasonCode::LostTieBreak, text);
            }
            let why = format!(
                "{} is going online and wins the tie-break",
                self.input.agent
            );
            self.actions.push(Action::AnswerBuddy(Answer::Refused(why)));
        }
        if self.view.buddy_dead {
            // Rule: nobody can answer for a dead buddy: proceed without waiting.
            return self.claim(
                ReasonCode::BuddyDead,
                "the buddy is dead: no answer to wait for",
            );
        }
        if let Some(buddy) = self.view.buddy.clone()
            && buddy.state == FailoverState::Online
            && self.input.answer.is_none()
            && self.timed_out(self.input.config.prepare_timeout_ms / 2)
        {
            // Rule: the buddy turned out alive and Online and has not agreed: stand down early.
            let text = format!(
                "{} is alive and Online and did not agree to go offline",
                buddy.name
            );
            return self.go(FailoverState::Offline, ReasonCode::BuddyAlive, text);
        }
        // Rule: bounded time in every transitional state.
        if self.timed_out(self.input.config.prepare_timeout_ms) {
            return self.go(
                FailoverState::Offline,
                ReasonCode::Timeout,
                "no answer from the buddy in time".into(),
            );
        }
        self.stay(ReasonCode::Steady, "waiting for the buddy's answer")
    }

    fn going_online(mut self) -> Decision {
        if let Some(text) = self.witness_lost() {
            return self.fault(text, ReasonCode::Witness);
        }
        if self.input.offline_request.is_some() {
            // Rule: every request gets an answer; we are past the point of yielding.
            let why = format!("{} is acquiring the virtual IP", self.input.agent);
            self.actions.push(Action::AnswerBuddy(Answer::Refused(why)));
        }
        match &self.input.vip {
            Some(VipResult::Acquired) => {
                self.actions.push(Action::RunHook(Hook::VipAcquired));
                self.online_now(ReasonCode::Vip, "virtual IP acquired".into())
            }
            Some(VipResult::Failed(why)) => {
                let why = why.clone();
                self.fault(
                    format!("cannot acquire the virtual IP: {why}"),
                    ReasonCode::Vip,
                )
            }
            Some(VipResult::Released) | None if !self.input.config.vip_enabled => {
                self.online_now(ReasonCode::Vip, "no virtual IP to acquire".into())
            }
            Some(VipResult::Released) | None => {
                // Rule: bounded time in every transitional state.
                if self.timed_out(self.input.config.going_online_timeout_ms) {
                    self.fault(
                        "the virtual IP was not acquired in time".into(),
                        ReasonCode::Timeout,
                    )
                } else {
                    self.stay(ReasonCode::Steady, "acquiring the virtual IP")
                }
            }
        }
    }

    fn online(mut self) -> Decision {
        if let Some(text) = self.witness_lost() {
            // Rule: with a witness, the Online agent past its lease deadline steps down (the
            // virtual IP released) unless its buddy confirms over the peer link that it stays
            // Offline; a cut link counts one attempt sooner than the buddy declares it dead.
            if self.input.offline_request.is_some() {
                self.actions.push(Action::AnswerBuddy(Answer::Accepted));
            }
            return self.step_down(ReasonCode::Witness, text);
        }
        let healthy_buddy = self.view.buddy.clone().filter(|b| !b.isolated);
        if let Some(reason) = self.input.offline_request {
            // Rule: we are isolated — the buddy is better placed: accept.
            if self.view.isolated {
                self.actions.push(Action::AnswerBuddy(Answer::Accepted));
                let text = "the buddy asked and this agent is isolated".to_string();
                return self.step_down(ReasonCode::BuddyRequest, text);
            }
            // Rule: an operator's request (switch or force online on the buddy) is honoured.
            if reason == RequestReason::Operator {
                self.actions.push(Action::AnswerBuddy(Answer::Accepted));
                let text = "an operator asked the buddy to go online".to_string();
                return self.step_down(ReasonCode::BuddyRequest, text);
            }
            // Rule: a takeover, tie-break or handover request rests on a stale view of us: we
            // are Online and reachable, so no switch without a real fault.
            let why = match (&healthy_buddy, &self.view.buddy) {
                (Some(_), _) => format!("{} is Online and reachable", self.input.agent),
                (None, Some(_)) => "the requesting agent is isolated".to_string(),
                (None, None) => format!(
                    "{} is Online and its heartbeats to the requesting agent all fail",
                    self.input.agent
                ),
            };
            self.actions.push(Action::AnswerBuddy(Answer::Refused(why)));
        }
        if let Some(cmd) = &self.input.command {
            let by = cmd.by.clone();
            match cmd.command {
                // Rule: planned handover, at once, without waiting for heartbeat timeouts.
                Command::Switch if healthy_buddy.is_some() => {
                    self.actions.push(Action::HandOver);
                    return self
                        .step_down(ReasonCode::Operator, format!("switch requested by {by}"));
                }
                Command::Switch => {
                    return self.stay(
                        ReasonCode::Operator,
                        "switch refused: no healthy buddy to hand over to",
                    );
                }
                Command::ForceOnline | Command::SetMode(_) => {}
            }
        }
        if let Some(buddy) = self.view.buddy.clone()
            && buddy.state == FailoverState::Online
            && !self.wins_tie_break(&buddy)
        {
            // Rule: both Online and back in contact: the tie-break's loser goes Offline (not a
            // fail-back), whatever the mode: two Online agents are never left standing.
            let text = format!("both agents online; {} wins the tie-break", buddy.name);
            return self.step_down(ReasonCode::LostTieBreak, text);
        }
        if self.state.mode == Mode::Automatic {
            if self.view.isolated {
                return self.online_isolated();
            }
            if let Some(trigger) = self.triggers().first() {
                // Rule: a switch trigger hands over to a healthy buddy — not again within the
                // ping-pong guard, or a trigger both agents see (a shared database) would bounce
                // the pair back and forth.
                if self.recent_switch() {
                    let text = format!(
                        "switch trigger {trigger} fails, but this agent switched too recently. Preventing ping-pong."
                    );
                    return self.stay(ReasonCode::PingPongGuard, &text);
                }
                if healthy_buddy.is_some() {
                    let text = format!("switch trigger {trigger} fails");
                    self.actions.push(Action::HandOver);
                    return self.step_down(ReasonCode::SwitchTrigger, text);
                }
                let text =
                    format!("switch trigger {trigger} fails, but no healthy buddy to hand over to");
                return self.stay(ReasonCode::SwitchTrigger, &text);
            }
        }
        if self.state.mode == Mode::Manual && (self.view.isolated || !self.triggers().is_empty()) {
            // Rule: manual mode — a fault that would hand over in automatic mode is only shown.
            let why = self.triggers().first().map_or_else(
                || "all inverted heartbeats fail".to_string(),
                |t| format!("switch trigger {t} fails"),
            );
            let text = format!("{why}, but manual mode: an operator decides");
            return self.stay(ReasonCode::ManualMode, &text);
        }
        self.stay(ReasonCode::Steady, "Online; no fault calls for a switch")
    }

    /// Online in automatic mode, and every inverted heartbeat fails.
    ///
    /// Rule: step down only on fresh evidence — cut off from the buddy too (every path to it
    /// reached its allowed failures: it is about to take over), or a buddy report that shows
    /// its outside targets answering after this agent's isolation began. A report from before
    /// (the same outage may not have reached the buddy's counters yet) moves nothing; when both
    /// lose the outside target, nobody moves.
    fn online_isolated(mut self) -> Decision {
        let buddy = self.view.buddy.clone();
        if self.state.forced {
            // Rule: an operator forced this agent online while it was isolated: it stays until
            // the isolation ends or an operator says otherwise.
            return self.stay(
                ReasonCode::Operator,
                "all inverted heartbeats fail, but an operator brought this agent online",
            );
        }
        if !self.safeguards.fresh_evidence {
            return match buddy {
                Some(b) if b.isolated => self.stay(
                    ReasonCode::Isolated,
                    "both agents lost their outside targets: nobody moves",
                ),
                _ => self.step_down(
                    ReasonCode::Isolated,
                    "all inverted heartbeats fail: this agent is isolated".into(),
                ),
            };
        }
        if self.view.cut_off {
            return self.step_down(
                ReasonCode::Isolated,
                "all inverted heartbeats and every path to the buddy fail: this agent is cut off"
                    .into(),
            );
        }
        let since = self.state.isolated_since.unwrap_or(self.now);
        // The fewest failures among this agent's inverted heartbeats, and the fewest allowed.
        let inverted = || {
            self.input
                .heartbeats
                .iter()
                .filter(|h| h.kind == HeartbeatKind::Inverted)
        };
        let failures = inverted().map(|h| h.failures).min().unwrap_or(0);
        let allowed = inverted().map(|h| h.max_failures).min().unwrap_or(0);
        match buddy {
            Some(b) if !b.isolated && b.outside_ok_at.is_some_and(|at| at > since) => {
                // Rule: the evidence must outlast one more failure of this agent's own: when a
                // shared outage ends, the buddy's probe may answer first, and this agent's next
                // one would too.
                match self.state.evidence_failures {
                    Some(then) if failures > then => {
                        let text = format!(
                            "all inverted heartbeats fail and {} reaches the outside now: handing over",
                            b.name
                        );
                        self.step_down(ReasonCode::Isolated, text)
                    }
                    seen => {
                        self.state.evidence_failures = seen.or(Some(failures));
                        let text = format!(
                            "all inverted heartbeats fail and {} reaches the outside: handing over if this agent's own attempts keep failing",
                            b.name
                        );
                        self.stay(ReasonCode::Isolated, &text)
                    }
                }
            }
            Some(b) if b.isolated => {
                // Rule: a shared outage. When it ends, this agent's own path may come back later
                // than the buddy's: its ARP entry for the gateway failed, and Linux asks again
                // only once a second. Evidence then counts only after two isolations' worth of
                // further failures of its own (1.4 s with the default 200 ms, 3 allowed): one
                // covers the probes under way, one the neighbour's resolution.
                self.state.evidence_failures =
                    Some(failures.saturating_add(allowed.saturating_mul(2)));
                self.stay(
                    ReasonCode::Isolated,
                    "both agents lost their outside targets: nobody moves",
                )
            }
            Some(b) => {
                let text = format!(
                    "all inverted heartbeats fail, and {} has not reached the outside since: nobody moves",
                    b.name
                );
                self.stay(ReasonCode::Isolated, &text)
            }
            None => self.stay(
                ReasonCode::Isolated,
                "all inverted heartbeats fail; no fresh report from the buddy: nobody moves",
            ),
        }
    }

    fn going_offline(mut self) -> Decision {
        if self.input.offline_request.is_some() {
            // Rule: already on our way out: accept (idempotent).
            self.actions.push(Action::AnswerBuddy(Answer::Accepted));
        }
        match &self.input.vip {
            Some(VipResult::Released) => {
                self.actions.push(Action::RunHook(Hook::VipReleased));
                self.go(
                    FailoverState::Offline,
                    ReasonCode::Vip,
                    "virtual IP released".into(),
                )
            }
            _ if !self.input.config.vip_enabled => self.go(
                FailoverState::Offline,
                ReasonCode::Steady,
                "no virtual IP to release".into(),
            ),
            // Rule: bounded time in every transitional state.
            _ if self.timed_out(self.input.config.going_offline_timeout_ms) => {
                self.actions.push(Action::Raise(Event {
                    severity: Severity::Error,
                    code: "vip-release-timeout".into(),
                    message: "the virtual IP was not released in time".into(),
                }));
                self.go(
                    FailoverState::Offline,
                    ReasonCode::Timeout,
                    "the virtual IP was not released in time".into(),
                )
            }
            _ => self.stay(ReasonCode::Steady, "releasing the virtual IP"),
        }
    }

    // --- helpers -------------------------------------------------------------------------

    /// Start going online: ask the buddy to go offline first.
    fn prepare(mut self, why: RequestReason, code: ReasonCode, text: String) -> Decision {
        // Rule: the ping-pong guard counts from the last switch. A claim that takes the Online
        // role from nobody (the start-up tie-break, or a buddy never met) is no switch: a
        // switch trigger right after it hands over at once.
        let from_nobody = code == ReasonCode::StartupTieBreak
            || (code == ReasonCode::BuddyDead && !self.state.met_buddy);
        if !from_nobody {
            self.state.last_switch = Some(self.now);
        }
        let missing = if code == ReasonCode::BuddyDead {
            " (agent appears to be missing)"
        } else {
            ""
        };
        let agent = &self.input.agent;
        self.actions.push(Action::Log(format!(
            "Notifying buddy agent to go offline ({agent} wants to go online){missing} ..."
        )));
        self.actions.push(Action::AskBuddyOffline(why));
        self.go(FailoverState::PreparingToGoOnline, code, text)
    }

    /// Going online: through Going online when a VIP is managed, else straight to Online.
    ///
    /// Rule: with a witness, only the lease's holder claims; until the host's client holds it
    /// the agent stays preparing (bounded by `prepare_timeout`).
    fn claim(mut self, code: ReasonCode, text: &str) -> Decision {
        if let Some(w) = &self.input.witness
            && !w.held
        {
            let text = match (&w.holder, w.reachable) {
                (_, false) => {
                    format!("{text}; waiting for the witness lease (the witness cannot be reached)")
                }
                (Some(holder), true) => {
                    format!("{text}; waiting for the witness lease (held by {holder})")
                }
                (None, true) => format!("{text}; waiting for the witness lease"),
            };
            return self.stay(ReasonCode::Witness, &text);
        }
        if self.input.config.vip_enabled {
            self.actions.push(Action::AcquireVip);
            self.go(FailoverState::GoingOnline, code, text.into())
        } else {
            self.online_now(code, text.into())
        }
    }

    fn online_now(mut self, code: ReasonCode, text: String) -> Decision {
        self.actions.push(Action::RunHook(Hook::Online));
        self.actions.push(Action::Raise(Event {
            severity: Severity::Warning,
            code: "online".into(),
            message: format!("{} is now Online: {text}", self.input.agent),
        }));
        self.go(FailoverState::Online, code, text)
    }

    fn step_down(mut self, code: ReasonCode, text: String) -> Decision {
        self.state.last_switch = Some(self.now);
        if self.input.config.vip_enabled {
            self.actions.push(Action::ReleaseVip);
        }
        self.actions.push(Action::RunHook(Hook::Offline));
        self.go(FailoverState::GoingOffline, code, text)
    }

    fn fault(mut self, text: String, code: ReasonCode) -> Decision {
        if self.input.config.vip_enabled {
            self.actions.push(Action::ReleaseVip);
        }
        self.actions.push(Action::RunHook(Hook::Fault));
        self.actions.push(Action::Raise(Event {
            severity: Severity::Error,
            code: "going-online-failed".into(),
            message: text.clone(),
        }));
        self.go(FailoverState::Offline, code, text)
    }

    /// The buddy is Offline and yielding, and stepped down more recently than we did (if we
    /// yield too): it leaves the place to us.
    fn buddy_yields_to_us(&self, buddy: &BuddyView) -> bool {
        let Some(theirs) = buddy.yielding else {
            return false;
        };
        let ours = yielding(&self.state, &self.input.config, self.now);
        buddy.state == FailoverState::Offline && ours.is_none_or(|ours| ours > theirs)
    }

    /// The deterministic tie-break: was Online before a restart, then priority, then the lower
    /// name. Both agents compute it from what they exchange, so they agree.
    fn wins_tie_break(&self, buddy: &BuddyView) -> bool {
        if !self.safeguards.tie_break {
            return true;
        }
        let first = self.safeguards.remembered_first;
        let mine = (
            first && self.view.was_online,
            self.input.config.priority,
            std::cmp::Reverse(self.input.agent.as_str()),
        );
        let theirs = (
            first && buddy.was_online,
            buddy.priority,
            std::cmp::Reverse(buddy.name.as_str()),
        );
        mine > theirs
    }

    /// The switch triggers that fire: the host's (probes, plugins, runtime errors), then each
    /// NIC carrying a virtual IP whose link is down ([`nic_triggers`]).
    fn triggers(&self) -> Vec<String> {
        let mut all = self.input.triggers.clone();
        all.extend(nic_triggers(&self.input.nics));
        all
    }

    /// With a witness: the lease is not held (its deadline passed, or it was never taken) and
    /// the buddy does not confirm over the peer link that it stays Offline (every path to it
    /// reached its allowed failures, no fresh report, or a report of another state). The
    /// sentence that says so; none while the agent may stay.
    fn witness_lost(&self) -> Option<String> {
        let w = self.input.witness.as_ref()?;
        if w.held || !self.safeguards.renew_before_deadline {
            return None;
        }
        let buddy = self.view.buddy.as_ref();
        let confirmed =
            !self.view.cut_off && buddy.is_some_and(|b| b.state == FailoverState::Offline);
        if confirmed {
            return None;
        }
        let lease = if w.reachable {
            "the witness lease is not held"
        } else {
            "the witness lease could not be renewed"
        };
        Some(match buddy {
            Some(b) if !self.view.cut_off => {
                format!("{lease} and {} is {}", b.name, b.state.label())
            }
            _ => format!("{lease} and the buddy cannot confirm that it stays Offline"),
        })
    }

    /// When a path to the buddy (an agent heartbeat or the sync connection) last worked.
    fn last_heard(&self) -> Option<TimestampMs> {
        self.input
            .heartbeats
            .iter()
            .filter(|h| h.kind == HeartbeatKind::Agent)
            .filter_map(|h| h.last_success)
            .max()
    }

    /// This agent switched (started going online or offline) within `min_switch_interval`.
    fn recent_switch(&self) -> bool {
        self.safeguards.ping_pong_guard
            && self.state.last_switch.is_some_and(|t| {
                self.now.saturating_sub(t) < self.input.config.min_switch_interval_ms
            })
    }

    fn timed_out(&self, limit_ms: u64) -> bool {
        self.now.saturating_sub(self.state.since) > limit_ms
    }

    fn buddy_name(&self) -> String {
        self.input
            .buddy
            .as_ref()
            .map_or_else(|| "buddy".to_string(), |b| b.name.clone())
    }

    fn go(mut self, to: FailoverState, code: ReasonCode, text: String) -> Decision {
        if to != self.state.state {
            self.state.state = to;
            self.state.since = self.now;
            if to == FailoverState::Offline {
                self.state.forced = false;
            }
            self.actions.insert(
                0,
                Action::Log(format!("Failover Status => {} ({text})", to.label())),
            );
            if matches!(to, FailoverState::Online | FailoverState::Offline) {
                self.actions.push(Action::Persist(to));
            }
        }
        Decision {
            state: self.state,
            actions: self.actions,
            reason: Reason { code, text },
        }
    }

    fn stay(self, code: ReasonCode, text: &str) -> Decision {
        Decision {
            state: self.state,
            actions: self.actions,
            reason: Reason {
                code,
                text: text.into(),
            },
        }
    }
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Automatic => "Automatic",
        Mode::Manual => "Manual",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online_with_buddy(nics: Vec<Nic>) -> (MachineState, Input) {
        let mut state = MachineState::new(FailoverState::Online, Mode::Automatic, 0);
        state.met_buddy = true;
        let mut input = Input::quiet("a");
        input.heartbeats = vec![Heartbeat {
            id: "hb0".into(),
            kind: HeartbeatKind::Agent,
            target: "b".into(),
            ok: true,
            failures: 0,
            max_failures: 3,
            last_success: Some(99_000),
            reason: None,
            rtt_us: None,
        }];
        input.sync_up = true;
        input.buddy = Some(BuddyView {
            name: "b".into(),
            priority: 100,
            state: FailoverState::Offline,
            isolated: false,
            received_at: 99_900,
            was_online: false,
            yielding: None,
            outside_ok_at: Some(99_900),
        });
        input.nics = nics;
        (state, input)
    }

    fn nic(name: &str, up: bool, carries_vip: bool) -> Nic {
        Nic {
            name: name.into(),
            up,
            changed: true,
            carries_vip,
        }
    }

    #[test]
    fn the_vip_nic_going_down_on_the_online_agent_hands_over() {
        let (state, input) = online_with_buddy(vec![nic("eth1", false, true)]);
        let d = step(&state, &input, 100_000);
        assert_eq!(d.reason.code, ReasonCode::SwitchTrigger, "{d:?}");
        assert_eq!(d.reason.text, "switch trigger nic:eth1 fails");
        assert_eq!(d.state.state, FailoverState::GoingOffline);
        assert!(d.actions.contains(&Action::HandOver));
    }

    #[test]
    fn a_nic_without_vip_going_down_or_the_vip_nic_up_moves_nothing() {
        for nics in [
            vec![nic("eth2", false, false)],
            vec![nic("eth1", true, true)],
        ] {
            let (state, input) = online_with_buddy(nics);
            let d = step(&state, &input, 100_000);
            assert_eq!(d.state.state, FailoverState::Online, "{d:?}");
            assert_eq!(d.reason.code, ReasonCode::Steady);
        }
    }

    #[test]
    fn the_vip_nic_down_in_manual_mode_is_only_shown() {
        let (mut state, input) = online_with_buddy(vec![nic("eth1", false, true)]);
        state.mode = Mode::Manual;
        let d = step(&state, &input, 100_000);
        assert_eq!(d.state.state, FailoverState::Online);
        assert_eq!(d.reason.code, ReasonCode::ManualMode);
        assert!(d.reason.text.contains("nic:eth1"), "{}", d.reason.text);
    }
}
