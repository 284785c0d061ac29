//! Virtual IP mode in the namespace topology: a small UDP service on each agent answers with
//! the agent's name; a client namespace on the LAN asks the VIP. kill -9, power-off (process
//! killed and links cut) and restart of the Online agent; libpcap hidden from one agent. The
//! failover-time bench beside keepalived is `keepalived::takeover_bench`.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use duet_core::api::Status;

use crate::netns::{AGENTS, FAST, OFFLINE, ONLINE, TAKEOVER, Timing, Topology, one_online};
use crate::support::{eventually, is_root};

const VIP: &str = "10.77.0.100";
const PORT: u16 = 7300;

/// Runs `f` on a thread inside network namespace `ns` (sockets made there stay there).
pub(crate) fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace file");
        // SAFETY: setns on this thread only, with a namespace file descriptor.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread")
}

/// The service: answers every datagram on port 7300 with `name`, until dropped.
pub(crate) struct Service(Arc<AtomicBool>);

impl Service {
    pub(crate) fn start(ns: &str, name: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = in_ns(ns, || {
            UdpSocket::bind(("0.0.0.0", PORT)).expect("bind the service")
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(name.as_bytes(), from);
                }
            }
        });
        Service(stop)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The client: asks the VIP, each question waiting at most `wait` for an answer.
pub(crate) struct Client(UdpSocket);

impl Client {
    pub(crate) fn new(ns: &str, wait: Duration) -> Self {
        let socket = in_ns(ns, || {
            UdpSocket::bind("0.0.0.0:0").expect("bind the client")
        });
        socket.set_read_timeout(Some(wait)).expect("timeout");
        Client(socket)
    }

    /// One question: the name that answered, if any.
    pub(crate) fn ask(&self) -> Option<String> {
        let to: SocketAddr = format!("{VIP}:{PORT}").parse().expect("address");
        self.0.send_to(b"?", to).ok()?;
        let mut buf = [0u8; 64];
        // A late answer to an earlier question may be the one read: it names who answered
        // then, which is as good for following the VIP.
        let (n, _) = self.0.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Asks until `name` answers, for at most `within`.
    fn until(&self, name: &str, within: Duration, t: &Topology) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < within {
            last = self.ask();
            if last.as_deref() == Some(name) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the VIP's service did not answer as {name} within {within:?} (last answer: {last:?})\n{}",
            t.logs()
        );
    }
}

/// Whether agent i's namespace has the VIP on its LAN NIC.
fn holds(t: &Topology, i: usize) -> bool {
    t.holds_vip(i)
}

/// Adds or deletes (`verb`) the VIP on the `lan` NIC of namespace `ns`, as a person would.
fn vip_by_hand(ns: &str, verb: &str) {
    crate::support::ip(&["-n", ns, "addr", verb, &format!("{VIP}/24"), "dev", "lan"]);
}

fn vip_row(status: &Status) -> Option<duet_core::Row> {
    crate::support::row(status, "vip:lan")
}

/// The `[[vip]]` both agents get; `more` adds keys.
fn vip_config(more: &str) -> String {
    format!(
        "\n[[vip]]\nnic = \"lan\"\naddress = \"{VIP}/24\"\nlease = \"3s\"\nrenew = \"1s\"\n{more}\n"
    )
}

fn pair_with_vip(timing: Timing, more: &str) -> Option<Topology> {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return None;
    }
    let t = Topology::new();
    let mut t = t;
    t.extra = [vip_config(more), vip_config(more)];
    t.configure(timing);
    Some(t)
}

