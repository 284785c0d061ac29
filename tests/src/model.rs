//! A seeded randomized model check of the failover core: two agents, each running duet-core's
//! `failover::step` on its own tick, over a simulated clock and network. Each seed draws a
//! schedule of faults — message loss and delay, crashes and restarts (the remembered state
//! survives in a "file"), path cuts and heals, simultaneous starts, gateway loss on one or both
//! sides — then heals everything, waits, and performs a planned switch. Invariants are checked
//! every simulated 50 ms:
//!
//! - **split brain**: never two Online once an agent heartbeat path or the sync connection has
//!   worked (both agents running, no loss) for longer than [`CONTACT_BOUND`];
//! - **liveness**: never zero Online for longer than [`LIVENESS_BOUND`] while a healthy agent
//!   (running, gateway reachable) exists;
//! - **bounded transitions**: no agent in a transitional state longer than its timeout + a tick;
//! - **settling**: exactly one Online within [`LIVENESS_BOUND`] after everything healed, and then
//!   no state change at all without a new fault (no fail-back, no flapping);
//! - **planned switch**: an operator's switch moves the pair to the backup, and it stays there;
//! - **both lose the outside**: when both gateways go down at once while the agents see each
//!   other and the pair is settled, the Online agent stays Online and nobody moves for as long
//!   as that lasts (or until another fault);
//! - **remembered Online first**: when exactly one agent remembers Online and both start
//!   together (it at most [`START_TOGETHER`] after its buddy), the first agent Online is the one
//!   that remembers Online, whatever the priorities.
//!
//! A failing seed is reported with its schedule and trace; `DUET_MODEL_SEED=<n>` replays it.

use std::fmt::Write as _;

use duet_core::failover::Safeguards;
use duet_core::{
    Command, FailoverConfig, FailoverState, Heartbeat, HeartbeatKind, Input, MachineState, Mode,
    OperatorCommand, VipResult,
};
use duet_host::{PeerReport, Requests};

pub mod witness;

/// Simulated time step.
pub const DT: u64 = 50;
/// Each agent's decision tick.
const TICK: u64 = 250;
/// Heartbeat (and peer report) interval.
const HB_INTERVAL: u64 = 500;
/// A heartbeat path counts as failed after more consecutive failures than this.
const MAX_FAILURES: u32 = 2;
/// A buddy report older than this is not used.
const BUDDY_TIMEOUT: u64 = 2_000;
/// Longest one-way delay of a report.
const MAX_DELAY: u64 = 400;
/// Longest the simulated host takes to acquire or release the VIP.
const MAX_VIP_DELAY: u64 = 1_500;
/// Two agents "start together" when the one that remembers Online starts at most this long
/// after its buddy: its first report then reaches the buddy within the buddy's start-up wait.
pub const START_TOGETHER: u64 = 1_500;

const CONFIG: FailoverConfig = FailoverConfig {
    priority: 0, // per agent
    vip_enabled: true,
    prepare_timeout_ms: 3_000,
    going_online_timeout_ms: 3_000,
    going_offline_timeout_ms: 3_000,
    min_switch_interval_ms: 20_000,
    startup_wait_ms: 3_000,
};

/// Time after which two agents in clean contact must not both be Online: a report each way,
/// a tick to decide, and the loser's release of the VIP.
pub const CONTACT_BOUND: u64 =
    HB_INTERVAL + MAX_DELAY + 2 * TICK + MAX_VIP_DELAY + CONFIG.going_offline_timeout_ms;
/// Longest time with nobody Online while a healthy agent exists: start-up wait, detection,
/// the ping-pong guard, preparing, acquiring the VIP, plus ticks.
pub const LIVENESS_BOUND: u64 = CONFIG.startup_wait_ms
    + HB_INTERVAL * (MAX_FAILURES as u64 + 2)
    + BUDDY_TIMEOUT
    + CONFIG.min_switch_interval_ms
    + CONFIG.prepare_timeout_ms
    + CONFIG.going_online_timeout_ms
    + 4 * TICK;

/// Longest a planned switch may take: the Online agent's tick, three report round trips
/// (it goes offline, the buddy asks, it answers), acquiring the VIP, ticks.
pub const HANDOVER_BOUND: u64 =
    3 * (HB_INTERVAL + MAX_DELAY + TICK) + MAX_VIP_DELAY + 2 * TICK + 500;

