//! Takeover time beside keepalived (`cargo xtask bench failover`): the same namespace topology
//! (LAN through a bridge, a direct sync cable, a client asking the VIP every 10 ms, a UDP
//! service on each node answering with its name), one topology per daemon, both running
//! throughout; kills interleaved, one of each in turn.
//!
//! keepalived (Debian's) runs with equal priorities and `nopreempt`, VRRPv3, and is killed as
//! a whole process group (its parent and its VRRP child), as a crash would. duet runs the binary
//! named by `DUET_BIN` (release, from the bench) or this profile's.
//!
//! "Equal settings" are equal nominal detection times: keepalived declares the master down
//! after 3 × advert + skew (skew = (256 − priority) / 256 × advert); duet after
//! `max_failures + 1` missed intervals. Per pair of settings: kill -9 of the active node, time
//! until the client hears the backup, split (duet) into detection, decision, VIP claimed and
//! first gratuitous ARP seen, from the failover log and a capture at the client; SIGSTOPs of
//! the active daemon for 2× its interval (shorter than detection: any takeover is false) and 4×
//! (longer: counted, not judged); idle CPU and RSS. Writes `target/takeover-bench.json`.

use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::containment::{Mac, arp_socket};
use duet_core::FailoverState;

use crate::netns::{AGENTS, OFFLINE, ONLINE, Timing, Topology};
use crate::vip::{Client, Service, stats};

const VIP: [u8; 4] = [10, 77, 0, 100];
const PRIORITY: u32 = 100;

/// A failover pair under test: duet or keepalived, in its own topology.
trait Daemon {
    fn name(&self) -> String;
    fn topology(&self) -> &Topology;
    fn topology_mut(&mut self) -> &mut Topology;
    /// Starts node i.
    fn start(&mut self, i: usize);
    /// kill -9 of node i (every process of it); reaped.
    fn kill(&mut self, i: usize);
    /// The processes of node i (for signals and /proc).
    fn pids(&self, i: usize) -> Vec<i32>;
    /// After a kill: what a rebooted node would not keep (keepalived leaves the VIP behind).
    fn clean(&self, _i: usize) {}
    /// Polls until node `active` holds the pair and the other is its settled backup.
    fn settle(&self, active: usize);
    /// The one node holding the pair, if exactly one does (its own view).
    fn active(&self) -> Option<usize>;
    /// A takeover by node i is in progress or done (its own view).
    fn took_over(&self, i: usize) -> bool;
    /// What the nodes logged, for a failure message.
    fn logs(&self) -> String {
        self.topology().logs()
    }
    /// The interval the SIGSTOP rounds are counted in.
    fn interval(&self) -> Duration;
    /// Milliseconds since the epoch of each step of node i's last takeover after `since`:
    /// (detection, decision, VIP claimed), when its log says.
    fn steps(&self, _i: usize, _since: u64) -> Option<[u64; 3]> {
        None
    }
}

struct Duet {
    t: Topology,
    timing: Timing,
    label: String,
}

impl Duet {
    fn new(label: &str, timing: Timing, tick_ms: u64, vip_more: &str) -> Self {
        let mut t = Topology::new();
        let vip = format!(
            "\n[[vip]]\nnic = \"lan\"\naddress = \"10.77.0.100/24\"\n{vip_more}\n[core]\ntick = \"{tick_ms}ms\"\n"
        );
        t.extra = [vip.clone(), vip];
        t.configure(timing);
        Duet {
            t,
            timing,
            label: label.into(),
        }
    }
}

impl Daemon for Duet {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn topology(&self) -> &Topology {
        &self.t
    }

    fn topology_mut(&mut self) -> &mut Topology {
        &mut self.t
    }

    fn start(&mut self, i: usize) {
        self.t.start(i);
    }

