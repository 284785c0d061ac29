//! The decision path on its own, with two real agents in namespaces holding a VIP: busy
//! plugins and CPU hogs move nothing, plugins blocked in I/O leave the loop and SIGTERM alone,
//! a frozen loop and a stopped process fence themselves. A client on the LAN asks "who has the
//! VIP?" every 10 ms; each test asserts from those ARP replies that one MAC answers at a time
//! (or, for a stopped process, for at most the documented overlap), and from the agents' own
//! `duet_tick_gap_max_seconds` that their ticks kept their rhythm.
//!
//! Run serially and alone (`cargo xtask test` runs them after the other tests): they load the
//! machine on purpose, and a parallel test would disturb them or be disturbed.

use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use duet_core::FailoverState;

use crate::netns::{AGENTS, API, OFFLINE, ONLINE, TAKEOVER, Timing, Topology, one_online, with};
use crate::support::{HOSTILE_PLUGIN, eventually, is_root};
use crate::vip::in_ns;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
/// The default tick: the largest gap between two ticks must stay under twice this.
const TICK: Duration = Duration::from_millis(250);
/// The defaults: heartbeats every 200 ms, 3 failures allowed.
const DEFAULTS: Timing = Timing {
    interval_ms: 0,
    max_failures: 3,
};
/// How the ARP replies are binned: two MACs in one bin answered at the same moment.
const BIN: Duration = Duration::from_millis(20);

pub(crate) type Mac = [u8; 6];

/// A pair in namespaces with the VIP at its defaults (1 s lease renewed every 250 ms); `more`
/// is appended to each agent's configuration.
fn pair(more: [&str; 2]) -> Option<Topology> {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return None;
    }
    let mut t = Topology::new();
    for (extra, more) in t.extra.iter_mut().zip(more) {
        *extra = format!("\n[[vip]]\nnic = \"lan\"\naddress = \"{VIP}/24\"\n{more}\n");
    }
    t.configure(DEFAULTS);
    Some(t)
}

/// An HTTP GET to agent i's API from inside its namespace: the status code and the body.
fn get(t: &Topology, i: usize, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    in_ns(&t.agent_ns(i), move || {
        let mut s = std::net::TcpStream::connect(API).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: duet\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    })
}

/// A metric of agent i, from its `/metrics`.
fn metric(t: &Topology, i: usize, name: &str) -> Option<f64> {
    let (_, body) = get(t, i, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// Asserts agent i's largest tick gap since start stayed under two ticks.
fn assert_rhythm(t: &Topology, i: usize) {
    let max = metric(t, i, "duet_tick_gap_max_seconds").expect("the tick-gap metric");
    eprintln!("{}: the largest tick gap since start: {max} s", AGENTS[i]);
    assert!(
        max < (TICK * 2).as_secs_f64(),
        "{}: the largest gap between ticks was {max} s, not under {:?}\n{}",
        AGENTS[i],
        TICK * 2,
        t.logs()
    );
}

/// The MAC of `nic` in the calling thread's namespace.
fn mac_of(fd: &OwnedFd, nic: &str) -> Mac {
    let mut req = [0u8; 40];
    req[..nic.len()].copy_from_slice(nic.as_bytes());
    // SAFETY: SIOCGIFHWADDR reads the name and writes a sockaddr into the 40-byte ifreq.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, req.as_mut_ptr()) };
    assert_eq!(rc, 0, "SIOCGIFHWADDR: {}", std::io::Error::last_os_error());
    req[18..24].try_into().expect("six bytes")
}

/// The client: from its namespace, asks "who has the VIP?" every 10 ms and records who
/// answers, until dropped.
struct ArpWatch {
    stop: Arc<AtomicBool>,
    replies: Arc<std::sync::Mutex<Vec<(Duration, Mac)>>>,
    start: Instant,
}

impl ArpWatch {
    fn start(ns: &str) -> ArpWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let path = format!("/run/netns/{ns}");
        let (flag, seen) = (stop.clone(), replies.clone());
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace file");
            // SAFETY: setns on this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let (fd, ours) = arp_socket();
            let request = arp_request(ours);
            let mut buf = [0u8; 128];
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    // SAFETY: a bound packet socket and a whole frame.
                    unsafe {
                        libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0)
                    };
                    next += Duration::from_millis(10);
                }
                // SAFETY: `buf` is valid for writes of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if let Some(mac) = usize::try_from(n)
                    .ok()
                    .and_then(|n| reply_for_vip(&buf[..n]))
                {
                    seen.lock().expect("replies").push((start.elapsed(), mac));
                }
            }
        });
        ArpWatch {
            stop,
            replies,
            start,
        }
    }

    /// The replies so far: when, and from which MAC.
    fn replies(&self) -> Vec<(Duration, Mac)> {
        self.replies.lock().expect("replies").clone()
    }

    /// The MAC that answered last, if any answered within the last 100 ms.
    fn answering(&self) -> Option<Mac> {
        let now = self.start.elapsed();
        self.replies()
            .last()
            .filter(|(at, _)| now.saturating_sub(*at) < Duration::from_millis(100))
            .map(|(_, m)| *m)
    }

    /// Bins of [`BIN`] in which two MACs answered: (first, last) such moment.
    fn both_answered(&self) -> Option<(Duration, Duration)> {
        let replies = self.replies();
        let mut both: Option<(Duration, Duration)> = None;
        for (i, (at, mac)) in replies.iter().enumerate() {
            let other = replies[i..]
                .iter()
                .take_while(|(t, _)| *t < *at + BIN)
                .any(|(_, m)| m != mac);
            if other {
                both = Some(both.map_or((*at, *at), |(first, _)| (first, *at)));
            }
        }
        both
    }
}