#[test]
fn the_vip_follows_the_online_agent_through_kill_power_off_and_restart() {
    let Some(mut t) = pair_with_vip(FAST, "") else {
        return;
    };
    assert!(
        duet_host::pcap::detect().found,
        "libpcap is needed (cargo xtask test installs libpcap0.8)"
    );
    // Every hook appends its name and the state entered to <agent>-hooks.log.
    let hook = t.dir.path().join("hook.sh");
    let dir = t.dir.path().to_path_buf();
    let hooks_log = |i: usize| dir.join(format!("{}-hooks.log", AGENTS[i]));
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$1 $DUET_STATE $DUET_VIPS\" >> {}/$DUET_AGENT-hooks.log\n",
            t.dir.path().display()
        ),
    )
    .expect("hook script");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let hooks = ["online", "offline", "fault", "vip_acquired", "vip_released"]
        .map(|h| format!("{h} = \"{}\"\n", hook.display()))
        .concat();
    for extra in &mut t.extra {
        extra.push_str(&format!("[hooks]\n{hooks}timeout = \"5s\"\n"));
    }
    t.configure(FAST);
    let client_ns = t.add_host("cl", "10.77.0.50");
    let _services = [
        Service::start(&t.agent_ns(0), AGENTS[0]),
        Service::start(&t.agent_ns(1), AGENTS[1]),
    ];
    let client = Client::new(&client_ns, Duration::from_millis(100));
    let (p, q) = t.start_pair();
    client.until(AGENTS[p], Duration::from_secs(10), &t);
    assert!(
        holds(&t, p) && !holds(&t, q),
        "only the Online agent holds the VIP"
    );
    let row = t.status(p).as_ref().and_then(vip_row).expect("the VIP row");
    assert_eq!(row.value, "Held", "{row:?}");
    assert_eq!(row.reason, None, "{row:?}");
    let row = t.status(q).as_ref().and_then(vip_row).expect("the VIP row");
    assert_eq!(row.value, "Not held", "{row:?}");

    // kill -9 of the Online agent: the client's answers come from the backup, and the VIP
    // leaves the dead agent's NIC within its lease (3 s, checked at 1 s granularity).
    t.signal(p, "-KILL");
    let killed = Instant::now();
    client.until(AGENTS[q], TAKEOVER, &t);
    eventually(
        Duration::from_secs(6),
        "the dead agent's lease lapses",
        || (!holds(&t, p)).then_some(()),
    );
    // Renewed at most 1 s before the kill, a 3 s lease lapses within 3 s of it; the kernel
    // checks lifetimes about once a second.
    let lapsed = killed.elapsed();
    assert!(
        lapsed < Duration::from_millis(5_500),
        "the lease lapsed {lapsed:?} after the kill"
    );
    // The dead agent's kernel still answered for the VIP from its MAC (exchanged over the peer
    // link): the backup took it as the lapsing lease, and announced until it stopped.
    let out = |i: usize| {
        std::fs::read_to_string(t.dir.path().join(format!("{}.out", AGENTS[i]))).unwrap_or_default()
    };
    let logged = crate::support::within(Duration::from_secs(10), || {
        let text = out(q);
        (text.contains("the dead buddy's lease still answers: claiming")
            && text.contains("the buddy's lease has lapsed"))
        .then_some(())
    });
    assert!(
        logged.is_some(),
        "the backup did not log the lapsing lease within 10 s (killed {:?} ago)\n{}",
        killed.elapsed(),
        t.logs()
    );
    for _ in 0..10 {
        assert_eq!(client.ask().as_deref(), Some(AGENTS[q]), "{}", t.logs());
    }
    // The backup's hooks: vip-acquired, then online, with the state entered and the VIPs.
    let ran = eventually(Duration::from_secs(5), "the backup's hooks ran", || {
        let text = std::fs::read_to_string(hooks_log(q)).ok()?;
        text.contains("online Online").then_some(text)
    });
    let lines: Vec<_> = ran.lines().collect();
    assert_eq!(
        lines[lines.len().saturating_sub(2)..],
        [
            "vip-acquired Online 10.77.0.100/24 on lan",
            "online Online 10.77.0.100/24 on lan",
        ],
        "{ran}"
    );

    // The old agent restarted: it stays Offline and does not take the VIP.
    t.start(p);
    let with_q = {
        let mut s = [OFFLINE; 2];
        s[q] = ONLINE;
        s
    };
    t.until(Duration::from_secs(20), "restarted", |s| s == with_q);
    t.steady(Duration::from_secs(2), "restarted: no fail-back", with_q);
    assert!(!holds(&t, p), "the restarted agent does not hold the VIP");
    assert_eq!(client.ask().as_deref(), Some(AGENTS[q]));

    // Power-off of the Online agent (now q): process gone and both links cut.
    t.signal(q, "-KILL");
    t.link(q, "lan", false);
    t.link(q, "sync", false);
    client.until(AGENTS[p], TAKEOVER, &t);
    eventually(
        Duration::from_secs(6),
        "the powered-off agent's lease lapses",
        || (!holds(&t, q)).then_some(()),
    );
    t.link(q, "lan", true);
    t.link(q, "sync", true);
    t.start(q);
    let with_p = {
        let mut s = [OFFLINE; 2];
        s[p] = ONLINE;
        s
    };
    t.until(Duration::from_secs(20), "powered on again", |s| s == with_p);
    t.steady(Duration::from_secs(2), "powered on: no fail-back", with_p);
    assert!(!holds(&t, q), "the powered-on agent does not hold the VIP");
    assert_eq!(client.ask().as_deref(), Some(AGENTS[p]));
    let log = std::fs::read_to_string(t.dir.path().join(format!("{}-failover.log", AGENTS[p])))
        .unwrap_or_default();
    assert!(
        log.contains("Acquiring Virtual IP Address 10.77.0.100/24 on lan"),
        "{log}"
    );

    // SIGTERM of the Online agent: planned handover; it releases the VIP (hooks offline and
    // vip-released) and the client follows the buddy.
    t.signal(p, "-TERM");
    assert!(!holds(&t, p), "released on shutdown");
    client.until(AGENTS[q], TAKEOVER, &t);
    let ran = std::fs::read_to_string(hooks_log(p)).unwrap_or_default();
    let lines: Vec<_> = ran.lines().collect();
    assert_eq!(
        lines[lines.len().saturating_sub(2)..],
        [
            "offline Going offline 10.77.0.100/24 on lan",
            "vip-released Offline 10.77.0.100/24 on lan",
        ],
        "{ran}"
    );
}

