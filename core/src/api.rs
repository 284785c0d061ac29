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

/// What `GET /api/v1/status` and the stream send: the kernel's [`Status`] and what tells its
/// story at a glance: how old the buddy's report is, and what brought this agent where it is.
///
/// On the wire its fields are the status's, side by side with its own (not `serde(flatten)`,
/// whose buffering doubles the deserializing code in the web UI's bundle).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(from = "OverviewWire", into = "OverviewWire")
)]
pub struct Overview {
    pub status: Status,
    /// How old the buddy's last report was when this agent's report was made, in ms (by this
    /// agent's clock: the buddy's is never trusted); none before the first report.
    #[cfg_attr(feature = "serde", serde(default))]
    pub buddy_report_age_ms: Option<u64>,
    /// The decision that set this agent on its way to its current state (the takeover and
    /// its cause, the operator's switch and who gave it); none before the first decision.
    #[cfg_attr(feature = "serde", serde(default))]
    pub cause: Option<HistoryEntry>,
    /// The pair's witness lease as this agent sees it; none without `[witness]`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub witness: Option<WitnessLease>,
}

/// The pair's witness lease as one agent sees it: who holds it, whether the witness answers,
/// and an operator's force online without the witness while it is in force.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct WitnessLease {
    /// Who holds the lease, by this agent's last read (none: nobody, or released).
    pub holder: Option<String>,
    /// This agent holds it (its deadline has not passed).
    pub held: bool,
    /// The witness answers this agent.
    pub reachable: bool,
    /// The operator (token name) whose force online without the witness is in force.
    #[cfg_attr(feature = "serde", serde(default))]
    pub overridden_by: Option<String>,
}

impl WitnessLease {
    /// "held by agent-a", "held by nobody (the witness cannot be reached)", with the override
    /// when one is in force: what `duet status` and the web UI show.
    pub fn line(&self) -> String {
        let mut line = format!("held by {}", self.holder.as_deref().unwrap_or("nobody"));
        if !self.reachable {
            line.push_str(" (the witness cannot be reached)");
        }
        if let Some(by) = &self.overridden_by {
            line.push_str(&format!("; forced online without the witness by {by}"));
        }
        line
    }
}

/// [`Overview`] as it is sent.
#[cfg(feature = "serde")]
#[derive(Serialize, Deserialize)]
struct OverviewWire {
    pair: Option<PairReport>,
    decision: Option<DecisionSummary>,
    core: String,
    #[serde(default)]
    buddy_report_age_ms: Option<u64>,
    #[serde(default)]
    cause: Option<HistoryEntry>,
    #[serde(default)]
    witness: Option<WitnessLease>,
}

#[cfg(feature = "serde")]
impl From<OverviewWire> for Overview {
    fn from(w: OverviewWire) -> Self {
        Overview {
            status: Status {
                pair: w.pair,
                decision: w.decision,
                core: w.core,
            },
            buddy_report_age_ms: w.buddy_report_age_ms,
            cause: w.cause,
            witness: w.witness,
        }
    }
}

#[cfg(feature = "serde")]
impl From<Overview> for OverviewWire {
    fn from(o: Overview) -> Self {
        OverviewWire {
            pair: o.status.pair,
            decision: o.status.decision,
            core: o.status.core,
            buddy_report_age_ms: o.buddy_report_age_ms,
            cause: o.cause,
            witness: o.witness,
        }
    }
}

impl Overview {
    /// The entry of `history` (oldest first) that set the agent on its way to the state of
    /// the newest entry: the first of the newest run of entries in that state or on the way
    /// to it (preparing, going online, going offline).
    pub fn cause(history: &[HistoryEntry]) -> Option<&HistoryEntry> {
        let current = history.last()?.decision.state.state;
        let on_the_way = |e: &HistoryEntry| {
            let s = e.decision.state.state;
            s == current
                || matches!(
                    s,
                    crate::FailoverState::PreparingToGoOnline
                        | crate::FailoverState::GoingOnline
                        | crate::FailoverState::GoingOffline
                )
        };
        let run = history.iter().rev().take_while(|e| on_the_way(e)).count();
        history.get(history.len() - run)
    }
}

impl Overview {
    /// "Why is <agent> <state>?" and its answer: what set the agent on its way to its state
    /// (and who, for an operator's command), then the reason of its last decision when that
    /// says something else. `None` before the first decision.
    pub fn why(&self) -> Option<(String, String)> {
        let decision = self.status.decision.as_ref()?;
        let agent = self
            .status
            .pair
            .as_ref()
            .map_or("this agent", |p| p.local.agent.as_str());
        let question = format!("Why is {agent} {}?", decision.state.state.label());
        let now = &decision.reason.text;
        let answer = match &self.cause {
            Some(cause) if cause.decision.reason != decision.reason => {
                let by = cause
                    .by
                    .as_ref()
                    .map(|by| format!(" (by {by})"))
                    .unwrap_or_default();
                format!("{}{by}. Now: {now}", cause.decision.reason.text)
            }
            _ => now.clone(),
        };
        Some((question, answer))
    }
}

