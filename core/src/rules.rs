//! Status rules: this agent's observations (and the buddy's last report) become both columns of
//! the Status window, each with its LED. The LED table is documented in `docs/status-rows.md`.

use crate::{
    BuddyColumn, Check, Columns, FailoverState, HeartbeatKind, Led, Observations, PairReport,
    ReceivedReport, Report, Row, RulesConfig, TimestampMs,
};

/// When a row turns its agent's LED red (a column of [`LED_TABLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedWhen {
    /// Never: the row has no colour.
    Never,
    /// While the row reports a problem (Invalid, Failing, Not Available, Unavailable).
    Problem,
    /// While the number it shows is above zero.
    AboveZero,
    /// While failing, unless the operator configured it not to count (`counts_toward_led`).
    ProblemIfCounted,
    /// Whenever the row is shown.
    Always,
}

/// The LED table: every row the rules make, by key (a trailing `:` is a prefix: one row per
/// heartbeat, NIC or plugin), its label, and when it turns the LED red. Rows appear in this
/// order; `docs/status-rows.md` shows the same table to operators.
pub const LED_TABLE: &[(&str, &str, RedWhen)] = &[
    ("failover-status", "Failover Status", RedWhen::Never),
    ("configuration", "Configuration", RedWhen::Problem),
    (
        "heartbeat:",
        "Heartbeat to <target> / Inverted Heartbeat to <target> / Ping to <ip>",
        RedWhen::Problem,
    ),
    ("sync", "Sync Connection", RedWhen::Problem),
    ("rte-count", "RTE Count", RedWhen::AboveZero),
    ("nic:", "NIC <name>", RedWhen::Problem),
    ("database", "Database", RedWhen::Problem),
    ("nats", "NATS communication", RedWhen::Problem),
    ("plugin:", "Plugin <name>", RedWhen::ProblemIfCounted),
    // Host rows handed to the rules as probes, after the plugins: the virtual IPs (#6) and,
    // on the Online agent, the event log's forwarding (#8).
    (
        "vip:",
        "Virtual IP <address> (<nic>)",
        RedWhen::ProblemIfCounted,
    ),
    ("db-sync", "DB Sync", RedWhen::ProblemIfCounted),
    ("db-sync-stack", "DB Sync Stack", RedWhen::ProblemIfCounted),
    ("agent-status", "Agent Status", RedWhen::Always),
];

/// The LED rule of the row with this key (rows not in [`LED_TABLE`] never turn it red).
pub fn red_when(key: &str) -> RedWhen {
    LED_TABLE
        .iter()
        .find(|(k, _, _)| match k.strip_suffix(':') {
            Some(prefix) => key.strip_prefix(prefix).is_some_and(|r| r.starts_with(':')),
            None => key == *k,
        })
        .map_or(RedWhen::Never, |(_, _, rule)| *rule)
}

/// Whether a row with this key turns the LED red, given whether it reports a problem (for
/// `AboveZero` rows: the number is above zero) and whether the operator lets it count.
pub fn turns_led_red(key: &str, problem: bool, counted: bool) -> bool {
    match red_when(key) {
        RedWhen::Never => false,
        RedWhen::Problem | RedWhen::AboveZero => problem,
        RedWhen::ProblemIfCounted => problem && counted,
        RedWhen::Always => true,
    }
}

/// Turns this agent's observations and the buddy's last report into both Status columns.
pub fn evaluate(
    local: &Observations,
    buddy: Option<&ReceivedReport>,
    config: &RulesConfig,
    now: TimestampMs,
) -> PairReport {
    columns(local, buddy.map(|b| b.received_at), config, now)
        .with_buddy(buddy.cloned())
        .expect("the rules show a report as sent only when they were told it arrived")
}

/// The rules themselves, and what crosses the core's boundary: both columns from this agent's
/// observations and only *when* the buddy's last report arrived. A fresh report is shown as
/// the buddy sent it ([`BuddyColumn::AsSent`]), so its rows need not cross into the core and
/// back on every evaluation.
pub fn columns(
    local: &Observations,
    buddy_received_at: Option<TimestampMs>,
    config: &RulesConfig,
    now: TimestampMs,
) -> Columns {
    Columns {
        local: local_report(local, config, now),
        buddy: buddy_column(local, buddy_received_at, config, now),
    }
}

