//! What the operator sees, kept in the event log: this agent's LED changes (naming the rows
//! that turned it red), its buddy going Unreachable and coming back, and its decisions that
//! change the reason or the mode without a transition (transitions are `switch` events
//! already), with who gave the command. Each agent records its own; DB Sync makes the record
//! pair-wide.

use std::sync::Arc;

use duet_base::Severity;
use duet_core::api::{DecisionSummary, HistoryEntry};
use duet_core::{Led, PairReport, Report};
use duet_kernel::Kernel;
use tokio_util::sync::CancellationToken;

use crate::EventLog;

/// What was shown last: this agent's LED, and whether the buddy was reachable (none while
/// its status was still being retrieved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    led: Led,
    buddy: Option<bool>,
}

impl Shown {
    pub fn of(pair: &PairReport) -> Shown {
        let unreachable = pair.buddy.rows.iter().any(|r| r.key == "agent-status");
        Shown {
            led: pair.local.led,
            buddy: if unreachable {
                Some(false)
            } else {
                pair.buddy.state.map(|_| true)
            },
        }
    }
}

/// The events a change from `before` to `pair` deserves.
pub fn changes(before: Shown, pair: &PairReport) -> Vec<(Severity, &'static str, String)> {
    let now = Shown::of(pair);
    let mut out = Vec::new();
    if now.led != before.led {
        let severity = if now.led == Led::Red {
            Severity::Warning
        } else {
            Severity::Info
        };
        out.push((
            severity,
            "led",
            format!(
                "{} LED {} → {}: {}",
                pair.local.agent,
                name(before.led),
                name(now.led),
                why(&pair.local)
            ),
        ));
    }
    match (before.buddy, now.buddy) {
        (Some(true), Some(false)) => {
            let reason = pair
                .buddy
                .rows
                .first()
                .and_then(|r| r.reason.clone())
                .unwrap_or_default();
            out.push((
                Severity::Warning,
                "buddy_unreachable",
                format!("{} is Unreachable: {reason}", pair.buddy.agent),
            ));
        }
        (Some(false), Some(true)) => out.push((
            Severity::Info,
            "buddy_reachable",
            format!(
                "{} is reachable again ({})",
                pair.buddy.agent,
                pair.buddy.state.map_or("state unknown", |s| s.label())
            ),
        )),
        _ => {}
    }
    out
}

fn name(led: Led) -> &'static str {
    match led {
        Led::Green => "green",
        Led::Red => "red",
        Led::Transparent => "transparent",
    }
}

/// The rows that turn the LED red, or its meaning when none does.
fn why(report: &Report) -> String {
    let red: Vec<String> = report
        .rows
        .iter()
        .filter(|r| r.turns_led_red)
        .map(|r| match &r.reason {
            Some(reason) => format!("{} {} ({reason})", r.label, r.value),
            None => format!("{} {}", r.label, r.value),
        })
        .collect();
    if red.is_empty() {
        report.led.meaning().to_string()
    } else {
        red.join("; ")
    }
}

/// A decision that changed the reason or the mode but not the state: what it says, with
/// who gave the command (the newest history entry, asked for only then, when it is this
/// decision's).
pub fn decided(
    before: Option<&DecisionSummary>,
    now: &DecisionSummary,
    newest: impl FnOnce() -> Option<HistoryEntry>,
    agent: &str,
) -> Option<String> {
    let before = before?;
    let same_state = before.state.state == now.state.state;
    let changed = before.reason != now.reason || before.state.mode != now.state.mode;
    (same_state && changed).then(|| {
        let by = newest()
            .filter(|e| e.decision.tick == now.tick)
            .and_then(|e| e.by)
            .map(|by| format!(" (by {by})"))
            .unwrap_or_default();
        let mode = match now.state.mode {
            duet_core::Mode::Automatic => "automatic",
            duet_core::Mode::Manual => "manual",
        };
        format!(
            "{agent} stays {} ({mode} mode): {}{by}",
            now.state.state.label(),
            now.reason.text
        )
    })
}

