//! Admission, with two real agents on loopback: 20,000 idle connections to one agent's API
//! leave its heartbeats, its peer link and its plugins alone; strangers holding every open
//! slot of the peer port (from 127.0.0.10 to .19) cannot keep a restarted buddy out.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use duet_core::FailoverState::{Offline, Online};
use duet_core::api::Status;

use crate::support::state;
use crate::support::{
    AgentSpec, Agents, HELLO_PLUGIN, eventually, free_port, peer_port, spawn, status_json,
};

/// How many idle connections the flood holds.
const FLOOD: usize = 20_000;

/// Not a test of its own: a process of the flood. One process can hold only its fd limit's
/// worth of connections (and an unprivileged one cannot raise the hard limit), so the flood
/// is spread over a few of these, each started by the flood test with its part.
#[test]
#[ignore = "a helper process of the API flood test"]
fn api_flood_part() {
    let Ok(target) = std::env::var("DUET_FLOOD_TARGET") else {
        return;
    };
    let target: SocketAddr = target.parse().expect("DUET_FLOOD_TARGET");
    let count: usize = std::env::var("DUET_FLOOD_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("DUET_FLOOD_COUNT");
    duet_base::fds::raise_limit();
    // Several connecting threads, each giving up an attempt after 250 ms: a SYN that met a
    // full accept queue would wait a second for its retry, while the others keep it full.
    const THREADS: usize = 8;
    let started = Instant::now();
    let held: Vec<TcpStream> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let mine = count / THREADS + usize::from(i < count % THREADS);
                scope.spawn(move || {
                    let mut held = Vec::with_capacity(mine);
                    while held.len() < mine && started.elapsed() < Duration::from_secs(60) {
                        if let Ok(s) =
                            TcpStream::connect_timeout(&target, Duration::from_millis(250))
                        {
                            held.push(s);
                        }
                    }
                    held
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("a connecting thread"))
            .collect()
    });
    let report = std::env::var("DUET_FLOOD_REPORT").expect("DUET_FLOOD_REPORT");
    std::fs::write(report, held.len().to_string()).expect("write the report");
    // Held until the flood test kills this process (bounded, should it not).
    std::thread::sleep(Duration::from_secs(120));
}

/// Starts processes that together hold `count` idle connections to `target`; returns them
/// once every connection is made (killing them closes the connections).
fn flood(target: SocketAddr, count: usize, dir: &std::path::Path) -> Agents {
    let per_process = usize::try_from(duet_base::fds::raise_limit().expect("the fd limit"))
        .unwrap_or(usize::MAX)
        .saturating_sub(200)
        .min(10_000);
    let parts = count.div_ceil(per_process);
    let exe = std::env::current_exe().expect("the test executable");
    let reports: Vec<_> = (0..parts).map(|i| dir.join(format!("flood-{i}"))).collect();
    let helpers = Agents(
        reports
            .iter()
            .enumerate()
            .map(|(i, report)| {
                let n = per_process.min(count - i * per_process);
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "admission::api_flood_part",
                        "--ignored",
                        "--quiet",
                    ])
                    .env("DUET_FLOOD_TARGET", target.to_string())
                    .env("DUET_FLOOD_COUNT", n.to_string())
                    .env("DUET_FLOOD_REPORT", report)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("start a flood process")
            })
            .collect(),
    );
    let held: usize = eventually(Duration::from_secs(90), "the flood's connections", || {
        reports
            .iter()
            .map(|r| std::fs::read_to_string(r).ok()?.parse::<usize>().ok())
            .sum::<Option<usize>>()
    });
    assert_eq!(held, count, "connections the flood made");
    helpers
}

/// A pair on loopback with a canary plugin each, 500 ms heartbeats with a generous timeout
/// (a failure here is the flood's doing, not a busy machine's).
fn pair(dir: &std::path::Path) -> (u16, u16, std::path::PathBuf, std::path::PathBuf) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(HELLO_PLUGIN, plugins.join("canary.wasm")).expect("copy canary");
    let (pa, pb) = (free_port(), free_port());
    let _ = (peer_port(pa), peer_port(pb));
    let spec = |name: &str, buddy: &str, priority, port, buddy_port| AgentSpec {
        interval_ms: 500,
        timeout_ms: 450,
        extra: "[plugins]\ndir = \"plugins\"\n[plugins.plugin.canary]\ninterval = \"1s\"\n".into(),
        ..AgentSpec::new(name, buddy, priority, port, buddy_port)
    };
    let a = spec("agent-a", "agent-b", 200, pa, pb).write(dir);
    let b = spec("agent-b", "agent-a", 100, pb, pa).write(dir);
    (pa, pb, a, b)
}