impl Drop for ArpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A packet socket for ARP on `lan`, with a 2 ms receive timeout, and the NIC's MAC.
pub(crate) fn arp_socket() -> (OwnedFd, Mac) {
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2), owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    assert!(
        raw >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c"lan".as_ptr()) };
    // SAFETY: zeroed sockaddr_ll, then filled.
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = proto;
    at.sll_ifindex = index as i32;
    // SAFETY: a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const at).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 2_000,
    };
    // SAFETY: a valid timeval.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    let mac = mac_of(&fd, "lan");
    (fd, mac)
}

/// "Who has the VIP? Tell the client."
fn arp_request(ours: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ours);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&ours);
    f.extend_from_slice(&CLIENT.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&VIP.octets());
    f
}

/// The sender of an ARP reply for the VIP.
fn reply_for_vip(frame: &[u8]) -> Option<Mac> {
    let arp = frame.get(14..42)?;
    let reply = frame[12..14] == [0x08, 0x06] && arp[6..8] == [0, 2];
    (reply && arp[14..18] == VIP.octets()).then(|| arp[8..14].try_into().ok())?
}

/// Agent i's MAC on the LAN.
fn agent_mac(t: &Topology, i: usize) -> Mac {
    in_ns(&t.agent_ns(i), || arp_socket().1)
}

/// Spins every core at ordinary priority until dropped.
struct Hogs(Arc<AtomicBool>);

impl Hogs {
    fn start() -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        for _ in 0..cores {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            });
        }
        Hogs(stop)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Copies of the hostile plugin into `<dir>/plugins`, with their `[plugins]` sections.
fn plugins(t: &Topology, n: usize, section: impl Fn(usize) -> String) -> String {
    let dir = t.dir.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("the plugin folder");
    let mut text = format!("[plugins]\ndir = \"{}\"\n", dir.display());
    for k in 0..n {
        std::fs::copy(HOSTILE_PLUGIN, dir.join(format!("p{k}.wasm"))).expect("copy the plugin");
        text.push_str(&format!("[plugins.plugin.p{k}]\n{}\n", section(k)));
    }
    text
}