/// Length of the fault phase.
const CHAOS: u64 = 40_000;
/// After healing: settle, then watch for changes.
const QUIET: u64 = 10_000;

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0xD1B5_4A32_D192_ED03)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A fault or operator action at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    CutLink,
    HealLink,
    CutSync,
    HealSync,
    GatewayDown(usize),
    GatewayUp(usize),
    Crash(usize),
    Restart(usize),
    Loss(u64),
    Switch(usize),
}

/// A peer report as the host publishes it, with an empty Status column (the model checks
/// decisions, not rows).
fn publish(name: &str, priority: u32, state: FailoverState) -> PeerReport {
    PeerReport {
        agent: name.to_string(),
        boot: 0,
        fingerprint: String::new(),
        priority,
        state,
        mode: Mode::Automatic,
        isolated: false,
        was_online: false,
        yielding: None,
        outside_age_ms: None,
        report: duet_core::Report {
            agent: name.to_string(),
            generated_at: 0,
            state: Some(state),
            led: duet_core::Led::Transparent,
            rows: Vec::new(),
        },
        tick: 0,
        tick_ms: TICK,
        request: None,
        answer: None,
        settings: Default::default(),
        macs: Vec::new(),
        fenced: false,
    }
}

struct Agent {
    name: &'static str,
    priority: u32,
    running: bool,
    started_at: u64,
    /// The phase of its decision ticks, of its agent heartbeats and of its inverted heartbeats
    /// (independent, as in the host).
    offset: u64,
    hb_offset: u64,
    inv_offset: u64,
    machine: MachineState,
    /// The local state file: survives crashes.
    file: Option<FailoverState>,
    /// What the file said at the last start.
    remembered: Option<FailoverState>,
    hb_failures: u32,
    /// When the agent heartbeat and the sync connection last worked.
    hb_last_success: Option<u64>,
    sync_last_success: Option<u64>,
    sync_failures: u32,
    /// The sync connection has answered since the start (the host's "up" needs one success).
    sync_seen: bool,
    inv_failures: u32,
    /// When the inverted heartbeat last succeeded.
    inv_last_success: Option<u64>,
    buddy: Option<(PeerReport, u64)>,
    /// The host's own request bookkeeping.
    requests: Requests,
    command: Option<OperatorCommand>,
    /// A VIP result the simulated host will deliver at a time.
    vip: Option<(u64, VipResult)>,
    /// The last report this agent published.
    published: PeerReport,
}

impl Agent {
    fn new(name: &'static str, priority: u32) -> Self {
        let machine = MachineState::new(FailoverState::Offline, Mode::Automatic, 0);
        Agent {
            name,
            priority,
            running: false,
            started_at: 0,
            offset: 0,
            hb_offset: 0,
            inv_offset: 0,
            machine,
            file: None,
            remembered: None,
            hb_failures: 0,
            hb_last_success: None,
            sync_last_success: None,
            sync_failures: 0,
            sync_seen: false,
            inv_failures: 0,
            inv_last_success: None,
            buddy: None,
            requests: Requests::default(),
            command: None,
            vip: None,
            published: publish(name, priority, FailoverState::Offline),
        }
    }

    fn start(&mut self, now: u64, offset: u64, hb_offset: u64, inv_offset: u64) {
        *self = Agent {
            file: self.file,
            ..Agent::new(self.name, self.priority)
        };
        self.running = true;
        self.started_at = now;
        self.offset = offset;
        self.hb_offset = hb_offset;
        self.inv_offset = inv_offset;
        self.remembered = self.file;
        self.machine = MachineState::new(FailoverState::Offline, Mode::Automatic, now);
        // Like the host: the remembered state is read before the first report goes out.
        self.published.was_online = self.remembered == Some(FailoverState::Online);
    }

    /// The sync connection as the host passes it: up after a success, until its failures
    /// exceed the allowed.
    fn sync_up(&self) -> bool {
        self.sync_seen && self.sync_failures <= MAX_FAILURES
    }

    fn crash(&mut self) {
        *self = Agent {
            file: self.file,
            ..Agent::new(self.name, self.priority)
        };
    }

    fn online(&self) -> bool {
        self.running && self.machine.state == FailoverState::Online
    }

