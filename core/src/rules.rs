//! Status rules: this agent's observations (and the buddy's last report) become both columns of
//! the Status window, each with its LED. The LED table is documented in `docs/status-rows.md`.

use crate::{
    Check, FailoverState, HeartbeatKind, Led, Observations, PairReport, ReceivedReport, Report,
    Row, RulesConfig, TimestampMs,
};

/// Turns this agent's observations and the buddy's last report into both Status columns.
pub fn evaluate(
    local: &Observations,
    buddy: Option<&ReceivedReport>,
    config: &RulesConfig,
    now: TimestampMs,
) -> PairReport {
    PairReport {
        local: local_report(local, config, now),
        buddy: buddy_report(local, buddy, config, now),
    }
}

fn local_report(obs: &Observations, config: &RulesConfig, now: TimestampMs) -> Report {
    let online = obs.state == FailoverState::Online;
    let mut rows = vec![Row {
        key: "failover-status".into(),
        label: "Failover Status".into(),
        value: obs.state.label().into(),
        reason: None,
        failures: None,
        last_success: None,
        // Rule: the Failover Status row has no colour.
        turns_led_red: false,
    }];
    rows.extend(check_row(
        "configuration",
        "Configuration",
        &obs.configuration,
        "Valid",
        "Invalid",
    ));
    for hb in &obs.heartbeats {
        let label = match hb.kind {
            HeartbeatKind::Agent => "Heartbeat".to_string(),
            HeartbeatKind::Inverted => "Inverted Heartbeat".to_string(),
            HeartbeatKind::Ping => format!("Ping to {}", hb.target),
        };
        rows.push(Row {
            key: format!("heartbeat:{}", hb.id),
            label,
            value: if hb.ok { "Success" } else { "Failing" }.into(),
            reason: if hb.ok { None } else { hb.reason.clone() },
            failures: Some(hb.failures),
            last_success: hb.last_success,
            // Rule: a failing path is a problem even before it exceeds its allowed failures.
            turns_led_red: !hb.ok,
        });
    }
    // Rule: Sync Connection is shown only on the Online agent (reference §4).
    if online {
        rows.extend(check_row(
            "sync",
            "Sync Connection",
            &obs.sync,
            "Available",
            "Not Available",
        ));
    }
    rows.push(Row {
        key: "rte-count".into(),
        label: "RTE Count".into(),
        value: obs.rte_count.to_string(),
        reason: None,
        failures: None,
        last_success: None,
        turns_led_red: obs.rte_count > 0,
    });
    rows.extend(check_row(
        "database",
        "Database",
        &obs.database,
        "OK",
        "Failing",
    ));
    rows.extend(check_row(
        "nats",
        "NATS communication",
        &obs.nats,
        "OK",
        "Failing",
    ));
    for probe in &obs.probes {
        let (value, reason, failing) = match &probe.status {
            Check::NotConfigured => continue,
            Check::Ok => (probe.value.clone(), None, false),
            Check::Failing(why) => (probe.value.clone(), Some(why.clone()), true),
        };
        rows.push(Row {
            key: probe.key.clone(),
            label: probe.label.clone(),
            value,
            reason,
            failures: Some(probe.failures),
            last_success: probe.last_success,
            turns_led_red: failing && probe.counts_toward_led,
        });
    }
    // Rule: transparent during the start-up grace period, then red if any row says so.
    let led = if now < obs.started_at.saturating_add(config.startup_grace_ms) {
        Led::Transparent
    } else {
        led_of(&rows)
    };
    Report {
        agent: obs.agent.clone(),
        generated_at: now,
        state: Some(obs.state),
        led,
        rows,
    }
}