/// Starts the pair with the client watching the VIP; once the Online agent answers for it:
/// the watch, (Online, Offline) and their MACs.
fn start_watched(t: &mut Topology) -> (ArpWatch, (usize, usize), (Mac, Mac)) {
    let client = t.add_host("cl", &CLIENT.to_string());
    let (p, q) = t.start_pair();
    let watch = ArpWatch::start(&client);
    let macs = (agent_mac(t, p), agent_mac(t, q));
    eventually(TAKEOVER, "the Online agent answers for the VIP", || {
        (watch.answering() == Some(macs.0)).then_some(())
    });
    (watch, (p, q), macs)
}

/// The row of plugin `p0` on agent i.
fn first_plugin_row(t: &Topology, i: usize) -> duet_core::Row {
    let rows = t
        .status(i)
        .and_then(|s| s.pair)
        .expect("a status")
        .local
        .rows;
    rows.into_iter()
        .find(|r| r.key == "plugin:p0")
        .expect("the plugin's row")
}

/// Holds for `during`: states stay `expected`, the heartbeats to the buddy never declared
/// dead on either agent, one MAC answers for the VIP.
fn calm(t: &Topology, watch: &ArpWatch, during: Duration, expected: [Option<FailoverState>; 2]) {
    let start = Instant::now();
    while start.elapsed() < during {
        assert_eq!(t.states(), expected, "a takeover under load\n{}", t.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, name) in AGENTS.iter().enumerate() {
        let out = std::fs::read_to_string(t.dir.path().join(format!("{name}-failover.log")))
            .unwrap_or_default();
        assert!(
            !out.contains("all agent heartbeats fail"),
            "{name}: a path declared dead\n{}",
            t.logs()
        );
        assert_rhythm(t, i);
    }
    assert_eq!(watch.both_answered(), None, "two MACs answered for the VIP");
}

fn busy_plugins_and_hogs(priority: u8) {
    let Some(mut t) = pair(["", ""]) else {
        return;
    };
    let busy = plugins(&t, 4, |_| {
        "interval = \"1s\"\nconfig = { mode = \"busy\", busy_ms = 900 }".to_string()
    });
    for extra in &mut t.extra {
        extra.push_str(&format!("[core]\npriority = {priority}\n{busy}"));
    }
    t.configure(DEFAULTS);
    let client = t.add_host("cl", &CLIENT.to_string());
    let (p, q) = t.start_pair();
    let watch = ArpWatch::start(&client);
    eventually(TAKEOVER, "the VIP answers", || watch.answering());
    let _hogs = Hogs::start();
    calm(&t, &watch, Duration::from_secs(30), with(p));
    assert_eq!(t.states()[q], OFFLINE);
    let busy = first_plugin_row(&t, p);
    // The plugins ran (slowed by the plugins' CPU budget, which the row says).
    assert!(busy.value.starts_with("busy 900 ms"), "{busy:?}");
}

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn busy_plugins_and_cpu_hogs_move_nothing_at_raised_priority() {
    busy_plugins_and_hogs(10);
}

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn busy_plugins_and_cpu_hogs_move_nothing_at_ordinary_priority() {
    busy_plugins_and_hogs(0);
}

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn plugins_blocked_on_a_fifo_leave_the_loop_and_sigterm_alone() {
    let Some(mut t) = pair(["", ""]) else {
        return;
    };
    let granted = t.dir.path().join("granted");
    std::fs::create_dir_all(&granted).expect("the granted folder");
    let fifo = granted.join("fifo");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let blocked = plugins(&t, 130, |_| {
        format!(
            "interval = \"1s\"\nread_dirs = [\"{}\"]\nconfig = {{ mode = \"read\", path = \"{}\" }}",
            granted.display(),
            fifo.display()
        )
    });
    for extra in &mut t.extra {
        extra.push_str(&blocked);
    }
    t.configure(DEFAULTS);
    let client = t.add_host("cl", &CLIENT.to_string());
    let (p, q) = t.start_pair();
    let watch = ArpWatch::start(&client);
    eventually(TAKEOVER, "the VIP answers", || watch.answering());
    // Long enough for every plugin to have tried (they once filled a shared pool in 15 s; the
    // open is now refused before it can block).
    calm(&t, &watch, Duration::from_secs(15), with(p));
    let stuck = first_plugin_row(&t, p);
    eprintln!("a FIFO reader's row: {stuck:?}");
    assert!(stuck.reason.is_some(), "the read is refused: {stuck:?}");
    let asked = Instant::now();
    t.signal(p, "-TERM");
    let exited = asked.elapsed();
    eprintln!("SIGTERM: the agent exited after {exited:?}");
    // The handover's own bound (going_offline + prepare timeouts + 4 ticks, defaults) plus
    // the 2 s given to stragglers and 1 s to blocked threads.
    assert!(
        exited < Duration::from_secs(25),
        "SIGTERM took {exited:?}\n{}",
        t.logs()
    );
    t.until(TAKEOVER, "the buddy took over", |s| s[q] == ONLINE);
    let log = std::fs::read_to_string(t.dir.path().join(format!("{}-failover.log", AGENTS[p])))
        .unwrap_or_default();
    assert!(
        log.contains("Handover complete: the buddy is Online"),
        "{}",
        t.logs()
    );
    assert_rhythm(&t, q);
    eventually(TAKEOVER, "the buddy answers for the VIP", || {
        (watch.answering() == Some(agent_mac(&t, q))).then_some(())
    });
    assert_eq!(watch.both_answered(), None, "two MACs answered for the VIP");
}

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn a_frozen_loop_fences_itself_before_the_buddy_takes_over() {
    let Some(mut t) = pair(["", ""]) else {
        return;
    };
    let freeze = |i: usize| t.dir.path().join(format!("freeze-{}", AGENTS[i]));
    let files = [freeze(0), freeze(1)];
    for (env, file) in t.env.iter_mut().zip(&files) {
        env.push(("DUET_TEST_FREEZE".into(), file.display().to_string()));
    }
    let (watch, (p, q), (_, mac_q)) = start_watched(&mut t);
    assert_eq!(get(&t, p, "/healthz").map(|(c, _)| c), Some(200));
    // Agent p's loop stops before its next core call; the rest of its process runs on.
    std::fs::write(&files[p], "").expect("freeze");
    let frozen = Instant::now();
    let health = eventually(Duration::from_secs(3), "/healthz fails", || {
        get(&t, p, "/healthz").filter(|(c, _)| *c == 503)
    });
    assert!(
        health.1.contains("late") || health.1.contains("fenced"),
        "{health:?}"
    );
    eventually(TAKEOVER, "the buddy answers for the VIP", || {
        (watch.answering() == Some(mac_q)).then_some(())
    });
    let took_over = frozen.elapsed();
    eprintln!("the buddy answered for the VIP {took_over:?} after the freeze");
    assert_eq!(
        watch.both_answered(),
        None,
        "the frozen agent's MAC still answered when the buddy's did"
    );
    // While its loop is still frozen, the fenced agent's API tells the truth: Offline, in its
    // state and in its Failover Status row.
    eventually(
        Duration::from_secs(2),
        "the frozen agent's API says Offline",
        || {
            let status = t.status(p)?;
            let row = crate::support::row(&status, "failover-status")?;
            (crate::support::state(&status) == OFFLINE && row.value == "Offline").then_some(())
        },
    );
    std::fs::remove_file(&files[p]).expect("thaw");
    t.until(TAKEOVER, "the fenced agent Offline", |s| s == with(q));
    let log = std::fs::read_to_string(t.dir.path().join(format!("{}-failover.log", AGENTS[p])))
        .unwrap_or_default();
    assert!(log.contains("fenced itself"), "{}", t.logs());
    assert_rhythm(&t, q);
    assert!(took_over < TAKEOVER, "{took_over:?}");
    assert_eq!(watch.both_answered(), None);
}

/// The longest time both MACs may answer after a whole-process stop at the defaults (see
/// docs/decisions.md): the kernel lease (1 s) and its timer's rounding (250 ms), less the
/// buddy's earliest detection (3 failures × 200 ms), plus one bin of measurement.
const STOP_OVERLAP: Duration = Duration::from_millis(1_000 + 250 - 600 + 20);

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn a_stopped_process_fences_first_thing_on_waking() {
    let Some(mut t) = pair(["", ""]) else {
        return;
    };
    let (watch, (p, q), (mac_p, mac_q)) = start_watched(&mut t);
    let pid = t.pid(p).expect("the agent runs").to_string();
    let kill = |signal: &str| {
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal}");
    };
    kill("-STOP");
    eventually(TAKEOVER, "the buddy answers for the VIP", || {
        (watch.answering() == Some(mac_q)).then_some(())
    });
    // Past detection, and past the lease: only the buddy answers.
    std::thread::sleep(Duration::from_secs(2));
    let woke = watch.start.elapsed();
    kill("-CONT");
    t.until(TAKEOVER, "the stopped agent Offline", |s| s == with(q));
    eventually(Duration::from_secs(5), "the fence in the log", || {
        let out = std::fs::read_to_string(t.dir.path().join(format!("{}.out", AGENTS[p])))
            .unwrap_or_default();
        out.contains("fenced").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = watch
        .replies()
        .into_iter()
        .filter(|(at, m)| *at >= woke && *m == mac_p)
        .count();
    assert_eq!(
        after,
        0,
        "the woken agent answered for the VIP again\n{}",
        t.logs()
    );
    let overlap = watch.both_answered().map(|(first, last)| last - first);
    eprintln!("both MACs answered for {overlap:?} after the stop (bound {STOP_OVERLAP:?})");
    if let Some(overlap) = overlap {
        assert!(
            overlap <= STOP_OVERLAP,
            "both MACs answered for {overlap:?}, more than {STOP_OVERLAP:?}"
        );
    }
    assert_rhythm(&t, q);
    assert!(one_online(t.states()));
}

/// The load bench (`cargo xtask bench`): both cores saturated (a CPU hog per core at ordinary
/// priority, four busy plugins on each agent), at the defaults: 10 kill -9 failovers timed at
/// the client, then `DUET_LOAD_BENCH_SECS` (default 600) with no fault, counting takeovers.
/// Writes `target/load-bench.json`.
#[test]
#[ignore = "a bench: cargo xtask bench runs it"]
fn load_bench() {
    let secs: u64 = std::env::var("DUET_LOAD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut t = pair(["", ""]).expect("the load bench needs root");
    let busy = plugins(&t, 4, |_| {
        "interval = \"1s\"\nconfig = { mode = \"busy\", busy_ms = 900 }".to_string()
    });
    for extra in &mut t.extra {
        extra.push_str(&busy);
    }
    t.configure(DEFAULTS);
    t.add_host("cl", &CLIENT.to_string());
    let _services = [
        crate::vip::Service::start(&t.agent_ns(0), AGENTS[0]),
        crate::vip::Service::start(&t.agent_ns(1), AGENTS[1]),
    ];
    let _hogs = Hogs::start();
    let mut times = crate::vip::failover_series(&mut t, 10);
    t.until(TAKEOVER, "one Online", one_online);
    let before = [t.state_changes(0), t.state_changes(1)];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        t.until(TAKEOVER, "one Online", one_online);
        std::thread::sleep(Duration::from_secs(1));
    }
    let takeovers = (0..2)
        .map(|i| t.state_changes(i) - before[i])
        .sum::<usize>();
    let gaps: Vec<f64> = (0..2)
        .filter_map(|i| metric(&t, i, "duet_tick_gap_max_seconds"))
        .collect();
    let out = serde_json::json!({
        "failover": crate::vip::stats(&mut times),
        "quiet_seconds": secs,
        "state_changes": takeovers,
        "max_tick_gap_ms": gaps.iter().copied().fold(0.0, f64::max) * 1000.0,
    });
    let path = crate::support::workspace().join("target/load-bench.json");
    std::fs::write(&path, out.to_string()).expect("write the figures");
    eprintln!("{out}");
}