    /// The heartbeats as the host passes them to the core: the sync connection is one more
    /// agent path.
    fn heartbeats(&self) -> Vec<Heartbeat> {
        let hb = |id: &str, kind, failures: u32, last_success| Heartbeat {
            id: id.into(),
            kind,
            target: id.into(),
            ok: failures == 0,
            failures,
            max_failures: MAX_FAILURES,
            last_success,
            reason: None,
            rtt_us: None,
        };
        let mut all = vec![
            hb(
                "link",
                HeartbeatKind::Agent,
                self.hb_failures,
                self.hb_last_success,
            ),
            hb(
                "gw",
                HeartbeatKind::Inverted,
                self.inv_failures,
                self.inv_last_success,
            ),
        ];
        if self.sync_seen {
            all.push(hb(
                "sync",
                HeartbeatKind::Agent,
                self.sync_failures,
                self.sync_last_success,
            ));
        }
        all
    }

    /// The published report as it leaves at `now`: the age of the outside success is taken
    /// when the report is sent (as the host does when it seals a report), not when it was
    /// built.
    fn sent(&self, now: u64) -> PeerReport {
        PeerReport {
            outside_age_ms: self.inv_last_success.map(|at| now.saturating_sub(at)),
            ..self.published.clone()
        }
    }

    /// One decision tick: the host's bookkeeping around `failover.step`.
    fn tick(&mut self, now: u64, step: Stepper, rng: &mut Rng, trace: &mut String) {
        let sync_up = self.sync_up();
        let buddy = self
            .buddy
            .clone()
            .filter(|(_, at)| now.saturating_sub(*at) <= BUDDY_TIMEOUT);
        let exchange = self.requests.exchange(
            buddy.as_ref().and_then(|(p, _)| p.request),
            buddy.as_ref().and_then(|(p, _)| p.answer.as_ref()),
        );
        let vip = match &self.vip {
            Some((at, result)) if *at <= now => {
                let r = result.clone();
                self.vip = None;
                Some(r)
            }
            _ => None,
        };
        let input = Input {
            agent: self.name.into(),
            started_at: self.started_at,
            config: FailoverConfig {
                priority: self.priority,
                ..CONFIG
            },
            heartbeats: self.heartbeats(),
            sync_up,
            buddy: buddy.as_ref().map(|(p, at)| p.view(*at)),
            command: self.command.take(),
            offline_request: exchange.incoming.map(|(_, r)| r),
            remembered: self.remembered,
            answer: exchange.answer.clone(),
            triggers: Vec::new(),
            vip,
            nics: Vec::new(),
            fenced: None,
            witness: None,
        };
        let decision = step(&self.machine, &input, now);
        for action in &decision.actions {
            match action {
                duet_core::Action::AskBuddyOffline(reason) => {
                    let _ = writeln!(
                        trace,
                        "{now:>6} ms  {} asks its buddy to go offline ({reason:?})",
                        self.name
                    );
                }
                duet_core::Action::AnswerBuddy(a) if exchange.incoming.is_some() => {
                    let _ = writeln!(trace, "{now:>6} ms  {} answers {a:?}", self.name);
                }
                duet_core::Action::Persist(s) => self.file = Some(*s),
                duet_core::Action::AcquireVip => {
                    self.vip = Some((now + rng.below(MAX_VIP_DELAY), VipResult::Acquired))
                }
                duet_core::Action::ReleaseVip => {
                    self.vip = Some((now + rng.below(MAX_VIP_DELAY), VipResult::Released))
                }
                _ => {}
            }
        }
        self.requests.apply(&exchange, &decision, now);
        self.machine = decision.state;
        self.published = PeerReport {
            isolated: duet_core::failover::isolated(&self.heartbeats()),
            was_online: duet_core::failover::was_online(&self.machine, self.remembered),
            yielding: duet_core::failover::yielding(&self.machine, &CONFIG, now),
            outside_age_ms: duet_core::failover::outside_ok_at(&self.heartbeats())
                .map(|at| now.saturating_sub(at)),
            request: self.requests.outgoing(),
            answer: self.requests.answered(),
            // The simulated clock is shared: it orders reports like the host's tick numbers.
            tick: now,
            ..publish(self.name, self.priority, self.machine.state)
        };
    }
}

/// The network between the agents.
struct Net {
    link: bool,
    sync: bool,
    gateway: [bool; 2],
    loss: u64,
    /// Reports in flight: (arrival, to, report).
    flight: Vec<(u64, usize, PeerReport)>,
}