#[test]
fn a_stale_vip_is_removed_and_a_foreign_one_is_a_conflict_in_the_event_log() {
    let Some(mut t) = pair_with_vip(FAST, "") else {
        return;
    };
    // A VIP left on agent-b's NIC (a crash without a lease, a manual mistake) is removed when
    // agent-b starts.
    let b = t.agent_ns(1);
    vip_by_hand(&b, "add");
    assert!(holds(&t, 1));
    let (p, _) = t.start_pair();
    eventually(Duration::from_secs(5), "the stale VIP removed", || {
        (!holds(&t, 1 - p) && holds(&t, p)).then_some(())
    });
    // Another host takes the VIP: the Online agent sees a conflict, shows and re-announces.
    let intruder = t.add_host("x", "10.77.0.60");
    vip_by_hand(&intruder, "add");
    // The check runs every verify_interval (10 s by default).
    let row = eventually(Duration::from_secs(20), "the conflict shown", || {
        let row = t.status(p).as_ref().and_then(vip_row)?;
        (row.value == "Conflict").then_some(row)
    });
    let reason = row.reason.unwrap_or_default();
    assert!(reason.contains("another host"), "{reason}");
    assert!(row.turns_led_red);
    let logged = |code: &str, words: &str| {
        eventually(Duration::from_secs(10), code, || {
            t.events(p, code)?.contains(words).then_some(())
        })
    };
    logged("vip_conflict", "another host");
    // The intruder leaves: the row clears.
    vip_by_hand(&intruder, "del");
    eventually(Duration::from_secs(25), "the conflict cleared", || {
        let row = t.status(p).as_ref().and_then(vip_row)?;
        (row.value == "Held").then_some(())
    });
    logged("vip_conflict_cleared", "no other host answers");
    // The VIP added by hand on the live Offline buddy: the buddy removes it (within its renew
    // interval) and the pair does not move.
    vip_by_hand(&t.agent_ns(1 - p), "add");
    eventually(
        Duration::from_secs(20),
        "the Offline buddy drops the VIP",
        || (!holds(&t, 1 - p)).then_some(()),
    );
    assert_eq!(
        t.states()[p],
        Some(duet_core::FailoverState::Online),
        "a stray VIP on the buddy does not move the pair"
    );
    assert!(holds(&t, p));
}

