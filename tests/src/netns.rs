//! Two real `duet` agents in two network namespaces, over real links: a LAN through a bridge
//! namespace (with a gateway namespace answering the inverted heartbeats' pings) and a direct
//! sync cable between them.
//!
//! ```text
//!   [a] lan 10.77.0.1 ──┐                 ┌── lan 10.77.0.2 [b]
//!                       ├── [br] br0 ─────┤
//!   [gw] lan 10.77.0.254┘                 │
//!   [a] sync 10.78.0.1 ─────────────────── sync 10.78.0.2 [b]
//! ```
//!
//! Each test builds its own namespaces (unique names) and removes them on drop, even when it
//! fails. The agents' APIs listen on each namespace's loopback; the test asks them with
//! `ip netns exec <ns> duet status --json`. Needs root; elsewhere the tests say so and skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use duet_core::FailoverState;
use duet_core::api::Status;

use crate::support::{PAIR_KEY, duet_bin, ip, is_root};

pub(crate) const API: &str = "127.0.0.1:7101";
pub(crate) const AGENTS: [&str; 2] = ["agent-a", "agent-b"];

/// Detection settings of a test pair.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    /// 0: the heartbeats and the sync connection use the defaults.
    pub(crate) interval_ms: u64,
    pub(crate) max_failures: u32,
}

/// Fast: a path fails after about 0.8 s.
pub(crate) const FAST: Timing = Timing {
    interval_ms: 200,
    max_failures: 3,
};

/// The namespaces of one test, and its agents.
pub(crate) struct Topology {
    prefix: String,
    pub(crate) dir: tempfile::TempDir,
    agents: [Option<Child>; 2],
    /// Configuration text appended to each agent's file (the VIP tests' `[[vip]]`).
    pub(crate) extra: [String; 2],
    /// Hosts added to the LAN with [`Topology::add_host`].
    hosts: Vec<String>,
    /// Shell commands run before an agent starts, in a mount namespace of its own (the VIP
    /// tests hide libpcap with bind mounts).
    pub(crate) wrap: [Option<String>; 2],
    /// Each agent's tie-break priority (agent-a's higher by default).
    pub(crate) priorities: [u32; 2],
    /// Environment variables each agent starts with.
    pub(crate) env: [Vec<(String, String)>; 2],
    /// Commands between `ip netns exec <ns>` and the agent, each exec'ing the next (so the
    /// child is still the agent): `setpriv` to run it as another user.
    pub(crate) launch: [Vec<String>; 2],
    /// The `duet` binary the agents run (default: this build's).
    pub(crate) bin: Option<PathBuf>,
}

impl Topology {
    pub(crate) fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The agents' namespaces.
    pub(crate) fn agent_ns(&self, i: usize) -> String {
        self.ns(["a", "b"][i])
    }