impl Columns {
    /// Both columns, the buddy's filled in with its report where the rules show it as sent.
    /// `None` if they say "as sent" of a report that did not arrive: a broken core.
    pub fn with_buddy(self, buddy: Option<ReceivedReport>) -> Option<PairReport> {
        let buddy = match self.buddy {
            BuddyColumn::Made(report) => report,
            BuddyColumn::AsSent => buddy?.report,
        };
        Some(PairReport {
            local: self.local,
            buddy,
        })
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
        turns_led_red: turns_led_red("failover-status", false, false),
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
            // Rule: every heartbeat row names its target, as "Ping to <ip>" always did.
            HeartbeatKind::Agent => format!("Heartbeat to {}", hb.target),
            HeartbeatKind::Inverted => format!("Inverted Heartbeat to {}", hb.target),
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
            turns_led_red: turns_led_red("heartbeat:", !hb.ok, true),
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
        turns_led_red: turns_led_red("rte-count", obs.rte_count > 0, true),
    });
    // Rule: a NIC row exists only once its link went down or came back (reference §4).
    for nic in obs.nics.iter().filter(|n| n.changed) {
        let key = format!("nic:{}", nic.name);
        rows.push(Row {
            turns_led_red: turns_led_red(&key, !nic.up, true),
            key,
            label: format!("NIC {}", nic.name),
            value: if nic.up { "Available" } else { "Unavailable" }.into(),
            reason: (!nic.up).then(|| "the link is down (no carrier or set down)".to_string()),
            failures: None,
            last_success: None,
        });
    }
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
            turns_led_red: turns_led_red(&probe.key, failing, probe.counts_toward_led),
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

