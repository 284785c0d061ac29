//! The core's data model: a mirror of `wit/core/core.wit` (the WIT comments are the reference).
//! With the `serde` feature these are also the JSON API's and the web UI's model.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type TimestampMs = u64;

macro_rules! model {
    ($($item:item)*) => {
        $(
            #[derive(Debug, Clone, PartialEq, Eq)]
            #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
            #[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
            $item
        )*
    };
}

model! {
    /// The LED shown per agent.
    #[derive(Copy, Hash)]
    pub enum Led { Green, Red, Transparent }

    /// Where an agent is in its failover life cycle.
    #[derive(Copy, Hash, PartialOrd, Ord)]
    pub enum FailoverState { Offline, PreparingToGoOnline, GoingOnline, Online, GoingOffline }

    /// Whether heartbeats may switch the pair on their own.
    #[derive(Copy, Hash)]
    pub enum Mode { Automatic, Manual }

    /// What a heartbeat proves.
    #[derive(Copy, Hash)]
    pub enum HeartbeatKind { Agent, Ping, Inverted }

    /// Outcome of a probe that may or may not be configured.
    pub enum Check { NotConfigured, Ok, Failing(String) }

    /// One heartbeat path as the host measured it.
    pub struct Heartbeat {
        pub id: String,
        pub kind: HeartbeatKind,
        pub target: String,
        pub ok: bool,
        pub failures: u32,
        pub max_failures: u32,
        pub last_success: Option<TimestampMs>,
        pub reason: Option<String>,
        pub rtt_us: Option<u32>,
    }

    /// The latest result of a custom probe (plugin).
    pub struct Probe {
        pub key: String,
        pub label: String,
        pub status: Check,
        pub value: String,
        pub counts_toward_led: bool,
        pub failures: u32,
        pub last_success: Option<TimestampMs>,
    }

    /// A network interface's link state as the host's netlink watcher saw it.
    pub struct Nic {
        pub name: String,
        /// The link is administratively up and has carrier.
        pub up: bool,
        /// The link went down or came back since the agent started: only then is its row shown.
        pub changed: bool,
        /// A virtual IP of this pair lives on this NIC: down on the Online agent, it hands over.
        pub carries_vip: bool,
    }

    /// What this agent's probes saw.
    pub struct Observations {
        pub agent: String,
        pub buddy: String,
        pub started_at: TimestampMs,
        pub state: FailoverState,
        pub mode: Mode,
        pub configuration: Check,
        pub heartbeats: Vec<Heartbeat>,
        pub sync: Check,
        pub database: Check,
        pub nats: Check,
        pub rte_count: u32,
        pub probes: Vec<Probe>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub nics: Vec<Nic>,
    }

    /// One row of the Status window.
    pub struct Row {
        pub key: String,
        pub label: String,
        pub value: String,
        pub reason: Option<String>,
        pub failures: Option<u32>,
        pub last_success: Option<TimestampMs>,
        pub turns_led_red: bool,
    }

    /// One agent's column of the Status window.
    pub struct Report {
        pub agent: String,
        pub generated_at: TimestampMs,
        pub state: Option<FailoverState>,
        pub led: Led,
        pub rows: Vec<Row>,
    }

    /// The buddy's last report as received over the peer link.
    pub struct ReceivedReport {
        pub report: Report,
        pub received_at: TimestampMs,
    }

    /// Both columns of the Status window as one agent sees them.
    pub struct PairReport {
        pub local: Report,
        pub buddy: Report,
    }

    /// The buddy's column as the rules decided it.
    pub enum BuddyColumn {
        /// The buddy's last report is fresh: shown as the buddy sent it. The host holds that
        /// report; it never crosses into the core, whose rules need only when it arrived.
        AsSent,
        /// A column the rules made: status being retrieved, or "Agent Status: Unreachable".
        Made(Report),
    }

    /// What `rules.evaluate` returns: this agent's column and the buddy's.
    pub struct Columns {
        pub local: Report,
        pub buddy: BuddyColumn,
    }

    /// Settings of the status rules.
    #[derive(Copy)]
    pub struct RulesConfig {
        pub startup_grace_ms: u64,
        pub buddy_timeout_ms: u64,
        pub vip_enabled: bool,
    }

    /// Settings of the failover state machine.
    #[derive(Copy)]
    pub struct FailoverConfig {
        pub priority: u32,
        pub vip_enabled: bool,
        pub prepare_timeout_ms: u64,
        pub going_online_timeout_ms: u64,
        pub going_offline_timeout_ms: u64,
        pub min_switch_interval_ms: u64,
        pub startup_wait_ms: u64,
    }

    /// What this agent knows of the buddy through the peer link.
    pub struct BuddyView {
        pub name: String,
        pub priority: u32,
        pub state: FailoverState,
        pub isolated: bool,
        pub received_at: TimestampMs,
        #[cfg_attr(feature = "serde", serde(default))]
        pub was_online: bool,
        #[cfg_attr(feature = "serde", serde(default))]
        pub yielding: Option<u64>,
        /// When the buddy's inverted heartbeats last succeeded, on this agent's clock.
        #[cfg_attr(feature = "serde", serde(default))]
        pub outside_ok_at: Option<TimestampMs>,
    }

    /// An operator's command.
    pub enum Command { Switch, ForceOnline, SetMode(Mode) }

    /// An operator's command and who gave it.
    pub struct OperatorCommand {
        pub by: String,
        pub command: Command,
    }

    /// Why an agent asks its buddy to go offline.
    #[derive(Copy, Hash)]
    pub enum RequestReason { Takeover, TieBreak, Handover, Operator }

    /// An answer to a go-offline request.
    pub enum Answer { Accepted, Refused(String) }

    /// Result of the host's attempt at the virtual IP.
    pub enum VipResult { Acquired, Failed(String), Released }

    /// The pair's witness lease as this agent's witness client sees it (a snapshot).
    pub struct Witness {
        /// The last operation on the witness (read or write) succeeded within a renewal period.
        pub reachable: bool,
        /// This agent holds the lease and the deadline of its last acknowledged renewal is
        /// still ahead, on its own monotonic clock.
        pub held: bool,
        /// The lease may be taken by this agent now: nobody holds it, it is this agent's own
        /// (from before a restart), or its revision stayed unchanged for a whole lease on this
        /// agent's clock (the holder lapsed); only a compare-and-swap at that revision takes it.
        pub free: bool,
        /// Who holds the lease by the last read, if anyone.
        pub holder: Option<String>,
        /// The lease's length (`witness.lease`).
        #[cfg_attr(feature = "serde", serde(default))]
        pub lease_ms: u64,
    }

    /// Everything `failover::step` takes besides the state.
    pub struct Input {
        pub agent: String,
        pub started_at: TimestampMs,
        pub config: FailoverConfig,
        pub heartbeats: Vec<Heartbeat>,
        pub sync_up: bool,
        pub buddy: Option<BuddyView>,
        pub command: Option<OperatorCommand>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub offline_request: Option<RequestReason>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub remembered: Option<FailoverState>,
        pub answer: Option<Answer>,
        pub triggers: Vec<String>,
        pub vip: Option<VipResult>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub nics: Vec<Nic>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub fenced: Option<u64>,
        /// The pair's witness; none when no witness is configured (the rules are then those
        /// without one).
        #[cfg_attr(feature = "serde", serde(default))]
        pub witness: Option<Witness>,
    }

    /// The failover machine's remembered state.
    #[derive(Copy)]
    pub struct MachineState {
        pub state: FailoverState,
        pub mode: Mode,
        pub since: TimestampMs,
        pub last_switch: Option<TimestampMs>,
        #[cfg_attr(feature = "serde", serde(default))]
        pub met_buddy: bool,
        /// Since when every inverted heartbeat has failed; none while not isolated.
        #[cfg_attr(feature = "serde", serde(default))]
        pub isolated_since: Option<TimestampMs>,
        /// An operator asked this agent to go online: isolation does not stop the claim.
        #[cfg_attr(feature = "serde", serde(default))]
        pub forced: bool,
        /// The fewest inverted failures when fresh evidence of the buddy's outside arrived.
        #[cfg_attr(feature = "serde", serde(default))]
        pub evidence_failures: Option<u32>,
    }

    /// Severity of a raised event.
    #[derive(Copy, Hash)]
    pub enum Severity { Info, Warning, Error, Critical }

    /// An alarm or notice for the event log.
    pub struct Event {
        pub severity: Severity,
        pub code: String,
        pub message: String,
    }

    /// A hook script the host runs.
    #[derive(Copy, Hash)]
    pub enum Hook { Online, Offline, Fault, VipAcquired, VipReleased }

    /// What the host must carry out.
    pub enum Action {
        AcquireVip,
        ReleaseVip,
        AskBuddyOffline(RequestReason),
        HandOver,
        AnswerBuddy(Answer),
        Persist(FailoverState),
        Log(String),
        Raise(Event),
        RunHook(Hook),
    }

    /// Why a decision was taken.
    #[derive(Copy, Hash)]
    pub enum ReasonCode {
        Steady,
        StartupTieBreak,
        LostTieBreak,
        BuddyDead,
        Isolated,
        BuddyAlive,
        Operator,
        SwitchTrigger,
        BuddyRequest,
        BuddyAnswer,
        Vip,
        Timeout,
        PingPongGuard,
        ManualMode,
        StartingUp,
        Fenced,
        Witness,
    }

    /// A reason: its code and a sentence.
    pub struct Reason {
        pub code: ReasonCode,
        pub text: String,
    }

    /// The outcome of one step.
    pub struct Decision {
        pub state: MachineState,
        pub actions: Vec<Action>,
        pub reason: Reason,
    }
}