/// Whether both columns are fresh (the buddy's report arrived: no "Agent Status:
/// Unreachable"), every heartbeat row without a failure, and the canary plugin row present
/// and healthy in both.
fn healthy(status: &Status) -> Result<(), String> {
    let pair = status.pair.as_ref().ok_or("no decision yet")?;
    for report in [&pair.local, &pair.buddy] {
        for row in &report.rows {
            if row.key == "agent-status" {
                return Err(format!("{}: {}", report.agent, row.value));
            }
            if row.failures.is_some_and(|n| n > 0) {
                return Err(format!(
                    "{}: {} failing: {}",
                    report.agent, row.label, row.value
                ));
            }
        }
        let canary = report.rows.iter().find(|r| r.key == "plugin:canary");
        if canary.is_none_or(|r| r.turns_led_red) {
            return Err(format!(
                "{}: the canary plugin row is {canary:?}",
                report.agent
            ));
        }
    }
    Ok(())
}

/// A counter of the agent's `/metrics`, summed over its labels.
fn metric(port: u16, name: &str) -> Option<f64> {
    let text = http_get(port, "/metrics")?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// `GET <path>` of an agent's API without an async runtime (the tests here drive threads and
/// processes); the response when it is a 200.
pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: duet\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

pub(crate) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn twenty_thousand_idle_api_connections_leave_heartbeats_peer_link_and_plugins_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb, a, b) = pair(dir.path());
    // agent-a keeps the flood's connections a while, so its API stays full while we look.
    let text = std::fs::read_to_string(&a).expect("read a");
    let listen = format!("listen = \"127.0.0.1:{pa}\"");
    let slow = format!("{listen}\nheader_timeout = \"2m\"");
    std::fs::write(&a, text.replace(&listen, &slow)).expect("write a");
    let agents = Agents(vec![spawn(&a), spawn(&b)]);
    eventually(
        Duration::from_secs(30),
        "a healthy pair, agent-a Online",
        || {
            let (sa, sb) = (status_json(pa)?, status_json(pb)?);
            (state(&sa) == Some(Online) && state(&sb) == Some(Offline))
                .then_some(())
                .filter(|()| healthy(&sa).is_ok() && healthy(&sb).is_ok())
        },
    );
    let transitions = metric(pa, "duet_transitions_total").expect("metrics");

    // The flood: FLOOD connections to agent-a's API, each silent.
    let started = Instant::now();
    let flood = flood(([127, 0, 0, 1], pa).into(), FLOOD, dir.path());
    let connect_time = started.elapsed();
    let held_fds = open_fds(agents.0[0].id());

    // While they are held (agent-a's API is full), the pair as agent-b sees it, for 5 s: both
    // columns fresh, no heartbeat failure, both canaries loaded, agent-a still Online.
    let watch = Instant::now();
    let mut samples = 0;
    while watch.elapsed() < Duration::from_secs(5) {
        let sb = status_json(pb).expect("agent-b's API answers");
        healthy(&sb).unwrap_or_else(|why| panic!("during the flood: {why}"));
        let buddy = sb.pair.as_ref().and_then(|p| p.buddy.state);
        assert_eq!(buddy, Some(Online), "agent-a as agent-b sees it");
        samples += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(samples >= 10, "{samples} samples");

    drop(flood);
    let back = Instant::now();
    eventually(
        Duration::from_secs(15),
        "agent-a's API serving again",
        || status_json(pa).filter(|s| healthy(s).is_ok()),
    );
    let recovered = back.elapsed();
    assert_eq!(
        metric(pa, "duet_transitions_total"),
        Some(transitions),
        "no state change on agent-a"
    );
    let refused = metric(pa, "duet_api_connections_refused_total").expect("metrics");
    assert!(refused > 0.0, "the API's share was reached and held");
    assert_eq!(metric(pa, "duet_api_accept_errors_total"), Some(0.0));
    assert!(
        held_fds < 1_000,
        "agent-a held {held_fds} fds under a flood of {FLOOD} connections"
    );
    eprintln!(
        "flood of {FLOOD}: made in {connect_time:?}, agent-a held {held_fds} fds, {refused} \
         refused at once, API back {recovered:?} after the flood closed"
    );
}