/// A duration in words for an operator: "0.4 s", "12 s", "3 min", "3 h", "2 d".
pub fn duration_words(ms: u64) -> String {
    match ms {
        0..10_000 => format!("{}.{} s", ms / 1000, ms % 1000 / 100),
        10_000..120_000 => format!("{} s", ms / 1000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        7_200_000..172_800_000 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
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

/// One reload of the configuration file (SIGHUP, `duet reload`): what it changed, or why it
/// was refused (the running configuration is then kept, unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Reload {
    /// When it was asked, by this agent's clock.
    pub at: TimestampMs,
    /// Who asked: `SIGHUP`, or the name of the API token.
    pub by: String,
    /// Why the file was refused, naming the key (a syntax or validation error); none when it
    /// was taken.
    pub error: Option<String>,
    /// Settings that changed and were taken, by key path (they apply at the next tick).
    pub applied: Vec<String>,
    /// Settings that differ from the running ones and wait for a restart, by key path.
    pub restart: Vec<String>,
}

/// What `GET /api/v1/reload` returns: the last reload, and the last one taken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Reloads {
    /// The last reload, taken or refused; none since start.
    pub last: Option<Reload>,
    /// The last reload taken: its `restart` keys still wait for a restart.
    pub last_applied: Option<Reload>,
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
    /// The buddy's web UI and API (`http://10.0.0.2:7101`, from `web.buddy`): where the page
    /// turns when this agent stops answering; none when not configured.
    #[cfg_attr(feature = "serde", serde(default))]
    pub buddy_url: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FailoverState, MachineState, Mode, ReasonCode};

    fn entry(state: FailoverState, code: ReasonCode, text: &str, by: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            decision: DecisionSummary {
                tick: 0,
                at: 0,
                state: MachineState::new(state, Mode::Automatic, 0),
                reason: Reason {
                    code,
                    text: text.into(),
                },
            },
            by: by.map(Into::into),
        }
    }

    #[test]
    fn the_cause_is_the_decision_that_left_the_last_settled_state() {
        use FailoverState::*;
        let history = [
            entry(Offline, ReasonCode::Steady, "offline", None),
            entry(
                PreparingToGoOnline,
                ReasonCode::BuddyDead,
                "buddy dead",
                None,
            ),
            entry(GoingOnline, ReasonCode::Steady, "acquiring", None),
            entry(
                Online,
                ReasonCode::Steady,
                "no fault calls for a switch",
                None,
            ),
        ];
        let cause = Overview::cause(&history).expect("a cause");
        assert_eq!(cause.decision.reason.text, "buddy dead");
        assert!(Overview::cause(&[]).is_none());
        let overview = Overview {
            status: Status {
                decision: Some(history[3].decision.clone()),
                ..Status::default()
            },
            cause: Some(cause.clone()),
            buddy_report_age_ms: None,
            witness: None,
        };
        let (question, answer) = overview.why().expect("an answer");
        assert_eq!(question, "Why is this agent Online?");
        assert_eq!(answer, "buddy dead. Now: no fault calls for a switch");
        let switched = [
            entry(Online, ReasonCode::Steady, "online", None),
            entry(GoingOffline, ReasonCode::Operator, "switch", Some("alice")),
            entry(Offline, ReasonCode::Steady, "offline", None),
        ];
        let cause = Overview::cause(&switched).expect("a cause");
        assert_eq!(cause.by.as_deref(), Some("alice"));
    }

    #[test]
    fn the_witness_line_names_the_holder_an_outage_and_an_override() {
        let mut lease = WitnessLease {
            holder: Some("agent-a".into()),
            held: true,
            reachable: true,
            overridden_by: None,
        };
        assert_eq!(lease.line(), "held by agent-a");
        lease.holder = None;
        lease.reachable = false;
        lease.overridden_by = Some("alice".into());
        assert_eq!(
            lease.line(),
            "held by nobody (the witness cannot be reached); forced online without the witness by alice"
        );
    }

    #[test]
    fn durations_read_in_words() {
        assert_eq!(duration_words(400), "0.4 s");
        assert_eq!(duration_words(12_000), "12 s");
        assert_eq!(duration_words(180_000), "3 min");
        assert_eq!(duration_words(3 * 3_600_000), "3 h");
        assert_eq!(duration_words(2 * 86_400_000), "2 d");
    }
}
