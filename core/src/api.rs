//! The JSON API's model, shared by the host, `duet status` and the web UI.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::{MachineState, PairReport, Reason, TimestampMs};

/// What `GET /api/v1/status` returns: the pair as one agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Status {
    /// Both Status columns, once the first tick ran.
    pub pair: Option<PairReport>,
    /// The failover machine's last decision ("why is this agent Offline?").
    pub decision: Option<DecisionSummary>,
    /// Which core answered the last tick.
    pub core: String,
}

/// The last decision of the failover machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DecisionSummary {
    /// The host's tick number.
    pub tick: u64,
    /// When it was taken.
    pub at: TimestampMs,
    /// The state after it.
    pub state: MachineState,
    /// Why.
    pub reason: Reason,
}

/// What `GET /api/v1/history` returns: the decisions that changed something, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct History {
    /// Decisions that changed the state or the reason, and operators' commands.
    pub entries: Vec<HistoryEntry>,
}

/// One remembered decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HistoryEntry {
    /// The decision.
    pub decision: DecisionSummary,
    /// Who gave the command this decision answered, if any (a token's name).
    pub by: Option<String>,
}

/// The answer to an accepted command (`202 Accepted`): it runs on the next tick.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CommandAccepted {
    /// The command (`switch`, `force_online`, `mode`).
    pub command: String,
    /// Who gave it (the token's name).
    pub by: String,
}

/// The body of every API error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}

/// What `GET /api/v1/pair` returns: the pair as configured on the agent that answers, for the
/// Failover Config window.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PairInfo {
    /// The agent that answers.
    pub local: AgentInfo,
    /// Its buddy, as far as this agent's configuration knows it.
    pub buddy: AgentInfo,
    /// The virtual IP with its prefix (`10.0.0.10/24`); none on a pair without one.
    #[cfg_attr(feature = "serde", serde(default))]
    pub virtual_ip: Option<String>,
    /// Whether the packet-capture library (libpcap) can be used on the agent that answers.
    pub packet_capture: PacketCapture,
    /// How often the web UI refreshes on its own (`web.refresh`), in milliseconds; the host
    /// also pushes every change at once.
    pub refresh_ms: u64,
}

/// One agent of the pair as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct AgentInfo {
    /// The agent's name.
    pub name: String,
    /// Its addresses: the API's for this agent, the heartbeat targets for the buddy.
    pub addresses: Vec<String>,
    /// Its failover mode: the buddy's as it last reported it; none before its first report.
    #[cfg_attr(feature = "serde", serde(default))]
    pub mode: Option<crate::Mode>,
}

/// The outcome of looking for the packet-capture library at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct PacketCapture {
    /// The library was loaded and answered its version call.
    pub found: bool,
    /// The file that was loaded (`libpcap.so.0.8`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub library: Option<String>,
    /// What `pcap_lib_version` answered.
    #[cfg_attr(feature = "serde", serde(default))]
    pub version: Option<String>,
    /// When not found: the message for the operator (the reference's wording).
    #[cfg_attr(feature = "serde", serde(default))]
    pub message: Option<String>,
    /// When not found: the technical detail (which files were tried, the loader's error).
    #[cfg_attr(feature = "serde", serde(default))]
    pub detail: Option<String>,
}

/// What `GET /api/v1/session` returns for a valid token: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Session {
    /// The token's name (shown in the history as who gave a command).
    pub name: String,
    /// Its rights: `switch`, `force_online`, `mode`.
    pub rights: Vec<String>,
}