    fn kill(&mut self, i: usize) {
        if let Some(pid) = self.t.pid(i) {
            // SAFETY: kill(2) on our child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        self.t.signal(i, "-KILL");
    }

    fn pids(&self, i: usize) -> Vec<i32> {
        self.t.pid(i).map(|p| p as i32).into_iter().collect()
    }

    fn settle(&self, active: usize) {
        let mut want = [OFFLINE; 2];
        want[active] = ONLINE;
        self.t
            .until(Duration::from_secs(30), "settled", |s| s == want);
        // The backup hears the Online agent on every path again.
        std::thread::sleep(self.interval() * 5 + Duration::from_millis(300));
    }

    fn active(&self) -> Option<usize> {
        match self.t.states() {
            [ONLINE, OFFLINE] => Some(0),
            [OFFLINE, ONLINE] => Some(1),
            _ => None,
        }
    }

    fn took_over(&self, i: usize) -> bool {
        matches!(
            self.t.states()[i],
            Some(FailoverState::GoingOnline | FailoverState::Online)
        )
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(if self.timing.interval_ms == 0 {
            200
        } else {
            self.timing.interval_ms
        })
    }

    fn steps(&self, i: usize, since: u64) -> Option<[u64; 3]> {
        let path = self
            .t
            .dir
            .path()
            .join(format!("{}-failover.log", AGENTS[i]));
        let text = std::fs::read_to_string(path).ok()?;
        let at = |needle: &str| {
            text.lines().rev().find_map(|line| {
                let (time, rest) = line.split_once('|')?;
                let ms = humantime::parse_rfc3339(time).ok()?;
                let ms = ms.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
                (ms >= since && rest.contains(needle)).then_some(ms)
            })
        };
        Some([
            at("Failover Status => Preparing to go online")?,
            at("Acquiring Virtual IP Address")?,
            at("Failover Status => Online")?,
        ])
    }
}

struct Keepalived {
    t: Topology,
    advert_ms: u64,
    procs: [Option<Child>; 2],
}

impl Keepalived {
    fn new(advert_ms: u64) -> Self {
        let t = Topology::new();
        for name in AGENTS {
            let conf = format!(
                "global_defs {{\n  router_id {name}\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}}\n\
                 vrrp_instance duet_bench {{\n  state BACKUP\n  nopreempt\n  interface lan\n  virtual_router_id 77\n  priority {PRIORITY}\n  advert_int {advert}\n  virtual_ipaddress {{\n    10.77.0.100/24 dev lan\n  }}\n}}\n",
                advert = advert_ms as f64 / 1000.0,
            );
            std::fs::write(t.dir.path().join(format!("{name}.conf")), conf)
                .expect("write keepalived.conf");
        }
        Keepalived {
            t,
            advert_ms,
            procs: [None, None],
        }
    }

    /// Nominal detection: 3 adverts and the skew of priority 100.
    fn nominal_ms(advert_ms: u64) -> f64 {
        3.0 * advert_ms as f64 + (256 - PRIORITY) as f64 / 256.0 * advert_ms as f64
    }
}

impl Daemon for Keepalived {
    fn name(&self) -> String {
        format!("keepalived, advert {} ms", self.advert_ms)
    }

    fn topology(&self) -> &Topology {
        &self.t
    }

    fn topology_mut(&mut self) -> &mut Topology {
        &mut self.t
    }

    fn start(&mut self, i: usize) {
        let dir = self.t.dir.path();
        let name = AGENTS[i];
        // A killed keepalived leaves its pid files: a new one would think it still runs.
        for file in ["pid", "vrrp.pid", "checkers.pid"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}.{file}")));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.keepalived.out")))
            .expect("keepalived output file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.t.agent_ns(i), "keepalived"])
            .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
            .arg(dir.join(format!("{name}.conf")))
            .arg("--pid")
            .arg(dir.join(format!("{name}.pid")))
            .arg("--vrrp_pid")
            .arg(dir.join(format!("{name}.vrrp.pid")))
            .arg("--checkers_pid")
            .arg(dir.join(format!("{name}.checkers.pid")))
            .process_group(0)
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn keepalived (apt-get install keepalived)");
        self.procs[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            // SAFETY: kill(2) of the process group keepalived leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    fn pids(&self, i: usize) -> Vec<i32> {
        let Some(child) = &self.procs[i] else {
            return Vec::new();
        };
        group(child.id() as i32)
    }

    fn clean(&self, i: usize) {
        let _ = Command::new("ip")
            .args(["-n", &self.t.agent_ns(i), "addr", "del", "10.77.0.100/24"])
            .args(["dev", "lan"])
            .stderr(Stdio::null())
            .status();
    }

    fn settle(&self, active: usize) {
        let start = Instant::now();
        while self.active() != Some(active) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "keepalived did not settle with node {active} holding the VIP\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The restarted backup has heard adverts for a while.
        std::thread::sleep(self.interval() * 3 + Duration::from_millis(300));
    }

    fn logs(&self) -> String {
        AGENTS
            .iter()
            .map(|name| {
                let file = self.t.dir.path().join(format!("{name}.keepalived.out"));
                let text = std::fs::read_to_string(file).unwrap_or_default();
                format!("--- {name} (keepalived)\n{text}")
            })
            .collect()
    }

    fn active(&self) -> Option<usize> {
        match [0, 1].map(|i| self.t.holds_vip(i)) {
            [true, false] => Some(0),
            [false, true] => Some(1),
            _ => None,
        }
    }

    fn took_over(&self, i: usize) -> bool {
        self.t.holds_vip(i)
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.advert_ms)
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        for i in 0..2 {
            self.kill(i);
        }
    }
}

