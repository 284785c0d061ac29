//! ICMP heartbeats with real packets: a "Ping to 127.0.0.1" row succeeds, and an inverted
//! heartbeat to a silent host — an address on a veth into a network namespace this test makes,
//! where nobody answers ARP — fails and counts its failures. Needs root (raw ICMP, `ip netns`):
//! elsewhere the test says so and skips; CI runs as root.

use std::process::Command;
use std::time::Duration;

use crate::support::{AgentSpec, Agents, eventually, free_port, ip, is_root, spawn, status_json};

/// A namespace joined to the host by a veth pair; removed on drop, even when the test fails.
struct SilentHost {
    ns: String,
    veth: String,
}

impl SilentHost {
    /// The host side gets `<net>.1/30`; `<net>.2` is on the namespace's side of the link, where
    /// the interface is up but has no address: nobody answers.
    fn new(net: &str) -> Self {
        let id = std::process::id();
        let host = SilentHost {
            ns: format!("duet-icmp-{id}"),
            veth: format!("dti{}", id % 100_000),
        };
        let peer = format!("{}p", host.veth);
        ip(&["netns", "add", &host.ns]);
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &host.ns]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host.veth]);
        ip(&["link", "set", &host.veth, "up"]);
        ip(&["-n", &host.ns, "link", "set", &peer, "up"]);
        host
    }
}

impl Drop for SilentHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn icmp_heartbeats_succeed_on_loopback_and_count_failures_to_a_silent_host() {
    if !is_root() {
        eprintln!("skipped: needs root for raw ICMP and network namespaces (CI runs as root)");
        return;
    }
    let net = format!("10.203.{}", std::process::id() % 250);
    let _silent = SilentHost::new(&net);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let extra = format!(
        "[[heartbeat]]\nid = \"loop\"\nkind = \"ping\"\ntarget = \"127.0.0.1\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [[heartbeat]]\nid = \"gw\"\nkind = \"inverted\"\ntarget = \"{net}.2\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nmax_failures = 2\n"
    );
    let config = AgentSpec {
        extra,
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&config)]);

    let rows = eventually(Duration::from_secs(20), "ping rows settled", || {
        let status = status_json(port)?;
        let rows = status.pair?.local.rows;
        let ping = rows.iter().find(|r| r.key == "heartbeat:loop")?.clone();
        let inverted = rows.iter().find(|r| r.key == "heartbeat:gw")?.clone();
        (ping.value == "Success" && inverted.failures.unwrap_or(0) >= 3).then_some((ping, inverted))
    });
    let (ping, inverted) = rows;
    assert_eq!(ping.label, "Ping to 127.0.0.1");
    assert!(
        ping.last_success.is_some() && !ping.turns_led_red,
        "{ping:?}"
    );
    assert_eq!(
        (inverted.label.as_str(), inverted.value.as_str()),
        ("Inverted Heartbeat", "Failing")
    );
    let reason = inverted.reason.unwrap_or_default();
    assert!(
        reason.contains(&format!("{net}.2")),
        "the reason names the silent target: {reason}"
    );
    assert!(inverted.turns_led_red);
}

#[test]
fn icmp_without_privilege_is_a_probe_fault_that_counts_no_failures() {
    if !is_root() {
        eprintln!("skipped: needs root to start an agent as another user (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The unprivileged agent must be able to read its configuration.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let port = free_port();
    let extra = "[[heartbeat]]\nid = \"loop\"\nkind = \"ping\"\ntarget = \"127.0.0.1\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n".to_string();
    let config = AgentSpec {
        extra,
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(dir.path());
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    // Started directly with the uid and gid of "nobody", so the guard kills the agent itself
    // (killing a `runuser` wrapper would leave the agent running).
    let child = {
        use std::os::unix::process::CommandExt as _;
        Command::new(crate::support::duet_bin())
            .args(["run", "--config"])
            .arg(&config)
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn duet as nobody")
    };
    let _agents = Agents(vec![child]);

    let row = eventually(Duration::from_secs(20), "the ping row", || {
        let status = status_json(port)?;
        status
            .pair?
            .local
            .rows
            .into_iter()
            .find(|r| r.key == "heartbeat:loop" && r.reason.is_some())
    });
    assert_eq!(row.value, "Failing");
    assert!(
        row.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("ICMP not permitted")),
        "{row:?}"
    );
    std::thread::sleep(Duration::from_millis(800));
    let local_row = |key: &str| {
        let status = status_json(port).expect("status");
        status
            .pair
            .expect("pair")
            .local
            .rows
            .into_iter()
            .find(|r| r.key == key)
            .unwrap_or_else(|| panic!("{key} row"))
    };
    let row = local_row("heartbeat:loop");
    assert_eq!(
        row.failures,
        Some(0),
        "a probe fault never counts as a failure of the target"
    );
    // "nobody" cannot write beside its configuration either: the event log cannot start, the
    // agent runs on and its Database row says why.
    let database = local_row("database");
    assert!(
        database
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cannot open the event spool folder")),
        "{database:?}"
    );
}