#[test]
fn stopping_the_agent_that_does_not_hold_the_vip_logs_no_error() {
    let Some(mut t) = pair_with_vip(FAST, "") else {
        return;
    };
    let (p, q) = t.start_pair();
    eventually(
        Duration::from_secs(10),
        "the Online agent holds the VIP",
        || (holds(&t, p) && !holds(&t, q)).then_some(()),
    );
    // The Offline agent stops: it releases every VIP on the way out, and the kernel answers
    // that the address is not there. That is the wanted outcome, not an error.
    t.signal(q, "-TERM");
    let out = std::fs::read_to_string(t.dir.path().join(format!("{}.out", AGENTS[q])))
        .unwrap_or_default();
    assert!(
        !out.contains("cannot remove the virtual IP") && !out.contains("ERROR"),
        "the stopped Offline agent logged an error:\n{out}"
    );
    assert!(holds(&t, p), "the Online agent keeps the VIP");
}

/// The libpcap files this machine has, under the names the loader tries, resolved.
fn pcap_files() -> Vec<PathBuf> {
    let arch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    let dirs = [arch.as_str(), "/usr/lib", "/usr/local/lib"];
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| {
            duet_host::pcap::CANDIDATES
                .iter()
                .map(move |c| Path::new(d).join(c))
        })
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn without_libpcap_the_agent_runs_and_its_vip_row_says_no_gratuitous_arp() {
    let Some(mut t) = pair_with_vip(FAST, "") else {
        return;
    };
    let libraries = pcap_files();
    if libraries.is_empty() {
        eprintln!("skipped: no libpcap on this machine to hide");
        return;
    }
    // agent-b's libpcap is replaced by /dev/null in its own mount namespace.
    t.wrap[1] = Some(
        libraries
            .iter()
            .map(|l| format!("mount --bind /dev/null '{}'", l.display()))
            .collect::<Vec<_>>()
            .join(" && "),
    );
    let client_ns = t.add_host("cl", "10.77.0.50");
    let _services = [
        Service::start(&t.agent_ns(0), AGENTS[0]),
        Service::start(&t.agent_ns(1), AGENTS[1]),
    ];
    let client = Client::new(&client_ns, Duration::from_millis(100));
    t.start(0);
    t.until(Duration::from_secs(20), "agent-a alone Online", |s| {
        s[0] == ONLINE
    });
    t.start(1);
    t.until(Duration::from_secs(20), "both running", one_online);
    let row = eventually(Duration::from_secs(10), "agent-b's VIP row", || {
        t.status(1).as_ref().and_then(vip_row)
    });
    assert_eq!(row.value, "Not held");
    let reason = row.reason.unwrap_or_default();
    assert!(
        reason.starts_with(duet_host::pcap::NOT_DETECTED)
            && reason.contains("no gratuitous ARP can be sent"),
        "{reason}"
    );
    // Its log says so in plain words, not as a Debug-formatted Option (`Some("…")`).
    let out = std::fs::read_to_string(t.dir.path().join(format!("{}.out", AGENTS[1])))
        .unwrap_or_default();
    let line = out
        .lines()
        .find(|l| l.contains("virtual IP mode without libpcap"))
        .unwrap_or_else(|| panic!("the warning is logged:\n{out}"));
    assert!(
        line.contains(duet_host::pcap::NOT_DETECTED) && !line.contains("Some("),
        "{line}"
    );
    // Its buddy shows the same row in agent-b's column.
    eventually(
        Duration::from_secs(10),
        "agent-b's VIP row in agent-a's view",
        || {
            let seen = t.status(0)?.pair?;
            seen.buddy
                .rows
                .iter()
                .any(|r| {
                    r.key == "vip:lan"
                        && r.reason
                            .as_deref()
                            .is_some_and(|w| w.contains("no gratuitous ARP"))
                })
                .then_some(())
        },
    );
    // Without libpcap agent-b still takes the VIP (no ARP check, no announcement): the client,
    // whose entry for the VIP is agent-a's, follows once that entry goes stale and is probed.
    client.until(AGENTS[0], Duration::from_secs(10), &t);
    t.signal(0, "-KILL");
    t.until(TAKEOVER, "agent-b Online", |s| s[1] == ONLINE);
    eventually(Duration::from_secs(5), "agent-b holds the VIP", || {
        holds(&t, 1).then_some(())
    });
    let row = t.status(1).as_ref().and_then(vip_row).expect("row");
    assert_eq!(row.value, "Held");
}