/// The processes of process group `pgid`.
fn group(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: getpgid(2) of any pid.
        if unsafe { libc::getpgid(pid) } == pgid {
            pids.push(pid);
        }
    }
    pids
}

/// Gratuitous ARPs for the VIP seen at the client: when, and from whom.
struct GarpWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, Mac)>>>,
}

impl GarpWatch {
    fn start(ns: &str) -> GarpWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (stop.clone(), seen.clone());
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace file");
            // SAFETY: setns on this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let (fd, _) = arp_socket();
            let mut buf = [0u8; 128];
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: `buf` is valid for writes of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let frame = usize::try_from(n).ok().and_then(|n| buf.get(..n));
                if let Some(mac) = frame.and_then(claim_for_vip) {
                    log.lock().expect("garps").push((Instant::now(), mac));
                }
            }
        });
        GarpWatch { stop, seen }
    }

    /// The first claim for the VIP after `since` by someone other than `not`.
    fn first_after(&self, since: Instant, not: Option<Mac>) -> Option<Instant> {
        self.seen
            .lock()
            .expect("garps")
            .iter()
            .find(|(at, mac)| *at >= since && Some(*mac) != not)
            .map(|(at, _)| *at)
    }

    fn last_sender(&self) -> Option<Mac> {
        self.seen.lock().expect("garps").last().map(|(_, m)| *m)
    }
}

impl Drop for GarpWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An ARP frame (request or reply) whose sender claims the VIP: a gratuitous ARP.
fn claim_for_vip(frame: &[u8]) -> Option<Mac> {
    let arp = frame.get(14..42)?;
    (frame[12..14] == [0x08, 0x06] && arp[14..18] == VIP)
        .then(|| arp[8..14].try_into().ok())
        .flatten()
}

/// One daemon's runs: times in ms.
#[derive(Default)]
struct Series {
    takeover: Vec<f64>,
    detection: Vec<f64>,
    decision: Vec<f64>,
    claimed: Vec<f64>,
    garp: Vec<f64>,
}

/// A daemon in its topology, with the client, its services and the capture.
struct Rig {
    daemon: Box<dyn Daemon>,
    client: Client,
    garps: GarpWatch,
    _services: [Service; 2],
    active: usize,
    series: Series,
}

impl Rig {
    fn new(mut daemon: Box<dyn Daemon>) -> Rig {
        let client_ns = daemon.topology_mut().add_host("cl", "10.77.0.50");
        let t = daemon.topology();
        let services = [
            Service::start(&t.agent_ns(0), AGENTS[0]),
            Service::start(&t.agent_ns(1), AGENTS[1]),
        ];
        let client = Client::new(&client_ns, Duration::from_millis(10));
        let garps = GarpWatch::start(&client_ns);
        daemon.start(0);
        std::thread::sleep(Duration::from_millis(300));
        daemon.start(1);
        let active = wait_active(daemon.as_ref());
        daemon.settle(active);
        Rig {
            daemon,
            client,
            garps,
            _services: services,
            active,
            series: Series::default(),
        }
    }

