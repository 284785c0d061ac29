//! The peer report: what an agent tells its buddy on every peer-link exchange, and what a
//! tick hands its observers.

use duet_core::{
    Answer, BuddyView, Decision, FailoverState, Mode, Report, RequestReason, TimestampMs,
};
use duet_runtime::CoreOrigin;
use serde::{Deserialize, Serialize};

/// What an agent tells its buddy, on every peer-link exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerReport {
    pub agent: String,
    /// A random number per run of the agent: a restarted buddy's tick count starts again.
    pub boot: u64,
    /// The fingerprint of the settings both agents must share ([`crate::config::KernelConfig::fingerprint`]).
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
    /// The settings both agents must share, by key ([`crate::configuration`]), sent
    /// while the buddy's fingerprint differs from ours so it can name the key that differs.
    /// Empty otherwise, and from an agent that predates it.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// This agent's MAC addresses: once it is declared dead, an ARP answer for a VIP from one
    /// of them is its lapsing lease, not an occupant.
    #[serde(default)]
    pub macs: Vec<String>,
    /// Sent by a fenced agent whose loop stalled ([`crate::fence`]): it says Offline and
    /// yielding at the tick its loop stopped at, and is newer than that tick's own report.
    #[serde(default)]
    pub fenced: bool,
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

impl PeerReport {
    /// Whether this report replaces `old` (paths race; a restarted agent has a new boot
    /// number). A fenced agent's reports carry its stalled tick: newer than that tick's own
    /// report, and each as new as the last (its answer to a request comes in a later one).
    pub fn newer_than(&self, old: &PeerReport) -> bool {
        old.boot != self.boot
            || (self.tick, self.fenced) > (old.tick, old.fenced)
            || (self.fenced && self.tick == old.tick)
    }

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