impl FailoverState {
    /// The label of the "Failover Status" row and the failover log ("Failover Status => ...").
    pub fn label(self) -> &'static str {
        match self {
            FailoverState::Offline => "Offline",
            FailoverState::PreparingToGoOnline => "Preparing to go online",
            FailoverState::GoingOnline => "Going online",
            FailoverState::Online => "Online",
            FailoverState::GoingOffline => "Going offline",
        }
    }
}

impl Severity {
    /// The severity's one spelling, in the API, the event store and the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The failover log's level column (`INF`, `WRN`, `ERR`): a critical event is an error
    /// there.
    pub fn log_level(self) -> &'static str {
        match self {
            Severity::Info => "INF",
            Severity::Warning => "WRN",
            Severity::Error | Severity::Critical => "ERR",
        }
    }
}

impl core::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "\"{other}\" is not a severity: info, warning, error or critical"
            )),
        }
    }
}

impl Led {
    /// The LED's meaning in words, for text next to the colour (title, aria-label, terminal).
    pub fn meaning(self) -> &'static str {
        match self {
            Led::Green => "No problems detected",
            Led::Red => "A problem has been detected",
            Led::Transparent => "Status information is being retrieved",
        }
    }
}

impl Heartbeat {
    /// The path counts as failed: more consecutive failures than allowed.
    pub fn exceeded(&self) -> bool {
        self.failures > self.max_failures
    }
}