    /// kill -9 of the active node; the time until the backup answers at the client.
    fn kill_once(&mut self) {
        let (p, q) = (self.active, 1 - self.active);
        let old = self.garps.last_sender();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let killed = Instant::now();
        self.daemon.kill(p);
        loop {
            if self.client.ask().as_deref() == Some(AGENTS[q]) {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "{}: no answer from the backup\n{}",
                self.daemon.name(),
                self.daemon.logs()
            );
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let s = &mut self.series;
        s.takeover.push(ms(killed.elapsed()));
        if let Some(at) = self.garps.first_after(killed, old) {
            s.garp.push(ms(at - killed));
        }
        self.daemon.clean(p);
        self.daemon.start(p);
        self.active = q;
        self.daemon.settle(q);
        // The failover log is written in the background: read once settled.
        if let Some([detected, decided, claimed]) = self.daemon.steps(q, wall) {
            let s = &mut self.series;
            s.detection.push(detected.saturating_sub(wall) as f64);
            s.decision.push(decided.saturating_sub(detected) as f64);
            s.claimed.push(claimed.saturating_sub(decided) as f64);
        }
    }

    /// SIGSTOP of the active node for `pause`, then SIGCONT: whether the backup took over.
    fn stall_once(&mut self, pause: Duration) -> bool {
        let (p, q) = (self.active, 1 - self.active);
        let pids = self.daemon.pids(p);
        for pid in &pids {
            // SAFETY: kill(2) on our children.
            unsafe { libc::kill(*pid, libc::SIGSTOP) };
        }
        std::thread::sleep(pause);
        for pid in &pids {
            // SAFETY: as above.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
        // Watch for as long as a takeover could still be on its way.
        let start = Instant::now();
        let mut took = false;
        while start.elapsed() < Duration::from_secs(1) + self.daemon.interval() * 4 {
            took |= self.daemon.took_over(q);
            std::thread::sleep(Duration::from_millis(20));
        }
        if took {
            // Back to one active node, whichever it is now: restart both cleanly.
            for i in [p, q] {
                self.daemon.kill(i);
                self.daemon.clean(i);
            }
            self.daemon.start(p);
            std::thread::sleep(Duration::from_millis(300));
            self.daemon.start(q);
            self.active = wait_active(self.daemon.as_ref());
            self.daemon.settle(self.active);
        }
        took
    }

    /// CPU (% of one core) and RSS (KiB) of both nodes over `during`, idle.
    fn idle(&self, during: Duration) -> (f64, u64) {
        let pids: Vec<i32> = (0..2).flat_map(|i| self.daemon.pids(i)).collect();
        let ticks = |pids: &[i32]| -> u64 { pids.iter().map(|p| cpu_ticks(*p)).sum() };
        let before = ticks(&pids);
        std::thread::sleep(during);
        let used = ticks(&pids) - before;
        // SAFETY: sysconf is always safe to call.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let cpu = used as f64 / hz / during.as_secs_f64() * 100.0 / 2.0;
        let rss = (0..2)
            .map(|i| self.daemon.pids(i).iter().map(|p| rss_kib(*p)).sum::<u64>())
            .max()
            .unwrap_or(0);
        (cpu, rss)
    }
}

/// Polls until exactly one node holds the pair; which.
fn wait_active(daemon: &dyn Daemon) -> usize {
    let start = Instant::now();
    loop {
        if let Some(i) = daemon.active() {
            return i;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}: no single active node\n{}",
            daemon.name(),
            daemon.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let f = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    f(11) + f(12)
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One pair of settings: a keepalived advert interval and duet's matching profile.
struct Pairing {
    label: &'static str,
    advert_ms: u64,
    duet: Timing,
    tick_ms: u64,
    vip_more: &'static str,
}

/// The pairs: defaults against defaults; then duet's settings matched to keepalived's
/// nominal detection at 50 ms and at 10 ms adverts.
const PAIRINGS: [Pairing; 3] = [
    Pairing {
        label: "defaults",
        advert_ms: 1_000,
        duet: Timing {
            interval_ms: 0,
            max_failures: 0,
        },
        tick_ms: 250,
        vip_more: "",
    },
    Pairing {
        label: "50 ms",
        advert_ms: 50,
        duet: Timing {
            interval_ms: 45,
            max_failures: 3,
        },
        tick_ms: 50,
        vip_more: "arp_wait = \"15ms\"\narp_tries = 2",
    },
    Pairing {
        label: "10 ms",
        advert_ms: 10,
        duet: Timing {
            interval_ms: 9,
            max_failures: 3,
        },
        tick_ms: 10,
        vip_more: "arp_wait = \"10ms\"\narp_tries = 1",
    },
];

/// The bench: `DUET_TAKEOVER_RUNS` kills per daemon and setting (default 50), 10 stall rounds
/// at 2× and 4× the interval, 20 s idle each.
#[test]
#[ignore = "a bench: cargo xtask bench failover runs it"]
fn takeover_bench() {
    assert!(crate::support::is_root(), "the takeover bench needs root");
    let runs: usize = std::env::var("DUET_TAKEOVER_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    let rounds: usize = std::env::var("DUET_TAKEOVER_STALLS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let idle = Duration::from_secs(
        std::env::var("DUET_TAKEOVER_IDLE")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(20),
    );
    let mut results = Vec::new();
    let only = std::env::var("DUET_TAKEOVER_ONLY").ok();
    for pairing in PAIRINGS
        .iter()
        .filter(|p| only.as_deref().is_none_or(|o| o == p.label))
    {
        let duet = Duet::new(
            &format!("duet, {}", pairing.label),
            pairing.duet,
            pairing.tick_ms,
            pairing.vip_more,
        );
        let nominal_duet = {
            let t = pairing.duet;
            if t.interval_ms == 0 {
                800.0
            } else {
                ((t.max_failures + 1) as u64 * t.interval_ms) as f64
            }
        };
        let mut rigs = [
            Rig::new(Box::new(Keepalived::new(pairing.advert_ms))),
            Rig::new(Box::new(duet)),
        ];
        let mut idle_figures = Vec::new();
        for rig in &rigs {
            idle_figures.push(rig.idle(idle));
        }
        for run in 0..runs {
            for rig in &mut rigs {
                rig.kill_once();
            }
            eprintln!("{}: run {run} done", pairing.label);
        }
        let mut stalls = Vec::new();
        for factor in [2u32, 4] {
            let mut taken = [0usize; 2];
            for _ in 0..rounds {
                for (k, rig) in rigs.iter_mut().enumerate() {
                    let pause = rig.daemon.interval() * factor;
                    taken[k] += usize::from(rig.stall_once(pause));
                }
            }
            stalls.push(
                serde_json::json!({ "factor": factor, "keepalived": taken[0], "duet": taken[1] }),
            );
        }
        // The defaults' own promise: 0 takeovers in 10 SIGSTOPs of 500 ms.
        let mut half_second = 0;
        if pairing.advert_ms == 1_000 {
            for _ in 0..rounds {
                half_second += usize::from(rigs[1].stall_once(Duration::from_millis(500)));
            }
        }
        let [k, d] = &mut rigs;
        results.push(serde_json::json!({
            "label": pairing.label,
            "keepalived": {
                "advert_ms": pairing.advert_ms,
                "nominal_ms": Keepalived::nominal_ms(pairing.advert_ms),
                "takeover": stats(&mut k.series.takeover),
                "garp": stats(&mut k.series.garp),
                "idle_cpu_percent": idle_figures[0].0,
                "rss_kib": idle_figures[0].1,
            },
            "duet": {
                "interval_ms": if pairing.duet.interval_ms == 0 { 200 } else { pairing.duet.interval_ms },
                "max_failures": if pairing.duet.max_failures == 0 { 3 } else { pairing.duet.max_failures },
                "tick_ms": pairing.tick_ms,
                "vip": pairing.vip_more,
                "nominal_ms": nominal_duet,
                "takeover": stats(&mut d.series.takeover),
                "detection": stats(&mut d.series.detection),
                "decision": stats(&mut d.series.decision),
                "claimed": stats(&mut d.series.claimed),
                "garp": stats(&mut d.series.garp),
                "idle_cpu_percent": idle_figures[1].0,
                "rss_kib": idle_figures[1].1,
                "stalls_500ms": half_second,
            },
            "stall_rounds": rounds,
            "stalls": stalls,
        }));
    }
    let out = serde_json::json!({ "runs": runs, "pairings": results });
    let path = crate::support::workspace().join("target/takeover-bench.json");
    std::fs::write(&path, out.to_string()).expect("write the bench's results");
    eprintln!("{out:#}");
}
