//! Status rows from real probes, against real agents: NATS communication through a real
//! nats-server started by the test (stopped and started, the buddy killed, an endpoints file
//! edited, garbled, replaced by a directory), RTE Count over a NATS probe that hangs on a TCP
//! server that accepts and never answers, NIC rows from `ip link set down/up` in a network
//! namespace, and Configuration Invalid naming the key (a path that loops back to the agent
//! itself, a garbled peer report, mismatched modes).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use duet_core::Row;
use duet_core::api::Status;
use duet_host::frame::{Hello, PairKey, Session, read_frame, write_frame};

use crate::support::row;
use crate::support::{
    AgentSpec, Agents, PAIR_KEY, duet_bin, eventually, free_port, ip, is_root, peer_port, spawn,
    status_json,
};

/// The agent's row `key` once `pred` holds, within `within`.
fn wait_row(port: u16, key: &str, what: &str, pred: impl Fn(&Row) -> bool) -> Row {
    eventually(Duration::from_secs(20), what, || {
        row(&status_json(port)?, key).filter(|r| pred(r))
    })
}

/// A nats-server on `port`, killed on drop.
struct NatsServer(Child);

impl NatsServer {
    fn start(port: u16) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (Debian package nats-server; cargo xtask test installs it)");
        // Ready once it accepts connections.
        eventually(Duration::from_secs(10), "nats-server listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        NatsServer(child)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn endpoints(extra: &str) -> String {
    format!(
        r#"{{"endpoints": [
            {{"agent": "agent-a", "api": "127.0.0.1:7101", "nats": "nats://127.0.0.1:4222"}},
            {{"agent": "agent-b", "api": "127.0.0.1:7102", "nats": "nats://127.0.0.1:4222"}}{extra}
        ]}}"#
    )
}

fn nats_section(nats: u16, file: &Path) -> String {
    format!(
        r#"
        [nats_connection]
        servers = ["nats://127.0.0.1:{nats}"]
        [nats]
        endpoints_file = "{}"
        interval = "300ms"
        timeout = "250ms"
        "#,
        file.display()
    )
}

#[test]
fn nats_row_follows_the_server_the_buddy_and_the_endpoints_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = free_port();
    let server = NatsServer::start(nats);
    let (pa, pb) = (free_port(), free_port());
    let (fa, fb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&fa, endpoints("")).expect("write");
    std::fs::write(&fb, endpoints("")).expect("write");
    let a = AgentSpec {
        extra: nats_section(nats, &fa),
        ..AgentSpec::new("agent-a", "agent-b", 200, pa, pb)
    }
    .write(dir.path());
    let b = AgentSpec {
        extra: nats_section(nats, &fb),
        ..AgentSpec::new("agent-b", "agent-a", 100, pb, pa)
    }
    .write(dir.path());
    let mut agents = Agents(vec![spawn(&a), spawn(&b)]);
    for port in [pa, pb] {
        wait_row(port, "nats", "NATS OK", |r| r.value == "OK");
    }

    // The server stops: the precise reason, then OK again once it is back.
    drop(server);
    for port in [pa, pb] {
        let r = wait_row(port, "nats", "NATS Failing: connection refused", |r| {
            r.reason
                .as_deref()
                .is_some_and(|w| w.contains("connection refused"))
        });
        assert_eq!(r.value, "Failing");
        assert_eq!(
            r.reason.as_deref(),
            Some(
                format!(
                    "cannot connect to the NATS server nats://127.0.0.1:{nats}: connection refused"
                )
                .as_str()
            )
        );
        assert!(r.turns_led_red);
    }
    let server = NatsServer::start(nats);
    for port in [pa, pb] {
        wait_row(port, "nats", "NATS OK after the restart", |r| {
            r.value == "OK"
        });
    }

    // One endpoints file edited: both agents say they differ.
    std::fs::write(
        &fa,
        endpoints(
            r#", {"agent": "agent-c", "api": "127.0.0.1:7103", "nats": "nats://127.0.0.1:4222"}"#,
        ),
    )
    .expect("write");
    for (port, buddy) in [(pa, "agent-b"), (pb, "agent-a")] {
        let r = wait_row(port, "nats", "endpoints differ", |r| {
            r.reason
                .as_deref()
                .is_some_and(|w| w.starts_with("cluster endpoints differ"))
        });
        assert!(
            r.reason.as_deref().is_some_and(|w| w.contains(buddy)),
            "{r:?}"
        );
    }

    // Garbage, then a directory where the file belongs: a clear reason; the agents run on.
    std::fs::write(&fa, "\u{1}{ not json").expect("write");
    let r = wait_row(pa, "nats", "garbage endpoints file", |r| {
        r.reason
            .as_deref()
            .is_some_and(|w| w.contains("not a cluster-endpoints file"))
    });
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|w| w.starts_with(&format!("nats.endpoints_file {}", fa.display()))),
        "{r:?}"
    );
    wait_row(pb, "nats", "the buddy's garbage file", |r| {
        r.reason
            .as_deref()
            .is_some_and(|w| w.starts_with("on agent-a: nats.endpoints_file"))
    });
    std::fs::remove_file(&fa).expect("remove");
    std::fs::create_dir(&fa).expect("mkdir");
    wait_row(pa, "nats", "endpoints file is a directory", |r| {
        r.reason
            .as_deref()
            .is_some_and(|w| w.contains("is a directory"))
    });
    std::fs::remove_dir(&fa).expect("rmdir");
    std::fs::write(&fa, endpoints("")).expect("write");
    for port in [pa, pb] {
        wait_row(port, "nats", "NATS OK with equal files", |r| {
            r.value == "OK"
        });
    }

    // The buddy is killed: nobody answers its subject.
    let mut b = agents.0.remove(1);
    b.kill().expect("kill agent-b");
    b.wait().expect("wait");
    let r = wait_row(pa, "nats", "no responders", |r| {
        r.reason
            .as_deref()
            .is_some_and(|w| w.starts_with("no responders"))
    });
    assert_eq!(
        r.reason.as_deref(),
        Some(
            "no responders: agent-b's duet does not answer on duet.agent-b.agent-a (stopped, or on another NATS server)"
        )
    );
    drop(server);
}