impl MachineState {
    /// A state entered at `now`, with no switch behind it.
    pub fn new(state: FailoverState, mode: Mode, now: TimestampMs) -> Self {
        MachineState {
            state,
            mode,
            since: now,
            last_switch: None,
            met_buddy: false,
            isolated_since: None,
            forced: false,
            evidence_failures: None,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            startup_grace_ms: 5_000,
            buddy_timeout_ms: 10_000,
            vip_enabled: false,
        }
    }
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            priority: 100,
            vip_enabled: false,
            prepare_timeout_ms: 10_000,
            going_online_timeout_ms: 30_000,
            going_offline_timeout_ms: 10_000,
            min_switch_interval_ms: 30_000,
            startup_wait_ms: 10_000,
        }
    }
}

impl Input {
    /// An input where nothing is configured and nothing happened: a base for tests and docs.
    pub fn quiet(agent: &str) -> Self {
        Input {
            agent: agent.to_string(),
            started_at: 0,
            config: FailoverConfig::default(),
            heartbeats: Vec::new(),
            sync_up: false,
            buddy: None,
            command: None,
            offline_request: None,
            remembered: None,
            answer: None,
            triggers: Vec::new(),
            vip: None,
            nics: Vec::new(),
            fenced: None,
            witness: None,
        }
    }
}
