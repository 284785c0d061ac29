//! Planned handover (`duet switch`, SIGTERM) and the remembered state, with real agents.
//! Detection is set to 11 s (1 s heartbeats, 10 allowed failures): a handover that completes
//! sooner did not wait for heartbeats to time out.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::api::{ALICE, tokens};
use crate::support::{AgentSpec, Agents, duet_bin, eventually, free_port, spawn, status_json};

/// Handover must complete well inside the 11 s detection time.
const WITHIN: Duration = Duration::from_secs(8);

fn state(port: u16) -> Option<duet_core::FailoverState> {
    status_json(port)?.decision.map(|d| d.state.state)
}

fn reason(port: u16) -> Option<duet_core::ReasonCode> {
    status_json(port)?.decision.map(|d| d.reason.code)
}

#[test]
fn duet_switch_and_sigterm_hand_over_before_detection_could_fire() {
    use duet_core::FailoverState::{Offline, Online};
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let slow = |spec: AgentSpec| AgentSpec {
        interval_ms: 1_000,
        max_failures: 10,
        extra: tokens(),
        ..spec
    };
    let a = slow(AgentSpec::new("agent-a", "agent-b", 200, pa, pb)).write(dir.path());
    let b = slow(AgentSpec::new("agent-b", "agent-a", 100, pb, pa)).write(dir.path());
    let mut agents = Agents(vec![spawn(&a), spawn(&b)]);
    eventually(
        Duration::from_secs(30),
        "agent-a Online, agent-b Offline",
        || (state(pa) == Some(Online) && state(pb) == Some(Offline)).then_some(()),
    );

    // `duet switch` with a token: agent-b takes over.
    let out = Command::new(duet_bin())
        .args(["switch", "--api", &format!("127.0.0.1:{pa}")])
        .env("DUET_TOKEN", ALICE)
        .output()
        .expect("duet switch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(WITHIN, "agent-b Online after duet switch", || {
        (state(pb) == Some(Online) && state(pa) == Some(Offline)).then_some(())
    });

    // SIGTERM to the Online agent (now agent-b): it hands over to agent-a and exits cleanly.
    let online = &mut agents.0[1];
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &online.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    eventually(WITHIN, "agent-a Online after agent-b's SIGTERM", || {
        (state(pa) == Some(Online)).then_some(())
    });
    let exit = eventually(Duration::from_secs(15), "agent-b to exit", || {
        online.try_wait().expect("try_wait")
    });
    assert!(exit.success(), "agent-b exits 0 after handing over: {exit}");
    assert!(
        sent.elapsed() < Duration::from_secs(11),
        "the handover did not wait for detection"
    );
    let log =
        std::fs::read_to_string(dir.path().join("agent-b-failover.log")).expect("failover log");
    assert!(
        log.contains("Shutting down: handing over to agent-a"),
        "{log}"
    );
    assert!(
        log.contains("Handover complete: the buddy is Online"),
        "{log}"
    );
    let remembered = std::fs::read_to_string(dir.path().join("agent-b.state")).expect("state file");
    assert!(
        remembered.contains("\"offline\""),
        "the state file remembers Offline: {remembered}"
    );
}

#[test]
fn a_restarted_agent_that_remembers_online_reclaims_at_once() {
    use duet_core::ReasonCode::StartingUp;
    let dir = tempfile::tempdir().expect("tempdir");
    // Both agents' buddies are unreachable, and the start-up wait is long (30 s).
    let long_wait = "[failover]\nstartup_wait = \"30s\"\n";
    let spec = |name: &str, port: u16| {
        let text = AgentSpec::new(name, "gone", 100, port, free_port()).write(dir.path());
        let config = std::fs::read_to_string(&text)
            .expect("config")
            .replace("[failover]\n            startup_wait = \"3s\"", long_wait);
        std::fs::write(&text, config).expect("config");
        text
    };
    let (pc, pd) = (free_port(), free_port());
    let c = spec("agent-c", pc);
    let d = spec("agent-d", pd);
    std::fs::write(
        dir.path().join("agent-c.state"),
        r#"{"state":"online","at":1}"#,
    )
    .expect("state file");
    std::fs::write(dir.path().join("agent-d.state"), b"\0\0 not json").expect("corrupt state file");
    let _agents = Agents(vec![spawn(&c), spawn(&d)]);

    eventually(
        Duration::from_secs(15),
        "agent-c Online from its remembered state",
        || (state(pc) == Some(duet_core::FailoverState::Online)).then_some(()),
    );
    // agent-d's file is corrupt: nothing remembered, so once its heartbeats to the missing
    // buddy have failed it waits out the start-up wait (30 s) instead of going online.
    eventually(
        Duration::from_secs(10),
        "agent-d waiting out the start-up wait: a corrupt state file is not fatal and remembers nothing",
        || (reason(pd) == Some(StartingUp)).then_some(()),
    );
    assert_ne!(state(pd), Some(duet_core::FailoverState::Online));
    // Going online again, agent-c rewrote its state file.
    let remembered = std::fs::read_to_string(dir.path().join("agent-c.state")).expect("state file");
    let remembered: serde_json::Value = serde_json::from_str(&remembered).expect("state JSON");
    assert_eq!(remembered["state"], "online");
    assert!(
        remembered["at"].as_u64().is_some_and(|at| at > 1),
        "written by the agent: {remembered}"
    );
}
