//! `GET /metrics`: Prometheus text format (0.0.4), rendered from the kernel's counters and status.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use duet_core::{FailoverState, Led};

use duet_base::snake;
use duet_kernel::Kernel;

use crate::connections::ConnectionStats;

pub(crate) fn render(kernel: &Kernel, connections: &ConnectionStats) -> String {
    let mut out = String::new();
    let agent = escape(&kernel.config().agent.name);
    let status = kernel.status();
    state(&mut out, &agent, &status);
    if let Some(pair) = &status.pair {
        leds_and_rows(&mut out, pair);
    }
    heartbeats(&mut out, &agent, kernel);
    runtime(&mut out, &agent, kernel);
    pulse(&mut out, &agent, kernel);
    link(&mut out, &agent, kernel);
    decisions(&mut out, &agent, kernel);
    api(&mut out, &agent, connections);
    out
}

/// The API's connections: open now, refused for want of a slot, failed accepts and handshakes.
fn api(out: &mut String, agent: &str, connections: &ConnectionStats) {
    for (name, kind, help, value) in [
        (
            "duet_api_connections",
            "gauge",
            "API connections being served.",
            &connections.open,
        ),
        (
            "duet_api_connections_refused_total",
            "counter",
            "API connections closed at once: the API held its share of connections already.",
            &connections.refused,
        ),
        (
            "duet_api_accept_errors_total",
            "counter",
            "API accepts that failed (out of file descriptors and the like), each backed off.",
            &connections.accept_errors,
        ),
        (
            "duet_api_tls_handshake_failures_total",
            "counter",
            "Connections to the HTTPS API that did not complete a TLS handshake (plain HTTP among them).",
            &connections.tls_refused,
        ),
    ] {
        family(out, name, kind, help);
        let n = value.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{agent=\"{agent}\"}} {n}");
    }
}

/// The failover state.
fn state(out: &mut String, agent: &str, status: &duet_core::api::Status) {
    family(
        out,
        "duet_failover_state",
        "gauge",
        "1 for this agent's current failover state.",
    );
    let current = status.decision.as_ref().map(|d| d.state.state);
    for state in [
        FailoverState::Offline,
        FailoverState::PreparingToGoOnline,
        FailoverState::GoingOnline,
        FailoverState::Online,
        FailoverState::GoingOffline,
    ] {
        let v = u8::from(current == Some(state));
        let _ = writeln!(
            out,
            "duet_failover_state{{agent=\"{agent}\",state=\"{}\"}} {v}",
            snake(&state)
        );
    }
}

/// Each column's LED and rows.
fn leds_and_rows(out: &mut String, pair: &duet_core::PairReport) {
    family(
        out,
        "duet_led",
        "gauge",
        "1 for the LED each Status column shows.",
    );
    for (column, report) in [("local", &pair.local), ("buddy", &pair.buddy)] {
        for led in [Led::Green, Led::Red, Led::Transparent] {
            let v = u8::from(report.led == led);
            let _ = writeln!(
                out,
                "duet_led{{agent=\"{}\",column=\"{column}\",led=\"{}\"}} {v}",
                escape(&report.agent),
                snake(&led)
            );
        }
    }
    family(
        out,
        "duet_row_healthy",
        "gauge",
        "0 when the Status row makes the LED red, else 1.",
    );
    for (column, report) in [("local", &pair.local), ("buddy", &pair.buddy)] {
        for row in &report.rows {
            let v = u8::from(!row.turns_led_red);
            let _ = writeln!(
                out,
                "duet_row_healthy{{agent=\"{}\",column=\"{column}\",key=\"{}\",label=\"{}\"}} {v}",
                escape(&report.agent),
                escape(&row.key),
                escape(&row.label)
            );
        }
    }
}