    pub(crate) fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "duet-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let t = Topology {
            prefix,
            dir: tempfile::tempdir().expect("tempdir"),
            agents: [None, None],
            extra: [String::new(), String::new()],
            hosts: Vec::new(),
            wrap: [None, None],
            priorities: [200, 100],
            env: [Vec::new(), Vec::new()],
            launch: [Vec::new(), Vec::new()],
            bin: None,
        };
        for ns in ["br", "a", "b", "gw"] {
            ip(&["netns", "add", &t.ns(ns)]);
            ip(&["-n", &t.ns(ns), "link", "set", "lo", "up"]);
        }
        let br = t.ns("br");
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        // LAN: each of a, b, gw has `lan`, whose peer `<name>-lan` is a bridge port.
        for (name, addr) in [
            ("a", "10.77.0.1"),
            ("b", "10.77.0.2"),
            ("gw", "10.77.0.254"),
        ] {
            let ns = t.ns(name);
            let port = format!("{name}-lan");
            ip(&[
                "-n", &ns, "link", "add", "lan", "type", "veth", "peer", "name", &port, "netns",
                &br,
            ]);
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &br, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "lan",
            ]);
            ip(&["-n", &ns, "link", "set", "lan", "up"]);
        }
        // The sync cable.
        let (a, b) = (t.ns("a"), t.ns("b"));
        ip(&[
            "-n", &a, "link", "add", "sync", "type", "veth", "peer", "name", "sync", "netns", &b,
        ]);
        ip(&["-n", &a, "addr", "add", "10.78.0.1/30", "dev", "sync"]);
        ip(&["-n", &b, "addr", "add", "10.78.0.2/30", "dev", "sync"]);
        ip(&["-n", &a, "link", "set", "sync", "up"]);
        ip(&["-n", &b, "link", "set", "sync", "up"]);
        t
    }

    /// Adds namespace `name` to the LAN with `addr`/24 on its `lan`; returns its name.
    pub(crate) fn add_host(&mut self, name: &str, addr: &str) -> String {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let br = self.ns("br");
        let port = format!("{name}-lan");
        ip(&[
            "-n", &ns, "link", "add", "lan", "type", "veth", "peer", "name", &port, "netns", &br,
        ]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &br, "link", "set", &port, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "lan",
        ]);
        ip(&["-n", &ns, "link", "set", "lan", "up"]);
        self.hosts.push(name.to_string());
        ns
    }

    /// Writes both agents' configurations (priorities from [`Topology::priorities`]).
    pub(crate) fn configure(&self, timing: Timing) {
        for i in 0..2 {
            let (own, other) = (i + 1, 2 - i);
            let Timing {
                interval_ms,
                max_failures,
            } = timing;
            let timeout_ms = (interval_ms * 3 / 4).max(1);
            let timing = if interval_ms == 0 {
                String::new()
            } else {
                format!(
                    "interval = \"{interval_ms}ms\"\ntimeout = \"{timeout_ms}ms\"\nmax_failures = {max_failures}"
                )
            };
            let mut text = format!(
                r#"
                [agent]
                name = "{name}"
                priority = {priority}
                [buddy]
                name = "{buddy}"
                [api]
                listen = "{API}"
                [peer]
                listen = "0.0.0.0:7201"
                pair_key = "{PAIR_KEY}"
                [sync]
                target = "10.78.0.{other}:7201"
                source = "10.78.0.{own}"
                {timing}
                [status]
                startup_grace = "1s"
                buddy_timeout = "3s"
                [failover]
                startup_wait = "3s"
                min_switch_interval = "5s"
                [state]
                file = "{name}.state"
                [log]
                failover_log = "{name}-failover.log"
                [[heartbeat]]
                kind = "agent"
                target = "10.77.0.{other}:7201"
                source = "10.77.0.{own}"
                {timing}
                [[heartbeat]]
                kind = "inverted"
                target = "10.77.0.254"
                {timing}
                "#,
                name = AGENTS[i],
                buddy = AGENTS[1 - i],
                priority = self.priorities[i],
            );
            text.push_str(&self.extra[i]);
            std::fs::write(self.config(i), text).expect("write config");
        }
    }

    pub(crate) fn config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.toml", AGENTS[i]))
    }

    pub(crate) fn start(&mut self, i: usize) {
        assert!(self.agents[i].is_none(), "{} already runs", AGENTS[i]);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.out", AGENTS[i])))
            .expect("agent output file");
        // `ip netns exec` execs duet: the child's pid is the agent's.
        let mut command = match &self.wrap[i] {
            None => Command::new("ip"),
            Some(wrap) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(format!("{wrap} && exec ip \"$@\""))
                    .arg("sh");
                c
            }
        };
        let child = command
            .args(["netns", "exec", &self.agent_ns(i)])
            .args(&self.launch[i])
            .arg(self.bin.clone().unwrap_or_else(duet_bin))
            .arg("run")
            .arg("--config")
            .arg(self.config(i))
            .envs(self.env[i].iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn duet in its namespace");
        self.agents[i] = Some(child);
    }

    /// Starts both agents and waits for one to be Online; returns (Online, Offline). Usually
    /// agent-a (its priority is higher); on a loaded machine agent-b may have been alone past
    /// the start-up wait and taken the pair. Either is right.
    pub(crate) fn start_pair(&mut self) -> (usize, usize) {
        self.start(0);
        self.start(1);
        self.until(Duration::from_secs(20), "start: one Online", one_online);
        if self.states()[0] == ONLINE {
            (0, 1)
        } else {
            (1, 0)
        }
    }

    /// Agent i's process id, while it runs.
    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.agents[i].as_ref().map(Child::id)
    }

    /// Sends `signal` to agent `i` and waits for it to exit.
    pub(crate) fn signal(&mut self, i: usize, signal: &str) {
        let mut child = self.agents[i].take().expect("the agent runs");
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let _ = child.wait();
    }

    /// Writes agent i's remembered-state file, as an agent that stopped in `state` leaves it.
    pub(crate) fn remember(&self, i: usize, state: FailoverState) {
        let path = self.dir.path().join(format!("{}.state", AGENTS[i]));
        let remembered = duet_host::state_file::Remembered { state, at: 0 };
        duet_host::state_file::write(&path, remembered).expect("write the state file");
    }

    /// Stops or starts the gateway host: its LAN port on the bridge goes down (or up).
    pub(crate) fn gateway(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns("br"), "link", "set", "gw-lan", state]);
    }

    /// Whether agent i's namespace has the test VIP (10.77.0.100/24) on its LAN NIC.
    pub(crate) fn holds_vip(&self, i: usize) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.agent_ns(i), "-4", "-o", "addr", "show"])
            .args(["dev", "lan"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains("10.77.0.100/24")
    }

    /// How many state changes agent i's failover log holds.
    pub(crate) fn state_changes(&self, i: usize) -> usize {
        let path = self.dir.path().join(format!("{}-failover.log", AGENTS[i]));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .matches("Failover Status => ")
            .count()
    }

    fn remove_state_files(&self) {
        for name in AGENTS {
            let _ = std::fs::remove_file(self.dir.path().join(format!("{name}.state")));
        }
    }

    /// Sets a link up or down: `lan` of agent i (its bridge port, as a pulled cable) or `sync`.
    pub(crate) fn link(&self, i: usize, which: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        match which {
            "lan" => ip(&[
                "-n",
                &self.ns("br"),
                "link",
                "set",
                &format!("{}-lan", ["a", "b"][i]),
                state,
            ]),
            _ => ip(&["-n", &self.agent_ns(i), "link", "set", which, state]),
        }
    }

    /// Agent i's status, if it answers.
    pub(crate) fn status(&self, i: usize) -> Option<Status> {
        self.agents[i].as_ref()?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.agent_ns(i)])
            .arg(duet_bin())
            .args(["status", "--json", "--api", API])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Agent i's event log entries with this code, as `duet events --json` prints them.
    pub(crate) fn events(&self, i: usize, code: &str) -> Option<String> {
        self.agents[i].as_ref()?;
        ns_events(&self.agent_ns(i), code, API)
    }

    /// Each running agent's own state (None: not running or not answering).
    pub(crate) fn states(&self) -> [Option<FailoverState>; 2] {
        [0, 1].map(|i| {
            self.status(i)
                .and_then(|s| s.decision.map(|d| d.state.state))
        })
    }

    /// What the agents' logs say, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut all = String::new();
        for name in AGENTS {
            for file in [format!("{name}-failover.log"), format!("{name}.out")] {
                let text = std::fs::read_to_string(self.dir.path().join(&file)).unwrap_or_default();
                all.push_str(&format!("--- {file}\n{text}"));
            }
        }
        all
    }

    /// Polls until `want` holds, for at most `within`; never two Online meanwhile.
    pub(crate) fn until(
        &self,
        within: Duration,
        what: &str,
        want: impl Fn([Option<FailoverState>; 2]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let states = self.states();
            self.assert_not_two_online(states, what);
            if want(states) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}; states {states:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Watches for `during`: the states must stay `expected` throughout.
    pub(crate) fn steady(
        &self,
        during: Duration,
        what: &str,
        expected: [Option<FailoverState>; 2],
    ) {
        let start = Instant::now();
        while start.elapsed() < during {
            let states = self.states();
            assert_eq!(states, expected, "{what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_not_two_online(&self, states: [Option<FailoverState>; 2], what: &str) {
        assert!(
            states != [Some(FailoverState::Online); 2],
            "two agents Online ({what})\n{}",
            self.logs()
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in self.agents.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in ["a", "b", "gw", "br"]
            .into_iter()
            .chain(self.hosts.iter().map(String::as_str))
        {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
    }
}

pub(crate) const ONLINE: Option<FailoverState> = Some(FailoverState::Online);
pub(crate) const OFFLINE: Option<FailoverState> = Some(FailoverState::Offline);

/// The states with exactly agent `online` Online.
pub(crate) fn with(online: usize) -> [Option<FailoverState>; 2] {
    let mut s = [OFFLINE; 2];
    s[online] = ONLINE;
    s
}

pub(crate) fn one_online(s: [Option<FailoverState>; 2]) -> bool {
    matches!(s, [ONLINE, OFFLINE] | [OFFLINE, ONLINE])
}

/// The bound for a takeover after a failure: detection (interval × (max + 1)), the buddy
/// report's age, preparing and the ticks, with room for a loaded 2-core machine.
pub(crate) const TAKEOVER: Duration = Duration::from_secs(12);

#[test]
fn pair_in_namespaces_survives_cuts_kills_and_heals() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    t.configure(FAST);
    let (p, q) = t.start_pair();

    // Only the sync cable cut: the LAN heartbeats still prove the buddy alive. No switch.
    t.link(p, "sync", false);
    t.steady(Duration::from_secs(3), "sync cut: no switch", with(p));
    let sync_row = t
        .status(p)
        .and_then(|s| s.pair)
        .and_then(|r| r.local.rows.into_iter().find(|r| r.key == "sync"))
        .expect("the Online agent shows the Sync Connection row");
    assert_eq!(sync_row.value, "Not Available");
    t.link(p, "sync", true);

    // The Online agent's LAN cable pulled, sync up: it is isolated (its gateway is gone) and
    // hands over through the sync cable. Never two Online; exactly one again within the bound.
    t.link(p, "lan", false);
    t.until(TAKEOVER, "LAN cut: handover", |s| s == with(q));
    t.link(p, "lan", true);
    t.steady(Duration::from_secs(4), "LAN healed: no fail-back", with(q));

    // Both cables of the Online agent (now q) pulled: p takes over, and q, isolated, goes
    // Offline.
    t.link(q, "lan", false);
    t.link(q, "sync", false);
    t.until(
        TAKEOVER,
        "both links cut: the other Online, the isolated one Offline",
        |s| s == with(p),
    );
    t.link(q, "lan", true);
    t.link(q, "sync", true);
    t.steady(
        Duration::from_secs(4),
        "links healed: no fail-back",
        with(p),
    );

    // kill -9 of the Online agent: the other takes over; the old one, restarted, stays Offline.
    t.signal(p, "-KILL");
    t.until(TAKEOVER, "kill -9: the other Online", |s| s[q] == ONLINE);
    t.start(p);
    t.until(Duration::from_secs(20), "restarted", |s| s == with(q));
    t.steady(Duration::from_secs(4), "restarted: no fail-back", with(q));

    // Both columns on each agent, green, and `duet status` exits 0 on a healthy pair.
    for i in 0..2 {
        let status = t.status(i).expect("status");
        let pair = status.pair.expect("pair report");
        assert_eq!(pair.buddy.agent, AGENTS[1 - i], "the buddy's column");
        assert!(
            pair.buddy.rows.iter().any(|r| r.key == "failover-status"),
            "the buddy's column has its rows"
        );
    }
    crate::support::eventually(Duration::from_secs(10), "duet status exits 0", || {
        let code = Command::new("ip")
            .args(["netns", "exec", &t.agent_ns(q)])
            .arg(duet_bin())
            .args(["status", "--api", API])
            .stdout(Stdio::null())
            .status()
            .ok()?
            .code();
        (code == Some(0)).then_some(())
    });
}

#[test]
fn sigterm_hands_over_before_detection_could_fire() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    // Detection: 1 s × (10 + 1) = 11 s.
    t.configure(Timing {
        interval_ms: 1_000,
        max_failures: 10,
    });
    let (p, q) = t.start_pair();
    let sent = Instant::now();
    // `signal` returns once the agent has exited: the handover is done by then.
    t.signal(p, "-TERM");
    let took = t.until(Duration::from_secs(10), "SIGTERM: the other Online", |s| {
        s[q] == ONLINE
    });
    let took = took.max(sent.elapsed());
    assert!(
        took < Duration::from_secs(10),
        "the handover took {took:?}, longer than heartbeat detection could"
    );
    let log = std::fs::read_to_string(t.dir.path().join(format!("{}-failover.log", AGENTS[p])))
        .unwrap_or_default();
    assert!(
        log.contains("Handover complete"),
        "the stopped agent's log says the handover completed:\n{log}"
    );
}

#[test]
fn twenty_simultaneous_starts_elect_one_online_each_time() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    t.configure(FAST);
    for round in 0..20 {
        t.remove_state_files();
        t.start(0);
        t.start(1);
        t.until(
            Duration::from_secs(20),
            &format!("round {round}: one Online"),
            one_online,
        );
        let states = t.states();
        t.steady(
            Duration::from_millis(500),
            &format!("round {round}: the elected agent stays Online"),
            states,
        );
        t.signal(0, "-KILL");
        t.signal(1, "-KILL");
    }
}

/// The event log entries with this code of the agent whose API is `api` in namespace `ns`, as
/// `duet events --json` prints them.
pub(crate) fn ns_events(ns: &str, code: &str, api: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(duet_bin())
        .args(["events", "--json", "--api", api, "--code", code])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Agent i's local row whose label starts with `label`, from its status.
pub(crate) fn local_row(t: &Topology, i: usize, label: &str) -> Option<duet_core::Row> {
    t.status(i)?
        .pair?
        .local
        .rows
        .into_iter()
        .find(|r| r.label.starts_with(label))
}

/// The `[[vip]]` of the failure tests: on the LAN NIC, a short lease.
pub(crate) const VIP_CONFIG: &str =
    "\n[[vip]]\nnic = \"lan\"\naddress = \"10.77.0.100/24\"\nlease = \"3s\"\nrenew = \"1s\"\n";

/// Which agents' namespaces hold the VIP.
pub(crate) fn vip_holders(t: &Topology) -> [bool; 2] {
    [0, 1].map(|i| t.holds_vip(i))
}

/// A fast pair with a VIP, started, the VIP on the Online agent: (Online, Offline).
fn pair_with_the_vip_online(t: &mut Topology) -> (usize, usize) {
    t.extra = [VIP_CONFIG.into(), VIP_CONFIG.into()];
    t.configure(FAST);
    let (p, q) = t.start_pair();
    let mut holders = [false; 2];
    holders[p] = true;
    t.until(TAKEOVER, "the VIP on the Online agent", |_| {
        vip_holders(t) == holders
    });
    (p, q)
}

#[test]
fn a_cut_lan_link_hands_over_once_and_its_inverted_row_says_host_unreachable() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    let (p, q) = pair_with_the_vip_online(&mut t);

    // The Online agent's LAN cable pulled (its NIC loses carrier): ARP for the gateway gives
    // up and the kernel answers its pings with "host unreachable". That is no reply: the
    // agent is isolated and hands over through the sync cable, once.
    t.link(p, "lan", false);
    t.until(TAKEOVER, "LAN cut: handover", |s| s == with(q));
    let mut unreachable = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let states = t.states();
        assert_eq!(
            states,
            with(q),
            "LAN cut: exactly one Online, no claim\n{}",
            t.logs()
        );
        let row = local_row(&t, p, "Inverted Heartbeat").expect("the inverted heartbeat row");
        assert_eq!(
            row.value, "Failing",
            "the cut agent's inverted row: {row:?}"
        );
        if row
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("host unreachable"))
        {
            unreachable.get_or_insert(row);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let row = unreachable.unwrap_or_else(|| {
        panic!(
            "the inverted row never said \"host unreachable\"\n{}",
            t.logs()
        )
    });
    assert!(
        row.reason
            .as_deref()
            .is_some_and(|r| r.contains("from 10.77.0.1")),
        "the ICMP error names who sent it: {row:?}"
    );
    assert!(vip_holders(&t)[q], "the VIP followed the Online agent");

    t.link(p, "lan", true);
    t.steady(Duration::from_secs(4), "LAN healed: no fail-back", with(q));
}

#[test]
fn the_gateway_down_for_both_agents_moves_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    let (p, q) = pair_with_the_vip_online(&mut t);
    let expected = with(p);
    let holders = vip_holders(&t);
    t.steady(Duration::from_secs(2), "settled", expected);
    let changes = [t.state_changes(0), t.state_changes(1)];

    // Both agents lose their outside target at once (each at its own heartbeat phase), while
    // they still see each other: nobody moves, the Online agent stays Online.
    t.gateway(false);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        assert_eq!(
            t.states(),
            expected,
            "gateway down: no state change\n{}",
            t.logs()
        );
        assert_eq!(
            vip_holders(&t),
            holders,
            "gateway down: the VIP stays\n{}",
            t.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let isolated = local_row(&t, p, "Inverted Heartbeat").expect("the inverted row");
    assert_eq!(isolated.value, "Failing", "{isolated:?}");
    t.gateway(true);
    t.until(
        Duration::from_secs(10),
        "gateway back: the rows recover",
        |_| local_row(&t, q, "Inverted Heartbeat").is_some_and(|r| r.value == "Success"),
    );
    t.steady(
        Duration::from_secs(3),
        "gateway back: no state change",
        expected,
    );
    assert_eq!(
        [t.state_changes(0), t.state_changes(1)],
        changes,
        "no state change in either failover log\n{}",
        t.logs()
    );
    assert_eq!(vip_holders(&t), holders);
}

#[test]
fn a_remembered_online_agent_wins_ten_co_starts_over_a_higher_priority() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    // agent-b has the higher priority; agent-a was Online before the pair stopped.
    t.priorities = [100, 200];
    t.configure(FAST);
    for round in 0..10 {
        t.remember(0, FailoverState::Online);
        t.remember(1, FailoverState::Offline);
        t.start(0);
        t.start(1);
        t.until(
            Duration::from_secs(20),
            &format!("round {round}: one Online"),
            one_online,
        );
        assert_eq!(
            t.states(),
            [ONLINE, OFFLINE],
            "round {round}: agent-a remembered Online and wins\n{}",
            t.logs()
        );
        t.signal(0, "-KILL");
        t.signal(1, "-KILL");
    }
}