/// A violated invariant.
#[derive(Debug)]
pub struct Violation {
    pub seed: u64,
    pub at: u64,
    pub what: String,
    pub trace: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} at {} ms: {}\n(replay: DUET_MODEL_SEED={})\n{}",
            self.seed, self.at, self.what, self.seed, self.trace
        )
    }
}

/// A run's script: priorities, what is up at first, the faults and when all is healed.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Each agent's tie-break priority.
    pub priorities: [u32; 2],
    /// The agent heartbeat path is up at time 0.
    pub link: bool,
    /// The sync connection is up at time 0.
    pub sync: bool,
    /// Faults (and starts: `restart`) at times, in ms.
    pub schedule: Vec<(u64, Fault)>,
    /// When every fault is healed; the settling checks count from here.
    pub healed: u64,
    /// Whether an operator switches the pair once it has settled.
    pub planned_switch: bool,
    /// What each agent's state file holds before its first start.
    #[serde(default)]
    pub files: [Option<FailoverState>; 2],
}

impl Plan {
    /// A random plan: starts (often simultaneous), up to 8 faults in the first 40 s, heal.
    pub fn random(rng: &mut Rng) -> Plan {
        let priorities = match rng.below(3) {
            0 => [100, 100],
            1 => [200, 100],
            _ => [100, 200],
        };
        let sync = rng.chance(70);
        let file = |rng: &mut Rng| match rng.below(3) {
            0 => None,
            1 => Some(FailoverState::Offline),
            _ => Some(FailoverState::Online),
        };
        let files = [file(rng), file(rng)];
        let mut schedule: Vec<(u64, Fault)> = Vec::new();
        let late = if rng.chance(60) {
            rng.below(2_000)
        } else {
            rng.below(12_000)
        };
        let (start_a, start_b) = if rng.chance(50) { (0, late) } else { (late, 0) };
        schedule.push((start_a, Fault::Restart(0)));
        schedule.push((start_b, Fault::Restart(1)));
        for _ in 0..rng.below(9) {
            let at = rng.below(CHAOS);
            let side = rng.below(2) as usize;
            let fault = match rng.below(10) {
                0 => Fault::CutLink,
                1 => Fault::HealLink,
                2 => Fault::CutSync,
                3 => Fault::HealSync,
                4 => Fault::GatewayDown(side),
                5 => Fault::GatewayUp(side),
                6 => Fault::Crash(side),
                7 => Fault::Restart(side),
                8 => Fault::Loss(rng.below(60)),
                _ => Fault::Switch(side),
            };
            schedule.push((at, fault));
            if fault == Fault::GatewayDown(side) {
                match rng.below(10) {
                    // Gateway loss on both sides at once (the agents' heartbeats still fail
                    // at different phases).
                    0..=2 => schedule.push((at, Fault::GatewayDown(1 - side))),
                    // ... or the other side a little later, within two heartbeat intervals.
                    3..=4 => schedule.push((
                        (at + DT * (1 + rng.below(2 * HB_INTERVAL / DT))).min(CHAOS - DT),
                        Fault::GatewayDown(1 - side),
                    )),
                    _ => {}
                }
            }
        }
        Plan {
            priorities,
            link: true,
            sync,
            schedule,
            healed: CHAOS,
            planned_switch: true,
            files,
        }
    }
}

/// How a simulated agent decides: duet-core natively, with chosen safeguards, or core.wasm.
pub type Stepper<'a> = &'a dyn Fn(&MachineState, &Input, u64) -> duet_core::Decision;

/// A plan's full schedule: its faults, then healing, the planned switches, and the end.
pub struct Timeline {
    pub schedule: Vec<(u64, Fault)>,
    /// When exactly one agent must be Online.
    pub settled: u64,
    /// When the planned switches are asked.
    pub switches: Vec<u64>,
    pub end: u64,
    /// The agent whose remembered Online must win its start-up: exactly one agent's file says
    /// Online, and it starts at most [`START_TOGETHER`] after its buddy.
    pub remembered_online: Option<usize>,
}