#[test]
fn rte_count_follows_a_probe_that_hangs_on_a_silent_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A TCP server that accepts and never answers, where the nats-server should be.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, listener) = (stop.clone(), silent.try_clone().expect("clone"));
    listener.set_nonblocking(true).expect("nonblocking");
    let acceptor = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // Dropping `held` closes every connection: the hung calls end.
    });
    let pa = free_port();
    let a = AgentSpec {
        extra: format!(
            r#"
            # The probe's deprecated key, alone: still the server.
            [nats]
            url = "nats://127.0.0.1:{port}"
            interval = "300ms"
            timeout = "250ms"
            [watchdog]
            deadline = "1s"
            "#
        ),
        ..AgentSpec::new("agent-a", "agent-b", 200, pa, free_port())
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&a)]);
    let r = wait_row(pa, "rte-count", "RTE Count 1", |r| r.value == "1");
    assert!(r.turns_led_red);
    // The silent server goes away: the next attempt is refused at once, in time: back to 0.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    acceptor.join().expect("acceptor");
    drop(silent);
    let r = wait_row(pa, "rte-count", "RTE Count 0", |r| r.value == "0");
    assert!(!r.turns_led_red);
    // The attempt that was under way when the server closed may say "reset by peer"; what
    // the row promises is that, with nothing listening, it ends up saying "refused".
    wait_row(pa, "nats", "NATS row: connection refused", |r| {
        r.reason
            .as_deref()
            .is_some_and(|w| w.contains("connection refused"))
    });
}

#[test]
fn an_agent_heartbeat_that_loops_back_shows_configuration_invalid_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pa = free_port();
    let peer = peer_port(pa);
    let spec = AgentSpec::new("agent-a", "agent-b", 200, pa, free_port());
    let text = std::fs::read_to_string(spec.write(dir.path())).expect("config");
    // Listening on every address, the heartbeat's 127.0.0.1 target is this agent's own port:
    // not the literal peer.listen, so only the running agent can tell.
    let looped = text
        .replace(
            &format!("listen = \"127.0.0.1:{peer}\""),
            &format!("listen = \"0.0.0.0:{peer}\""),
        )
        .replace(
            &format!("target = \"127.0.0.1:{}\"", peer_port(spec.buddy_port)),
            &format!("target = \"127.0.0.1:{peer}\""),
        );
    assert_ne!(text, looped);
    let path = dir.path().join("looped.toml");
    std::fs::write(&path, looped).expect("write");
    let _agents = Agents(vec![spawn(&path)]);
    let r = wait_row(pa, "configuration", "Configuration Invalid", |r| {
        r.value == "Invalid"
    });
    assert_eq!(
        r.reason.as_deref(),
        Some(format!("heartbeat[0].target: 127.0.0.1:{peer} reaches this agent itself, not the buddy agent-b").as_str())
    );
}