fn buddy_column(
    obs: &Observations,
    received_at: Option<TimestampMs>,
    config: &RulesConfig,
    now: TimestampMs,
) -> BuddyColumn {
    // Rule: once this agent's heartbeats declare the buddy dead (every agent heartbeat past
    // its allowed failures, the sync connection down) its last report is history, however
    // young: showing it as sent would show a dead agent Online beside the one taking over.
    let declared_dead = crate::failover::buddy_dead(&obs.heartbeats, obs.sync == Check::Ok);
    match received_at {
        // Rule: a report younger than the buddy timeout is shown as the buddy sent it.
        Some(at) if !declared_dead && now.saturating_sub(at) <= config.buddy_timeout_ms => {
            BuddyColumn::AsSent
        }
        // Rule: no report yet, and we only just started: status is being retrieved.
        None if now < obs.started_at.saturating_add(config.buddy_timeout_ms) => {
            BuddyColumn::Made(Report {
                agent: obs.buddy.clone(),
                generated_at: now,
                state: None,
                led: Led::Transparent,
                rows: Vec::new(),
            })
        }
        // Rule: otherwise the buddy is "Agent Status: Unreachable".
        stale => BuddyColumn::Made(Report {
            agent: obs.buddy.clone(),
            generated_at: now,
            state: None,
            led: Led::Red,
            rows: vec![Row {
                key: "agent-status".into(),
                label: "Agent Status".into(),
                value: "Unreachable".into(),
                reason: Some(match stale {
                    Some(at) if declared_dead => format!(
                        "every heartbeat to {} failed past its allowed failures: declared dead \
                         (last status report {} s ago)",
                        obs.buddy,
                        now.saturating_sub(at) / 1000
                    ),
                    Some(at) => format!(
                        "no status report for {} s (status.buddy_timeout is {} s)",
                        now.saturating_sub(at) / 1000,
                        config.buddy_timeout_ms / 1000
                    ),
                    None => "no status report received since start".into(),
                }),
                failures: None,
                last_success: stale,
                turns_led_red: turns_led_red("agent-status", true, true),
            }],
        }),
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
        turns_led_red: turns_led_red(key, reason.is_some(), true),
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
            nics: Vec::new(),
        }
    }

    fn nic(name: &str, up: bool, changed: bool) -> crate::Nic {
        crate::Nic {
            name: name.into(),
            up,
            changed,
            carries_vip: false,
        }
    }

    #[test]
    fn nic_row_appears_only_after_a_change_and_unavailable_turns_led_red() {
        let mut o = obs();
        o.nics = vec![nic("eth0", true, false), nic("eth1", false, true)];
        let report = evaluate(&o, None, &RulesConfig::default(), 60_000).local;
        assert!(report.rows.iter().all(|r| r.key != "nic:eth0"));
        let row = report
            .rows
            .iter()
            .find(|r| r.key == "nic:eth1")
            .expect("NIC row");
        assert_eq!(
            (row.label.as_str(), row.value.as_str()),
            ("NIC eth1", "Unavailable")
        );
        assert_eq!(report.led, Led::Red);
        o.nics = vec![nic("eth1", true, true)];
        let report = evaluate(&o, None, &RulesConfig::default(), 60_000).local;
        let row = report
            .rows
            .iter()
            .find(|r| r.key == "nic:eth1")
            .expect("NIC row");
        assert_eq!(row.value, "Available");
        assert_eq!(report.led, Led::Green);
    }

    #[test]
    fn every_row_follows_the_led_table_and_the_table_is_documented() {
        let mut o = obs();
        o.configuration = Check::Failing("x".into());
        o.database = Check::Failing("x".into());
        o.nats = Check::Failing("x".into());
        o.rte_count = 2;
        o.nics = vec![nic("eth1", false, true)];
        o.heartbeats[0].ok = false;
        o.sync = Check::Failing("x".into());
        let pair = evaluate(&o, None, &RulesConfig::default(), 60_000);
        for row in pair.local.rows.iter().chain(&pair.buddy.rows) {
            let rule = red_when(&row.key);
            let expected = rule != RedWhen::Never;
            assert_eq!(row.turns_led_red, expected, "{} under {rule:?}", row.key);
            assert!(
                LED_TABLE.iter().any(|(k, _, _)| row.key == *k
                    || k.strip_suffix(':')
                        .is_some_and(|p| row.key.starts_with(&format!("{p}:")))),
                "{} is in the LED table",
                row.key
            );
        }
        let doc = include_str!("../../docs/status-rows.md");
        for (key, _, _) in LED_TABLE {
            let shown = key
                .strip_suffix(':')
                .map_or_else(|| format!("(`{key}`)"), |p| format!("(`{p}:"));
            assert!(doc.contains(&shown), "docs/status-rows.md lists {key}");
        }
        assert_eq!(
            red_when("nicety"),
            RedWhen::Never,
            "a prefix needs its colon"
        );
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

    #[test]
    fn a_buddy_declared_dead_is_unreachable_before_its_report_times_out() {
        let config = RulesConfig::default();
        let mut o = obs();
        o.sync = Check::NotConfigured;
        o.heartbeats[0].ok = false;
        o.heartbeats[0].failures = o.heartbeats[0].max_failures;
        let young = Some(59_500);
        assert_eq!(
            columns(&o, young, &config, 60_000).buddy,
            BuddyColumn::AsSent
        );
        o.heartbeats[0].failures += 1;
        let dead = columns(&o, young, &config, 60_000).buddy;
        let BuddyColumn::Made(report) = dead else {
            panic!("a dead buddy's report is not shown as sent: {dead:?}")
        };
        assert_eq!((report.state, report.led), (None, Led::Red));
        assert_eq!(report.rows[0].value, "Unreachable");
        assert!(
            report.rows[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("declared dead")),
            "{:?}",
            report.rows[0].reason
        );
        o.sync = Check::Ok;
        assert_eq!(
            columns(&o, young, &config, 60_000).buddy,
            BuddyColumn::AsSent,
            "a working sync connection keeps the buddy alive"
        );
    }

    #[test]
    fn a_fresh_buddy_report_does_not_cross_the_boundary() {
        let config = RulesConfig::default();
        let fresh = columns(&obs(), Some(59_000), &config, 60_000);
        assert_eq!(fresh.buddy, BuddyColumn::AsSent);
        assert_eq!(
            fresh.with_buddy(None),
            None,
            "as sent, of a report that never arrived, is a broken answer"
        );
        let stale = columns(&obs(), Some(0), &config, 60_000 + config.buddy_timeout_ms);
        assert!(
            matches!(&stale.buddy, BuddyColumn::Made(r) if r.rows[0].value == "Unreachable"),
            "{:?}",
            stale.buddy
        );
    }
}