/// One failover-time series: `runs` kill -9s of the Online agent, each timed from the kill to
/// the first answer from the backup, the client asking every 10 ms.
pub(crate) fn failover_series(t: &mut Topology, runs: usize) -> Vec<f64> {
    let client_ns = t.ns("cl");
    let client = Client::new(&client_ns, Duration::from_millis(10));
    let (mut p, mut q) = t.start_pair();
    let mut times = Vec::new();
    for run in 0..runs {
        client.until(AGENTS[p], Duration::from_secs(20), t);
        // Settled: the backup hears the Online agent on every path.
        std::thread::sleep(Duration::from_millis(1_500));
        let pid = t.pid(p).expect("runs");
        let killed = Instant::now();
        // SAFETY: kill(2) on our child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        loop {
            if client.ask().as_deref() == Some(AGENTS[q]) {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "run {run}: no answer from the backup\n{}",
                t.logs()
            );
        }
        times.push(killed.elapsed().as_secs_f64() * 1000.0);
        t.signal(p, "-KILL");
        t.start(p);
        let with_q = {
            let mut s = [OFFLINE; 2];
            s[q] = ONLINE;
            s
        };
        t.until(Duration::from_secs(30), "restarted", |s| s == with_q);
        std::mem::swap(&mut p, &mut q);
    }
    times
}

/// Runs, median, p90, p99, min and max of a series in ms; null when it is empty.
pub(crate) fn stats(times: &mut [f64]) -> serde_json::Value {
    if times.is_empty() {
        return serde_json::Value::Null;
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[i.min(times.len() - 1)]
    };
    serde_json::json!({
        "runs": times.len(),
        "median_ms": pick(0.5),
        "p90_ms": pick(0.9),
        "p99_ms": pick(0.99),
        "min_ms": times[0],
        "max_ms": times[times.len() - 1],
    })
}

#[test]
fn a_vip_outside_its_nics_subnet_makes_the_configuration_invalid() {
    let Some(mut t) = pair_with_vip(FAST, "") else {
        return;
    };
    t.extra[0] = "\n[[vip]]\nnic = \"lan\"\naddress = \"10.99.0.100/24\"\n".into();
    t.configure(FAST);
    t.start(0);
    let row = eventually(Duration::from_secs(10), "the Configuration row", || {
        let status = t.status(0)?;
        let row = status
            .pair?
            .local
            .rows
            .into_iter()
            .find(|r| r.key == "configuration")?;
        (row.value == "Invalid").then_some(row)
    });
    assert_eq!(
        row.reason.as_deref(),
        Some("vip[0].address: 10.99.0.100 is outside lan's subnet (10.77.0.1/24)"),
        "{row:?}"
    );
    let vip = t.status(0).as_ref().and_then(vip_row).expect("the VIP row");
    assert!(vip.turns_led_red, "{vip:?}");
    // The Failover Config window's virtual IP (`GET /api/v1/pair`).
    let pair = in_ns(&t.agent_ns(0), || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(crate::netns::API).expect("the API");
        s.write_all(b"GET /api/v1/pair HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        text
    });
    let body = pair.split("\r\n\r\n").nth(1).unwrap_or_default();
    let pair: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(pair["virtual_ip"], "10.99.0.100/24 on lan", "{pair}");
}