fn buddy_report(
    obs: &Observations,
    buddy: Option<&ReceivedReport>,
    config: &RulesConfig,
    now: TimestampMs,
) -> Report {
    match buddy {
        // Rule: a report younger than the buddy timeout is shown as the buddy sent it.
        Some(received) if now.saturating_sub(received.received_at) <= config.buddy_timeout_ms => {
            received.report.clone()
        }
        // Rule: no report yet, and we only just started: status is being retrieved.
        None if now < obs.started_at.saturating_add(config.buddy_timeout_ms) => Report {
            agent: obs.buddy.clone(),
            generated_at: now,
            state: None,
            led: Led::Transparent,
            rows: Vec::new(),
        },
        // Rule: otherwise the buddy is "Agent Status: Unreachable".
        stale => Report {
            agent: obs.buddy.clone(),
            generated_at: now,
            state: None,
            led: Led::Red,
            rows: vec![Row {
                key: "agent-status".into(),
                label: "Agent Status".into(),
                value: "Unreachable".into(),
                reason: Some(match stale {
                    Some(r) => format!(
                        "no status report for {} s (status.buddy_timeout is {} s)",
                        now.saturating_sub(r.received_at) / 1000,
                        config.buddy_timeout_ms / 1000
                    ),
                    None => "no status report received since start".into(),
                }),
                failures: None,
                last_success: stale.map(|r| r.received_at),
                turns_led_red: true,
            }],
        },
    }
}

/// A row for a check, or none when the probe is not configured.
fn check_row(key: &str, label: &str, check: &Check, ok: &str, failing: &str) -> Option<Row> {
    let (value, reason) = match check {
        Check::NotConfigured => return None,
        Check::Ok => (ok, None),
        Check::Failing(why) => (failing, Some(why.clone())),
    };
    Some(Row {
        key: key.into(),
        label: label.into(),
        value: value.into(),
        turns_led_red: reason.is_some(),
        reason,
        failures: None,
        last_success: None,
    })
}

fn led_of(rows: &[Row]) -> Led {
    if rows.iter().any(|r| r.turns_led_red) {
        Led::Red
    } else {
        Led::Green
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Heartbeat, Mode};

    fn obs() -> Observations {
        Observations {
            agent: "a".into(),
            buddy: "b".into(),
            started_at: 0,
            state: FailoverState::Online,
            mode: Mode::Automatic,
            configuration: Check::Ok,
            heartbeats: vec![Heartbeat {
                id: "hb0".into(),
                kind: HeartbeatKind::Agent,
                target: "b".into(),
                ok: true,
                failures: 0,
                max_failures: 3,
                last_success: Some(900),
                reason: None,
                rtt_us: Some(120),
            }],
            sync: Check::Ok,
            database: Check::NotConfigured,
            nats: Check::NotConfigured,
            rte_count: 0,
            probes: Vec::new(),
        }
    }

    #[test]
    fn led_is_transparent_during_startup_grace_then_green() {
        let config = RulesConfig::default();
        assert_eq!(
            evaluate(&obs(), None, &config, 1_000).local.led,
            Led::Transparent
        );
        assert_eq!(
            evaluate(&obs(), None, &config, 60_000).local.led,
            Led::Green
        );
    }

    #[test]
    fn failing_database_turns_led_red_and_names_reason() {
        let mut o = obs();
        o.database = Check::Failing("connection refused".into());
        let report = evaluate(&o, None, &RulesConfig::default(), 60_000).local;
        assert_eq!(report.led, Led::Red);
        let row = report
            .rows
            .iter()
            .find(|r| r.key == "database")
            .expect("database row");
        assert_eq!(
            (row.value.as_str(), row.reason.as_deref()),
            ("Failing", Some("connection refused"))
        );
    }

    #[test]
    fn sync_connection_row_only_on_online_agent() {
        let mut o = obs();
        o.state = FailoverState::Offline;
        let report = evaluate(&o, None, &RulesConfig::default(), 60_000).local;
        assert!(report.rows.iter().all(|r| r.key != "sync"));
    }

    #[test]
    fn buddy_without_report_is_unreachable_after_timeout() {
        let report = evaluate(&obs(), None, &RulesConfig::default(), 60_000).buddy;
        assert_eq!(report.led, Led::Red);
        assert_eq!(report.rows[0].label, "Agent Status");
        assert_eq!(report.rows[0].value, "Unreachable");
    }

    #[test]
    fn fresh_buddy_report_is_shown_as_sent() {
        let config = RulesConfig::default();
        let theirs = evaluate(&obs(), None, &config, 60_000).local;
        let received = ReceivedReport {
            report: theirs.clone(),
            received_at: 59_000,
        };
        assert_eq!(
            evaluate(&obs(), Some(&received), &config, 60_000).buddy,
            theirs
        );
        let stale = evaluate(
            &obs(),
            Some(&received),
            &config,
            59_000 + config.buddy_timeout_ms + 1,
        );
        assert_eq!(stale.buddy.rows[0].value, "Unreachable");
    }
}
