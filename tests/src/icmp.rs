//! ICMP heartbeats with real packets: a "Ping to 127.0.0.1" row succeeds; an inverted heartbeat
//! to a silent host — an address on a veth into a network namespace this test makes, where
//! nobody answers ARP — fails and counts its failures; one to a neighbour behind a link without
//! carrier fails with the kernel's "host unreachable" and never counts that error as a reply,
//! with raw sockets (root) and with the datagram sockets an unprivileged agent gets. Needs root
//! (raw ICMP, `ip netns`): elsewhere the tests say so and skip; CI runs as root.

use std::process::Command;
use std::time::{Duration, Instant};

use duet_core::Row;
use duet_core::api::Status;

use crate::support::{
    AgentSpec, Agents, duet_bin, eventually, free_port, ip, is_root, spawn, status_json,
};

/// A namespace joined to the host by a veth pair; removed on drop, even when the test fails.
struct SilentHost {
    ns: String,
    veth: String,
}

impl SilentHost {
    /// The host side gets `<net>.1/30`; `<net>.2` is on the namespace's side of the link, where
    /// the interface is up but has no address: nobody answers.
    fn new(net: &str) -> Self {
        Self::with_carrier(net, "dti", true)
    }

    /// As [`SilentHost::new`], with names from `tag` (unique per test); without `carrier` the
    /// namespace's end stays down, so the host's end has no carrier and ARP cannot even leave.
    fn with_carrier(net: &str, tag: &str, carrier: bool) -> Self {
        let id = std::process::id();
        let host = SilentHost {
            ns: format!("duet-icmp-{tag}-{id}"),
            veth: format!("{tag}{}", id % 100_000),
        };
        let peer = format!("{}p", host.veth);
        ip(&["netns", "add", &host.ns]);
        ip(&[
            "link", "add", &host.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &host.ns]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host.veth]);
        ip(&["link", "set", &host.veth, "up"]);
        if carrier {
            ip(&["-n", &host.ns, "link", "set", &peer, "up"]);
        }
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
    assert!(
        inverted.label.starts_with("Inverted Heartbeat to ") && inverted.value == "Failing",
        "{inverted:?}"
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

/// The local row `key` of a status.
fn local_row(status: Option<Status>, key: &str) -> Option<Row> {
    status?.pair?.local.rows.into_iter().find(|r| r.key == key)
}

/// Waits (at most 20 s) until row `key` says "host unreachable" from `from`, then watches it
/// for 4 s more: it stays Failing and never records a success (an ICMP error is no reply).
fn host_unreachable_holds(mut status: impl FnMut() -> Option<Status>, key: &str, from: &str) {
    let row = eventually(
        Duration::from_secs(20),
        "a \"host unreachable\" reason",
        || {
            let row = local_row(status(), key)?;
            let reason = row.reason.as_deref()?;
            reason.contains("host unreachable").then_some(row)
        },
    );
    eprintln!("{key}: {}", row.reason.as_deref().unwrap_or_default());
    assert_eq!(row.value, "Failing", "{row:?}");
    assert!(
        row.reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("host unreachable, from {from}"))),
        "the reason names the error and who sent it: {row:?}"
    );
    let until = Instant::now() + Duration::from_secs(4);
    let mut watched = 0;
    while Instant::now() < until {
        if let Some(row) = local_row(status(), key) {
            assert_eq!(
                row.value, "Failing",
                "an ICMP error never counts as a reply: {row:?}"
            );
            assert_eq!(row.last_success, None, "{row:?}");
            watched += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(watched > 0, "the agent stopped answering");
}

#[test]
fn inverted_heartbeat_behind_a_link_without_carrier_fails_with_host_unreachable() {
    if !is_root() {
        eprintln!("skipped: needs root for raw ICMP and network namespaces (CI runs as root)");
        return;
    }
    // The neighbour <net>.2 is behind a veth whose other end is down: ARP never leaves, and
    // when it gives up the kernel answers each queued echo request with "host unreachable"
    // from this host's own <net>.1.
    let net = format!("10.204.{}", std::process::id() % 250);
    let _link = SilentHost::with_carrier(&net, "dtc", false);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let extra = format!(
        "[[heartbeat]]\nid = \"gw\"\nkind = \"inverted\"\ntarget = \"{net}.2\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\nmax_failures = 2\n"
    );
    let config = AgentSpec {
        extra,
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&config)]);
    host_unreachable_holds(|| status_json(port), "heartbeat:gw", &format!("{net}.1"));
}

/// A namespace of its own, where unprivileged ICMP datagram sockets are allowed
/// (`net.ipv4.ping_group_range`), with loopback up and a veth `v0` (`<net>.1/30`) whose
/// other end is down: no carrier. Removed on drop.
struct PingLab {
    ns: String,
}

impl PingLab {
    fn new(net: &str) -> Self {
        let lab = PingLab {
            ns: format!("duet-icmp-dgram-{}", std::process::id()),
        };
        ip(&["netns", "add", &lab.ns]);
        ip(&["-n", &lab.ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &lab.ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ip(&[
            "-n",
            &lab.ns,
            "addr",
            "add",
            &format!("{net}.1/30"),
            "dev",
            "v0",
        ]);
        ip(&["-n", &lab.ns, "link", "set", "v0", "up"]);
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "sh", "-c"])
            .arg("echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range")
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "ping_group_range: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// `duet status --json` run inside the namespace, where the agent's API is.
    fn status(&self, port: u16) -> Option<Status> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(duet_bin())
            .args(["status", "--json", "--api", &format!("127.0.0.1:{port}")])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for PingLab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn unprivileged_agent_pings_with_datagram_sockets_and_reads_icmp_errors() {
    if !is_root() {
        eprintln!(
            "skipped: needs root for network namespaces and to start an agent as another user (CI runs as root)"
        );
        return;
    }
    let net = format!("10.205.{}", std::process::id() % 250);
    let lab = PingLab::new(&net);
    let dir = tempfile::tempdir().expect("tempdir");
    // The unprivileged agent must be able to read its configuration.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
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
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    // `ip netns exec` and `setpriv` exec in turn: the child is the agent itself, as "nobody"
    // (no CAP_NET_RAW: no raw sockets).
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args(["--clear-groups", "--"])
        .arg(duet_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn duet as nobody in the namespace");
    let _agents = Agents(vec![child]);

    let ping = eventually(Duration::from_secs(20), "the ping row succeeding", || {
        local_row(lab.status(port), "heartbeat:loop").filter(|r| r.value == "Success")
    });
    assert!(ping.last_success.is_some(), "{ping:?}");
    host_unreachable_holds(|| lab.status(port), "heartbeat:gw", &format!("{net}.1"));
}