impl Plan {
    /// The plan's faults, then everything healed at `healed` (and both agents running), two
    /// planned switches once settled, and the end of the run.
    pub fn timeline(&self) -> Timeline {
        let mut schedule = self.schedule.clone();
        for f in [
            Fault::HealLink,
            Fault::HealSync,
            Fault::GatewayUp(0),
            Fault::GatewayUp(1),
            Fault::Loss(0),
            Fault::Restart(0),
            Fault::Restart(1),
        ] {
            schedule.push((self.healed, f));
        }
        schedule.sort_by_key(|(at, _)| *at);
        let settled = self.healed + LIVENESS_BOUND;
        // Two planned switches once settled, the second soon after the first: the agent that
        // just stepped down must take over again at once (its ping-pong guard must not stop
        // it).
        let first_switch = settled + QUIET;
        let switches: Vec<u64> = if self.planned_switch {
            vec![first_switch, first_switch + HANDOVER_BOUND + 1_000]
        } else {
            Vec::new()
        };
        let end = switches
            .last()
            .map_or(settled + QUIET, |last| last + HANDOVER_BOUND + QUIET);
        let first_start = |i: usize| {
            self.schedule
                .iter()
                .filter(|(_, f)| *f == Fault::Restart(i))
                .map(|(at, _)| *at)
                .min()
        };
        let remembered_online = match self.files {
            [Some(FailoverState::Online), Some(FailoverState::Online)] => None,
            [Some(FailoverState::Online), _] => Some(0),
            [_, Some(FailoverState::Online)] => Some(1),
            _ => None,
        }
        .filter(|&i| match (first_start(i), first_start(1 - i)) {
            (Some(mine), Some(theirs)) => mine <= theirs + START_TOGETHER,
            _ => false,
        });
        Timeline {
            schedule,
            settled,
            switches,
            end,
            remembered_online,
        }
    }
}

/// What the invariants look at, at one instant.
pub struct Observed {
    /// Each agent's state machine; `None` while it is not running.
    pub states: [Option<MachineState>; 2],
    /// Both agents run and a path between them (agent heartbeat or sync) works without loss.
    pub contact: bool,
    /// A running agent reaches its gateway.
    pub healthy: bool,
    /// Each agent's gateway answers.
    pub gateways: [bool; 2],
}

/// The five invariants, checked over a run: the model check and the host simulation share
/// them.
pub struct Invariants {
    settled: u64,
    switches: Vec<u64>,
    contact_since: Option<u64>,
    zero_since: Option<u64>,
    settled_states: Option<[Option<FailoverState>; 2]>,
    switch_target: Option<usize>,
    /// The gateways at the previous check.
    gateways: [bool; 2],
    /// Both gateways went down at once with the pair settled: the agent that was Online then.
    both_lost: Option<usize>,
    /// The agent that must be the first Online (its remembered Online), until a fault.
    remembered_online: Option<usize>,
    /// Starts seen so far (the first two are the plan's start-up, not faults).
    starts: usize,
    /// When the last fault other than a gateway loss was applied.
    last_fault: Option<u64>,
}

impl Invariants {
    pub fn new(timeline: &Timeline) -> Self {
        Invariants {
            settled: timeline.settled,
            switches: timeline.switches.clone(),
            contact_since: None,
            zero_since: None,
            settled_states: None,
            switch_target: None,
            gateways: [true, true],
            both_lost: None,
            remembered_online: timeline.remembered_online,
            starts: 0,
            last_fault: None,
        }
    }

    /// A fault of the schedule was applied: the checks that hold only until another fault
    /// stop. The plan's first start of each agent is not a fault; a gateway going down ends
    /// the start-up check, and starts the both-lost check ([`Invariants::check`]).
    pub fn fault(&mut self, now: u64, fault: Fault) {
        match fault {
            Fault::Restart(_) if self.starts < 2 => self.starts += 1,
            Fault::GatewayDown(_) => self.remembered_online = None,
            _ => {
                self.both_lost = None;
                self.remembered_online = None;
                self.last_fault = Some(now);
            }
        }
    }

    /// A planned switch toward agent `target` was asked.
    pub fn switch_asked(&mut self, target: usize) {
        self.switch_target = Some(target);
    }