/// Records every change of what the kernel shows until `stop`.
pub async fn run(
    events: Arc<EventLog>,
    kernel: Arc<Kernel>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut rx = kernel.subscribe();
    let mut last: Option<Shown> = None;
    let mut last_decision: Option<DecisionSummary> = None;
    loop {
        // The `Arc` only, under the channel's lock (the decision loop publishes through it).
        let status = rx.borrow_and_update().clone();
        if let Some(pair) = status.pair.clone() {
            if let Some(before) = last {
                for (severity, code, message) in changes(before, &pair) {
                    events.raise(severity, code, message);
                }
            }
            last = Some(Shown::of(&pair));
            if let Some(now) = status.decision.clone() {
                let newest = || kernel.history(1).pop();
                let agent = &pair.local.agent;
                if let Some(message) = decided(last_decision.as_ref(), &now, newest, agent) {
                    events.raise(Severity::Info, "decision", message);
                }
                last_decision = Some(now);
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Ok(()) },
            () = stop.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use duet_core::{FailoverState, Row};

    use super::*;

    fn report(agent: &str, led: Led, state: Option<FailoverState>, rows: Vec<Row>) -> Report {
        Report {
            agent: agent.into(),
            generated_at: 0,
            state,
            led,
            rows,
        }
    }

    fn row(key: &str, label: &str, value: &str, reason: &str) -> Row {
        Row {
            key: key.into(),
            label: label.into(),
            value: value.into(),
            reason: Some(reason.into()),
            failures: None,
            last_success: None,
            turns_led_red: true,
        }
    }

    #[test]
    fn decisions_without_a_transition_are_recorded_with_who() {
        use duet_core::{MachineState, Mode, Reason, ReasonCode};
        let decision = |tick, code, text: &str| DecisionSummary {
            tick,
            at: 0,
            state: MachineState::new(FailoverState::Online, Mode::Automatic, 0),
            reason: Reason {
                code,
                text: text.into(),
            },
        };
        let steady = decision(1, ReasonCode::Steady, "no fault");
        let refused = decision(
            2,
            ReasonCode::Operator,
            "force online refused: already Online",
        );
        assert_eq!(decided(None, &steady, || None, "a"), None);
        assert_eq!(decided(Some(&steady), &steady, || None, "a"), None);
        let by = HistoryEntry {
            decision: refused.clone(),
            by: Some("alice".into()),
        };
        assert_eq!(
            decided(Some(&steady), &refused, || Some(by), "a").as_deref(),
            Some(
                "a stays Online (automatic mode): force online refused: already Online (by alice)"
            )
        );
    }

    #[test]
    fn led_changes_and_the_buddy_leaving_and_returning_are_recorded() {
        let online = Some(FailoverState::Online);
        let healthy = PairReport {
            local: report("a", Led::Green, online, vec![]),
            buddy: report("b", Led::Green, Some(FailoverState::Offline), vec![]),
        };
        let before = Shown::of(&healthy);
        assert!(changes(before, &healthy).is_empty());
        let hb = row("heartbeat:0", "Heartbeat to b", "Failing", "timed out");
        let lost = PairReport {
            local: report("a", Led::Red, online, vec![hb]),
            buddy: report(
                "b",
                Led::Red,
                None,
                vec![row(
                    "agent-status",
                    "Agent Status",
                    "Unreachable",
                    "declared dead",
                )],
            ),
        };
        let seen = changes(before, &lost);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].1, "led");
        assert_eq!(
            seen[0].2,
            "a LED green → red: Heartbeat to b Failing (timed out)"
        );
        assert_eq!(
            (seen[1].1, seen[1].2.as_str()),
            ("buddy_unreachable", "b is Unreachable: declared dead")
        );
        let back = changes(Shown::of(&lost), &healthy);
        assert_eq!(back[1].2, "b is reachable again (Offline)");
        assert_eq!(back[0].2, "a LED red → green: No problems detected");
    }
}