/// Each heartbeat's state.
fn heartbeats(out: &mut String, agent: &str, kernel: &Kernel) {
    let heartbeats = kernel.heartbeats();
    family(
        out,
        "duet_heartbeat_up",
        "gauge",
        "1 when the heartbeat's last attempt succeeded.",
    );
    for hb in &heartbeats {
        let _ = writeln!(
            out,
            "duet_heartbeat_up{{agent=\"{agent}\",id=\"{}\",kind=\"{}\"}} {}",
            escape(&hb.id),
            snake(&hb.kind),
            u8::from(hb.ok)
        );
    }
    family(
        out,
        "duet_heartbeat_failures",
        "gauge",
        "Consecutive failed attempts of the heartbeat.",
    );
    for hb in &heartbeats {
        let _ = writeln!(
            out,
            "duet_heartbeat_failures{{agent=\"{agent}\",id=\"{}\"}} {}",
            escape(&hb.id),
            hb.failures
        );
    }
    family(
        out,
        "duet_heartbeat_rtt_seconds",
        "gauge",
        "Round-trip time of the heartbeat's last success.",
    );
    for hb in &heartbeats {
        if let Some(us) = hb.rtt_us {
            let _ = writeln!(
                out,
                "duet_heartbeat_rtt_seconds{{agent=\"{agent}\",id=\"{}\"}} {}",
                escape(&hb.id),
                f64::from(us) / 1e6
            );
        }
    }
}

/// The decision loop's pulse: the gaps between its ticks, and the fence.
fn pulse(out: &mut String, agent: &str, kernel: &Kernel) {
    let pulse = kernel.pulse();
    for (name, help, value) in [
        (
            "duet_tick_gap_seconds",
            "The last gap between two completed ticks of the decision loop.",
            pulse.gap(),
        ),
        (
            "duet_tick_gap_max_seconds",
            "The largest gap between two completed ticks since start.",
            pulse.max_gap(),
        ),
        (
            "duet_tick_silence_seconds",
            "How long since the decision loop last completed a tick.",
            pulse.silence(),
        ),
    ] {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name}{{agent=\"{agent}\"}} {}", value.as_secs_f64());
    }
    family(
        out,
        "duet_fenced",
        "gauge",
        "1 while this agent is fenced (its decision loop stalled past the bound).",
    );
    let fenced = u8::from(kernel.fenced().is_some());
    let _ = writeln!(out, "duet_fenced{{agent=\"{agent}\"}} {fenced}");
}

/// The core runtime's faults.
fn runtime(out: &mut String, agent: &str, kernel: &Kernel) {
    family(
        out,
        "duet_rte_count",
        "gauge",
        "Distinct components in runtime error (the RTE Count row).",
    );
    let _ = writeln!(
        out,
        "duet_rte_count{{agent=\"{agent}\"}} {}",
        u8::from(kernel.runtime().fault().is_some())
    );
    family(
        out,
        "duet_core_fallbacks_total",
        "counter",
        "Calls a loaded core.wasm failed, answered by the embedded core.",
    );
    let _ = writeln!(
        out,
        "duet_core_fallbacks_total{{agent=\"{agent}\"}} {}",
        kernel.runtime().fallbacks()
    );
}

/// The peer link's rejections.
fn link(out: &mut String, agent: &str, kernel: &Kernel) {
    family(
        out,
        "duet_peer_frames_rejected_total",
        "counter",
        "Peer-link frames rejected (forged, replayed, garbled, too large...), by reason.",
    );
    for (reason, n) in kernel.link().rejections().iter() {
        let _ = writeln!(
            out,
            "duet_peer_frames_rejected_total{{agent=\"{agent}\",reason=\"{reason}\"}} {n}"
        );
    }
    family(
        out,
        "duet_peer_auth_failures",
        "gauge",
        "Hellos from the buddy that failed authentication in a row (pair key mismatch).",
    );
    let _ = writeln!(
        out,
        "duet_peer_auth_failures{{agent=\"{agent}\"}} {}",
        kernel.link().failed_hellos()
    );
}

/// The decisions and transitions since start.
fn decisions(out: &mut String, agent: &str, kernel: &Kernel) {
    let counters = kernel.counters();
    family(
        out,
        "duet_decisions_total",
        "counter",
        "Decisions of the failover core, by reason.",
    );
    for (reason, n) in &counters.decisions {
        let _ = writeln!(
            out,
            "duet_decisions_total{{agent=\"{agent}\",reason=\"{reason}\"}} {n}"
        );
    }
    family(
        out,
        "duet_transitions_total",
        "counter",
        "Failover state changes, by the state entered.",
    );
    for (to, n) in &counters.transitions {
        let _ = writeln!(
            out,
            "duet_transitions_total{{agent=\"{agent}\",to=\"{to}\"}} {n}"
        );
    }
}

/// A metric family's `# HELP` and `# TYPE` lines (for the agent's other capabilities too).
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
