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