/// Strangers from 127.0.0.10 to .19 keep `per_address` connections each open to `target`,
/// reconnecting as the agent closes them, until `stop`.
fn strangers(
    target: SocketAddr,
    per_address: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (10..20u8)
        .map(|last| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let from = SocketAddr::from(([127, 0, 0, last], 0));
                let mut held: Vec<TcpStream> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(90);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    // A connection the agent closed: make another.
                    held.retain(open);
                    while held.len() < per_address {
                        match connect_from(from, target) {
                            Some(s) => held.push(s),
                            None => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect()
}

/// Whether the other end has not closed `s` (what it sent, its hello, is read and dropped).
fn open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    loop {
        match std::io::Read::read(&mut &*s, &mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

fn connect_from(from: SocketAddr, to: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&from.into()).ok()?;
    socket
        .connect_timeout(&to.into(), Duration::from_secs(1))
        .ok()?;
    Some(socket.into())
}

#[test]
fn strangers_holding_every_open_peer_slot_cannot_keep_a_restarted_buddy_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb, a, b) = pair(dir.path());
    let mut agents = Agents(vec![spawn(&a), spawn(&b)]);
    eventually(
        Duration::from_secs(30),
        "a healthy pair, agent-a Online",
        || {
            let (sa, sb) = (status_json(pa)?, status_json(pb)?);
            (state(&sa) == Some(Online) && state(&sb) == Some(Offline)).then_some(())
        },
    );
    // agent-b's own path into agent-a's peer port has succeeded (agent-a's path to agent-b
    // would bring agent-a's report to agent-b all the same: that proves nothing here).
    let got_in = |s: &Option<Status>| {
        s.as_ref().and_then(|s| s.pair.as_ref()).is_some_and(|p| {
            p.local
                .rows
                .iter()
                .any(|r| r.key.starts_with("heartbeat:") && r.last_success.is_some())
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let peer_a: SocketAddr = ([127, 0, 0, 1], peer_port(pa)).into();
    let threads = strangers(peer_a, 8, stop.clone());
    // The strangers hold every slot open to them: agent-a turns more away.
    let before = metric(pa, "duet_peer_frames_rejected_total").unwrap_or(0.0);
    eventually(
        Duration::from_secs(10),
        "agent-a turning strangers away",
        || (metric(pa, "duet_peer_frames_rejected_total")? > before + 50.0).then_some(()),
    );

    // agent-b killed and restarted while the strangers keep at it.
    let b_child = &mut agents.0[1];
    let _ = b_child.kill();
    let _ = b_child.wait();
    *b_child = spawn(&b);
    let restarted = Instant::now();
    let mut both_online = Vec::new();
    let mut rejoined = None;
    while restarted.elapsed() < Duration::from_secs(12) {
        let (sa, sb) = (status_json(pa), status_json(pb));
        let (a_state, b_state) = (sa.as_ref().and_then(state), sb.as_ref().and_then(state));
        if a_state == Some(Online) && b_state == Some(Online) {
            both_online.push(restarted.elapsed());
        }
        let fresh = |s: &Option<Status>| {
            s.as_ref()
                .and_then(|s| s.pair.as_ref())
                .is_some_and(|p| !p.buddy.rows.iter().any(|r| r.key == "agent-status"))
        };
        if rejoined.is_none() && b_state == Some(Offline) && fresh(&sa) && got_in(&sb) {
            rejoined = Some(restarted.elapsed());
        }
        if rejoined.is_some_and(|t| restarted.elapsed() > t + Duration::from_secs(3)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("stranger thread");
    }
    assert!(both_online.is_empty(), "both Online at {both_online:?}");
    let rejoined = rejoined.expect("the restarted agent-b back in the pair, Offline");
    assert_eq!(
        status_json(pa).as_ref().and_then(state),
        Some(Online),
        "agent-a stays Online"
    );
    eprintln!("restarted agent-b rejoined in {rejoined:?} while strangers held the peer port");
}