#[test]
fn agents_in_different_modes_both_show_configuration_invalid_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa).write(dir.path());
    let text = std::fs::read_to_string(&b).expect("config");
    std::fs::write(
        &b,
        text.replace("priority = 100", "priority = 100\nmode = \"manual\""),
    )
    .expect("write");
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    for (port, ours, theirs, buddy) in [
        (pa, "automatic", "manual", "agent-b"),
        (pb, "manual", "automatic", "agent-a"),
    ] {
        let r = wait_row(port, "configuration", "Configuration Invalid", |r| {
            r.value == "Invalid"
        });
        assert_eq!(
            r.reason,
            Some(format!(
                "agent.mode differs: {ours} here, {theirs} on {buddy}"
            ))
        );
        assert!(r.turns_led_red);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_peer_report_shows_configuration_invalid_and_the_agent_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let _agents = Agents(vec![spawn(&a)]);
    let peer = peer_port(pa);
    let key = PairKey::new(PAIR_KEY.as_bytes());
    // A buddy with the right key whose reports do not decode.
    let fake = tokio::spawn(async move {
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", peer)).await {
                let ours = Hello::new("agent-b").expect("hello");
                let _ = write_frame(&mut stream, &ours.seal(&key)).await;
                if let Ok(Ok(frame)) = read_frame(&mut stream).await
                    && let Ok(theirs) = Hello::open(&key, &frame)
                {
                    let mut session = Session::new(key.clone(), &ours, &theirs, true);
                    let odd = session
                        .seal(br#"{"report": {"agent": "agent-b", "state": 42}}"#)
                        .expect("seal");
                    let _ = write_frame(&mut stream, &odd).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let r = tokio::task::spawn_blocking(move || {
        wait_row(pa, "configuration", "Configuration Invalid", |r| {
            r.value == "Invalid"
        })
    })
    .await
    .expect("wait");
    fake.abort();
    let reason = r.reason.expect("a reason");
    assert!(
        reason.starts_with("the buddy's peer report is unreadable (")
            && reason.ends_with("are both agents the same duet version?"),
        "{reason}"
    );
    let s = tokio::task::spawn_blocking(move || status_json(pa))
        .await
        .expect("status");
    assert!(s.is_some(), "agent-a runs on");
}

/// A network namespace with a veth pair, removed on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn nic_row_appears_when_a_link_goes_down_and_comes_back() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let ns = Namespace(format!("duet-rows-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&[
        "-n", &ns.0, "link", "add", "rows0", "type", "veth", "peer", "name", "rows1",
    ]);
    ip(&["-n", &ns.0, "link", "set", "rows0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "rows1", "up"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AgentSpec::new("agent-a", "agent-b", 200, 7101, 7102).write(dir.path());
    let mut agent = Agents(vec![
        Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(duet_bin())
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn duet in the namespace"),
    ]);
    let nic = |what: &str, pred: &dyn Fn(Option<&Row>) -> bool| {
        eventually(Duration::from_secs(20), what, || {
            let s = ns_status(&ns.0)?;
            pred(row(&s, "nic:rows0").as_ref()).then_some(s)
        })
    };
    // Running, with both links up: no NIC row.
    let s = nic("status without a NIC row", &|r| r.is_none());
    assert!(row(&s, "nic:rows1").is_none());
    ip(&["-n", &ns.0, "link", "set", "rows0", "down"]);
    let s = nic("NIC rows0 Unavailable", &|r| {
        r.is_some_and(|r| r.value == "Unavailable")
    });
    let r = row(&s, "nic:rows0").expect("row");
    assert_eq!(r.label, "NIC rows0");
    assert!(r.turns_led_red);
    // Its peer lost carrier: it went down too.
    eventually(Duration::from_secs(10), "NIC rows1 Unavailable", || {
        row(&ns_status(&ns.0)?, "nic:rows1").filter(|r| r.value == "Unavailable")
    });
    ip(&["-n", &ns.0, "link", "set", "rows0", "up"]);
    let s = nic("NIC rows0 Available", &|r| {
        r.is_some_and(|r| r.value == "Available")
    });
    assert!(!row(&s, "nic:rows0").expect("row").turns_led_red);
    // Both changes are in the event log.
    for (code, words) in [
        ("nic_unplugged", "NIC rows0 is unavailable"),
        ("nic_available", "NIC rows0 is available again"),
    ] {
        eventually(Duration::from_secs(10), code, || {
            crate::netns::ns_events(&ns.0, code, "127.0.0.1:7101")?
                .contains(words)
                .then_some(())
        });
    }
    let _ = agent.0[0].kill();
    let _ = agent.0[0].wait();
    agent.0.clear();
}

/// `duet status --json` of the agent in namespace `ns` (API on its loopback).
fn ns_status(ns: &str) -> Option<Status> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(duet_bin())
        .args(["status", "--json", "--api", "127.0.0.1:7101"])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}