    /// Checks the invariants at `now` (called every [`DT`]); `Err` says which one broke.
    pub fn check(&mut self, now: u64, o: &Observed) -> Result<(), String> {
        let online_at = |i: usize| o.states[i].is_some_and(|m| m.state == FailoverState::Online);
        let online = (0..2).filter(|i| online_at(*i)).count();
        self.contact_since = if o.contact {
            self.contact_since.or(Some(now))
        } else {
            None
        };
        if online == 2
            && let Some(t) = self.contact_since
            && now - t > CONTACT_BOUND
        {
            return Err(format!(
                "two agents Online after {} ms of clean contact",
                now - t
            ));
        }
        self.zero_since = if online == 0 && o.healthy {
            self.zero_since.or(Some(now))
        } else {
            None
        };
        if let Some(t) = self.zero_since
            && now - t > LIVENESS_BOUND
        {
            return Err(format!(
                "nobody Online for {} ms while a healthy agent exists",
                now - t
            ));
        }
        for (i, m) in o.states.iter().enumerate() {
            let Some(m) = m else { continue };
            let limit = match m.state {
                FailoverState::PreparingToGoOnline => CONFIG.prepare_timeout_ms,
                FailoverState::GoingOnline => CONFIG.going_online_timeout_ms,
                FailoverState::GoingOffline => CONFIG.going_offline_timeout_ms,
                FailoverState::Offline | FailoverState::Online => continue,
            };
            if now.saturating_sub(m.since) > limit + 2 * TICK {
                return Err(format!(
                    "{} stuck in {:?} for {} ms",
                    NAMES[i],
                    m.state,
                    now.saturating_sub(m.since)
                ));
            }
        }
        let switch_due = self.switches.iter().any(|at| now == at + HANDOVER_BOUND);
        let switching = self
            .switches
            .iter()
            .any(|at| now >= *at && now < at + HANDOVER_BOUND);
        let states = o.states.map(|m| m.map(|m| m.state));
        if now == self.settled || switch_due {
            if online != 1 {
                let since = if switch_due {
                    "the planned switch"
                } else {
                    "healing"
                };
                return Err(format!("{online} agents Online after {since}"));
            }
            if let Some(target) = self.switch_target
                && switch_due
                && !online_at(target)
            {
                return Err(format!(
                    "the planned switch to {} did not complete within {HANDOVER_BOUND} ms",
                    NAMES[target]
                ));
            }
            self.settled_states = Some(states);
        }
        if switching {
            self.settled_states = None; // a planned switch is under way
        }
        if let Some(before) = self.settled_states
            && states != before
        {
            return Err(format!(
                "a state changed with no new fault: {before:?} -> {states:?}"
            ));
        }
        self.check_both_lost(now, o, states)?;
        if let Some(first) = self.remembered_online
            && online > 0
        {
            self.remembered_online = None;
            if !online_at(first) {
                return Err(format!(
                    "{} remembered Online and started with its buddy, but {} went Online first",
                    NAMES[first],
                    NAMES[1 - first]
                ));
            }
        }
        Ok(())
    }

    /// Both gateways lost at once while the agents see each other and the pair is settled
    /// (one Online, one Offline, no other fault for [`HANDOVER_BOUND`]: no switch under way):
    /// the Online agent stays Online while that lasts.
    fn check_both_lost(
        &mut self,
        now: u64,
        o: &Observed,
        states: [Option<FailoverState>; 2],
    ) -> Result<(), String> {
        let both_down = o.gateways == [false, false];
        let settled = self
            .last_fault
            .is_none_or(|at| now.saturating_sub(at) > HANDOVER_BOUND);
        if both_down && self.gateways == [true, true] && o.contact && settled {
            self.both_lost = match states {
                [Some(FailoverState::Online), Some(FailoverState::Offline)] => Some(0),
                [Some(FailoverState::Offline), Some(FailoverState::Online)] => Some(1),
                _ => None,
            };
        }
        self.gateways = o.gateways;
        if !both_down || !o.contact {
            self.both_lost = None;
        }
        if let Some(i) = self.both_lost
            && states[i] != Some(FailoverState::Online)
        {
            return Err(format!(
                "both agents lost their gateways at once and {} left Online: {states:?}",
                NAMES[i]
            ));
        }
        Ok(())
    }
}

/// The agents' names, by index.
pub const NAMES: [&str; 2] = ["agent-a", "agent-b"];

/// Runs one random seed with duet-core natively; `Err` carries the first violation.
pub fn run(seed: u64, safeguards: Safeguards) -> Result<(), Violation> {
    let plan = Plan::random(&mut Rng::new(seed));
    let step = |s: &MachineState, i: &Input, now: u64| {
        duet_core::failover::step_with(s, i, now, safeguards)
    };
    simulate(&plan, seed, &step).map(|_| ())
}

/// Runs a plan, checking the invariants throughout; returns the trace.
pub fn simulate(plan: &Plan, seed: u64, step: Stepper) -> Result<String, Violation> {
    let mut rng = Rng::new(seed.rotate_left(17));
    let mut agents = [
        Agent::new("agent-a", plan.priorities[0]),
        Agent::new("agent-b", plan.priorities[1]),
    ];
    for (agent, file) in agents.iter_mut().zip(plan.files) {
        agent.file = file;
    }
    let mut net = Net {
        link: plan.link,
        sync: plan.sync,
        gateway: [true, true],
        loss: 0,
        flight: Vec::new(),
    };
    let timeline = plan.timeline();
    let schedule = &timeline.schedule;
    let mut invariants = Invariants::new(&timeline);

    let mut trace = String::new();
    let mut next = 0;
    let fail = |at: u64, what: String, trace: &str| {
        Err(Violation {
            seed,
            at,
            what,
            trace: trace.to_string(),
        })
    };

    let mut now = 0;
    while now <= timeline.end {
        // Faults due now.
        while next < schedule.len() && schedule[next].0 <= now {
            let (_, fault) = schedule[next];
            next += 1;
            let applied = match fault {
                Fault::CutLink => std::mem::replace(&mut net.link, false),
                Fault::HealLink => !std::mem::replace(&mut net.link, true),
                Fault::CutSync => std::mem::replace(&mut net.sync, false),
                Fault::HealSync => !std::mem::replace(&mut net.sync, true),
                Fault::GatewayDown(i) => std::mem::replace(&mut net.gateway[i], false),
                Fault::GatewayUp(i) => !std::mem::replace(&mut net.gateway[i], true),
                Fault::Crash(i) => {
                    let was = agents[i].running;
                    agents[i].crash();
                    was
                }
                Fault::Restart(i) => {
                    let was = agents[i].running;
                    if !was {
                        let offset = rng.below(TICK / DT) * DT;
                        let hb_offset = rng.below(HB_INTERVAL / DT) * DT;
                        let inv_offset = rng.below(HB_INTERVAL / DT) * DT;
                        agents[i].start(now, offset, hb_offset, inv_offset);
                    }
                    !was
                }
                Fault::Loss(p) => std::mem::replace(&mut net.loss, p) != p,
                Fault::Switch(i) => {
                    agents[i].command = Some(OperatorCommand {
                        by: "model".into(),
                        command: Command::Switch,
                    });
                    true
                }
            };
            if applied {
                let _ = writeln!(trace, "{now:>6} ms  {fault:?}");
                invariants.fault(now, fault);
            }
        }
        // The planned switch, once settled: asked of the Online agent.
        if timeline.switches.contains(&now) {
            match agents.iter().position(Agent::online) {
                Some(i) => {
                    agents[i].command = Some(OperatorCommand {
                        by: "operator".into(),
                        command: Command::Switch,
                    });
                    invariants.switch_asked(1 - i);
                    let _ = writeln!(
                        trace,
                        "{now:>6} ms  planned switch asked of {}",
                        agents[i].name
                    );
                }
                None => {
                    return fail(
                        now,
                        "nobody Online when the planned switch was due".into(),
                        &trace,
                    );
                }
            }
        }

        // Heartbeats and reports.
        for i in 0..2 {
            let j = 1 - i;
            if !agents[i].running {
                continue;
            }
            if (now + agents[i].inv_offset).is_multiple_of(HB_INTERVAL) {
                if net.gateway[i] {
                    agents[i].inv_failures = 0;
                    agents[i].inv_last_success = Some(now);
                } else {
                    agents[i].inv_failures = agents[i].inv_failures.saturating_add(1);
                }
            }
            if !(now + agents[i].hb_offset).is_multiple_of(HB_INTERVAL) {
                continue;
            }
            let through_link = agents[j].running && net.link && !rng.chance(net.loss);
            agents[i].hb_failures = if through_link {
                0
            } else {
                agents[i].hb_failures.saturating_add(1)
            };
            let through_sync = agents[j].running && net.sync && !rng.chance(net.loss);
            if through_link {
                agents[i].hb_last_success = Some(now);
            }
            if through_sync {
                agents[i].sync_failures = 0;
                agents[i].sync_seen = true;
                agents[i].sync_last_success = Some(now);
            } else {
                agents[i].sync_failures = agents[i].sync_failures.saturating_add(1);
            }
            if through_link || through_sync {
                // An exchange: each side gets the other's report. The buddy's heartbeat
                // counters learn nothing from it (they count their own attempts), as in the
                // host, where an incoming exchange does not reset an outgoing path.
                net.flight
                    .push((now + rng.below(MAX_DELAY), i, agents[j].sent(now)));
                net.flight
                    .push((now + rng.below(MAX_DELAY), j, agents[i].sent(now)));
            }
        }
        let mut arrived = Vec::new();
        net.flight.retain(|(at, to, p)| {
            if *at <= now {
                arrived.push((*to, p.clone()));
                false
            } else {
                true
            }
        });
        for (to, peer) in arrived {
            // Paths race: like the host, keep the newest report.
            let newer = agents[to]
                .buddy
                .as_ref()
                .is_none_or(|(old, _)| peer.tick >= old.tick);
            if agents[to].running && newer {
                agents[to].buddy = Some((peer, now));
            }
        }

        // Ticks.
        for agent in agents.iter_mut() {
            if agent.running && (now + agent.offset).is_multiple_of(TICK) {
                let before = agent.machine.state;
                agent.tick(now, step, &mut rng, &mut trace);
                if agent.machine.state != before {
                    let _ = writeln!(
                        trace,
                        "{now:>6} ms  {} {:?} -> {:?}",
                        agent.name, before, agent.machine.state
                    );
                }
            }
        }

        // Invariants.
        let both_running = agents.iter().all(|a| a.running);
        let observed = Observed {
            states: [0, 1].map(|i| agents[i].running.then_some(agents[i].machine)),
            contact: both_running && net.loss == 0 && (net.link || net.sync),
            healthy: agents
                .iter()
                .enumerate()
                .any(|(i, a)| a.running && net.gateway[i]),
            gateways: net.gateway,
        };
        if let Err(what) = invariants.check(now, &observed) {
            return fail(now, what, &trace);
        }
        now += DT;
    }
    Ok(trace)
}

/// Runs `seeds` schedules (or only `DUET_MODEL_SEED`); returns the first violation.
pub fn check(seeds: std::ops::Range<u64>, safeguards: Safeguards) -> Result<u64, Violation> {
    if let Some(seed) = std::env::var("DUET_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return run(seed, safeguards).map(|()| 1);
    }
    let n = seeds.end - seeds.start;
    for seed in seeds {
        run(seed, safeguards)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds per test run.
    const SEEDS: u64 = 10_000;

    #[test]
    fn model_check_holds_on_10_000_schedules() {
        match check(0..SEEDS, Safeguards::default()) {
            Ok(n) => assert!(n >= 1),
            Err(v) => panic!("{v}"),
        }
    }

    #[test]
    fn a_failing_seed_replays_identically() {
        let off = Safeguards {
            tie_break: false,
            ..Safeguards::default()
        };
        let first = (0..500)
            .find_map(|s| run(s, off).err())
            .expect("a violation without the tie-break");
        let again = run(first.seed, off).expect_err("the same seed fails again");
        assert_eq!(
            (first.at, &first.what, &first.trace),
            (again.at, &again.what, &again.trace)
        );
    }

    #[test]
    fn model_check_catches_a_disabled_tie_break() {
        let off = Safeguards {
            tie_break: false,
            ..Safeguards::default()
        };
        let v = (0..500).find_map(|s| run(s, off).err());
        assert!(
            v.is_some(),
            "500 seeds without the tie-break found no violation"
        );
    }

    /// The first violation within 2,000 seeds with `off`, if any.
    fn first_violation(off: Safeguards) -> Option<Violation> {
        (0..2_000).find_map(|s| run(s, off).err())
    }

    #[test]
    fn model_check_catches_a_step_down_on_stale_evidence() {
        let off = Safeguards {
            fresh_evidence: false,
            ..Safeguards::default()
        };
        let v = first_violation(off).expect("2,000 seeds without fresh evidence passed");
        assert!(v.what.contains("lost their gateways at once"), "{v}");
    }

    #[test]
    fn model_check_catches_priority_over_remembered_online() {
        let off = Safeguards {
            remembered_first: false,
            ..Safeguards::default()
        };
        let v = first_violation(off).expect("2,000 seeds with priority first passed");
        assert!(v.what.contains("remembered Online"), "{v}");
    }

    #[test]
    fn model_check_catches_a_disabled_ping_pong_guard() {
        let off = Safeguards {
            ping_pong_guard: false,
            ..Safeguards::default()
        };
        let v = (0..500).find_map(|s| run(s, off).err());
        assert!(
            v.is_some(),
            "500 seeds without the ping-pong guard found no violation"
        );
    }
}
