//! duet run as a service: the Debian package (`cargo xtask dist`, unpacked with `dpkg-deb -x`),
//! its unit checked by `systemd-analyze`, its template refused until filled in; the packaged
//! binary run without root, holding only CAP_NET_ADMIN and CAP_NET_RAW as the unit gives them,
//! in the namespace topology of `netns` with a virtual IP; systemd's notify protocol read
//! from a real socket.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{TAKEOVER, Topology, VIP_CONFIG, local_row, vip_holders};
use crate::support::{AgentSpec, Agents, duet_bin, eventually, free_port, is_root, status_json};

/// The unprivileged user the agents run as ("nobody").
const UID: u32 = 65534;
/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
const NET_ADMIN_AND_NET_RAW: u64 = (1 << 12) | (1 << 13);

/// `setpriv` arguments: user `UID`, no groups, exactly `caps` (e.g. "+net_admin,+net_raw")
/// as ambient capabilities — what `User=` with `AmbientCapabilities=` gives a service.
fn as_user_with(caps: &str) -> Vec<String> {
    [
        "setpriv".to_string(),
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--clear-groups".into(),
        format!("--inh-caps=-all{caps}"),
        format!("--ambient-caps=-all{caps}"),
        format!("--bounding-set=-all{caps}"),
        "--".into(),
    ]
    .into()
}

/// The topology's folder handed to the unprivileged user: the agents write their state file,
/// failover log and event log there.
fn give_folder(t: &Topology) {
    std::os::unix::fs::chown(t.dir.path(), Some(UID), Some(UID)).expect("chown the test folder");
}

/// The `Uid:` line and the effective capabilities of process `pid`.
fn identity(pid: u32) -> (String, u64) {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent's status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .trim()
        .to_string();
    let eff = duet_base::caps::parse_mask(&status, "CapEff").expect("CapEff line");
    (uid, eff)
}

/// Runs a pair with a VIP from `bin` as user `UID` holding only NET_ADMIN and NET_RAW:
/// asserts who the agents are, that the VIP is on the Online agent, that kill -9 of that
/// agent moves it to the other, and that `duet release-vip` (the unit's `ExecStopPost`)
/// removes it after the other is killed too, without waiting for the lease.
fn non_root_pair_moves_the_vip_on_kill_9(bin: &Path) {
    let mut t = Topology::new();
    give_folder(&t);
    t.bin = Some(bin.to_path_buf());
    t.launch = [0, 1].map(|_| as_user_with(",+net_admin,+net_raw"));
    let plugins = t.dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("the plugins folder");
    std::fs::copy(crate::support::HELLO_PLUGIN, plugins.join("hello.wasm")).expect("copy");
    let extra = format!("{VIP_CONFIG}\n[plugins]\ndir = \"{}\"\n", plugins.display());
    t.extra = [extra.clone(), extra];
    t.configure(crate::netns::FAST);
    let (p, q) = t.start_pair();
    for i in [p, q] {
        let pid = t.pid(i).expect("the agent runs");
        // Its plugins' process: the same user, no capability at all.
        let plugins = crate::support::eventually(TAKEOVER, "the plugins' process", || {
            crate::support::children_too(pid).get(1).copied()
        });
        let (uid, caps) = identity(plugins);
        assert!(
            uid.split_whitespace().all(|id| id == UID.to_string()),
            "the plugins' process runs as {UID}: Uid {uid}"
        );
        assert_eq!(
            caps, 0,
            "the plugins' process holds no capability: {caps:#x}"
        );
        let (uid, caps) = identity(pid);
        assert!(
            uid.split_whitespace().all(|id| id == UID.to_string()),
            "the agent runs as {UID}, not root: Uid {uid}"
        );
        assert_eq!(
            caps, NET_ADMIN_AND_NET_RAW,
            "the agent's effective capabilities are exactly NET_ADMIN and NET_RAW: {caps:#x}"
        );
    }
    let mut holders = [false; 2];
    holders[p] = true;
    t.until(TAKEOVER, "the VIP on the Online agent", |_| {
        vip_holders(&t) == holders
    });
    let row = local_row(&t, p, "Virtual IP").expect("the VIP row");
    assert_eq!(row.value, "Held", "{row:?}");
    assert!(
        row.reason.is_none(),
        "with both capabilities nothing is missing: {row:?}"
    );

    t.signal(p, "-KILL");
    let mut moved = [false; 2];
    moved[q] = true;
    t.until(TAKEOVER, "kill -9: the VIP on the other agent", |s| {
        s[q] == crate::netns::ONLINE && vip_holders(&t) == moved
    });

    // The agent killed, its VIP still leased for up to 3 s: ExecStopPost removes it now.
    t.signal(q, "-KILL");
    assert!(t.holds_vip(q), "the lease has not lapsed yet");
    let out = crate::support::output(
        Command::new("ip")
            .args(["netns", "exec", &t.agent_ns(q)])
            .args(as_user_with(",+net_admin,+net_raw"))
            .arg(bin)
            .args(["release-vip", "--config"])
            .arg(t.config(q)),
    );
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "10.77.0.100/24 on lan: removed"
    );
    assert!(!t.holds_vip(q), "release-vip removed the VIP");
}

#[test]
fn a_missing_capability_is_a_fault_on_the_vip_row_that_names_it() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces and setpriv (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    give_folder(&t);
    // CAP_NET_RAW only: ICMP and ARP work, the address cannot be added.
    t.launch[0] = as_user_with(",+net_raw");
    t.extra[0] = VIP_CONFIG.into();
    t.configure(crate::netns::FAST);
    t.start(0);
    let row = eventually(Duration::from_secs(20), "the VIP row", || {
        local_row(&t, 0, "Virtual IP").filter(|r| r.reason.is_some())
    });
    let reason = row.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("missing capability CAP_NET_ADMIN:"),
        "the row names the missing capability: {row:?}"
    );
    assert!(
        !reason.contains("no ARP check"),
        "it holds CAP_NET_RAW: ARP works: {row:?}"
    );
    // The inverted heartbeat works with CAP_NET_RAW: the gateway answers.
    let inverted = eventually(Duration::from_secs(10), "the inverted row", || {
        local_row(&t, 0, "Inverted Heartbeat").filter(|r| r.value == "Success")
    });
    assert_eq!(inverted.failures, Some(0), "{inverted:?}");
    assert!(
        !t.holds_vip(0),
        "without CAP_NET_ADMIN the VIP was never added"
    );
}

/// The notifications one agent sent to its `NOTIFY_SOCKET`, each with when it arrived.
struct NotifySocket {
    path: std::path::PathBuf,
    heard: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    /// Binds `path` and records every datagram on a thread of its own (it ends with the test
    /// process; a read timeout keeps it from blocking anything).
    fn bind(path: std::path::PathBuf) -> NotifySocket {
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = heard.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                into.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((Instant::now(), text));
            }
        });
        NotifySocket { path, heard }
    }

    fn heard(&self) -> Vec<(Instant, String)> {
        self.heard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// When the last watchdog ping arrived.
    fn last_ping(&self) -> Option<Instant> {
        self.heard()
            .into_iter()
            .rev()
            .find(|(_, m)| m == "WATCHDOG=1")
            .map(|(at, _)| at)
    }

    /// Watchdog pings that arrived after `since`.
    fn pings_since(&self, since: Instant) -> usize {
        self.heard()
            .iter()
            .filter(|(at, m)| *at > since && m == "WATCHDOG=1")
            .count()
    }
}

#[test]
fn systemd_hears_ready_after_the_first_decision_pings_fed_by_the_loop_and_stopping_on_handover() {
    use duet_core::FailoverState::{Offline, Online};
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = [free_port(), free_port()];
    let names = ["agent-a", "agent-b"];
    let sockets = [0, 1].map(|i| NotifySocket::bind(dir.path().join(format!("notify-{i}"))));
    let freeze = [0, 1].map(|i| dir.path().join(format!("freeze-{i}")));
    let children = [0, 1].map(|i| {
        let config = AgentSpec::new(
            names[i],
            names[1 - i],
            [200, 100][i],
            ports[i],
            ports[1 - i],
        )
        .write(dir.path());
        Command::new(duet_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("NOTIFY_SOCKET", &sockets[i].path)
            // A ping every 250 ms.
            .env("WATCHDOG_USEC", "1000000")
            .env("DUET_TEST_FREEZE", &freeze[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn duet")
    });
    let mut agents = Agents(children.into());
    let state = |i: usize| status_json(ports[i])?.decision.map(|d| d.state.state);

    // READY once the first decision is taken, saying the state; no ping before it.
    for (i, socket) in sockets.iter().enumerate() {
        let heard = eventually(Duration::from_secs(30), "READY=1", || {
            let heard = socket.heard();
            heard
                .iter()
                .any(|(_, m)| m.contains("READY=1"))
                .then_some(heard)
        });
        let ready = heard
            .iter()
            .position(|(_, m)| m.contains("READY=1"))
            .expect("READY");
        let text = &heard[ready].1;
        assert!(
            text.contains("STATUS=Offline, LED ")
                || text.contains("STATUS=Online, LED ")
                || text.contains("STATUS=Preparing to go online, LED "),
            "{}: READY comes with the decided state: {text:?}",
            names[i]
        );
        assert!(
            heard[..ready].iter().all(|(_, m)| !m.contains("WATCHDOG")),
            "no watchdog ping before READY: {heard:?}"
        );
    }
    // Which agent is Online, while exactly one is.
    let one_online = || match [state(0), state(1)] {
        [Some(Online), Some(Offline)] => Some(0),
        [Some(Offline), Some(Online)] => Some(1),
        _ => None,
    };
    let p = eventually(Duration::from_secs(30), "one Online", one_online);
    eventually(Duration::from_secs(10), "STATUS says Online", || {
        sockets[p]
            .heard()
            .iter()
            .any(|(_, m)| m.starts_with("STATUS=Online, LED "))
            .then_some(())
    });

    // Pings from the decision loop; frozen, it stops feeding the watchdog.
    let now = Instant::now();
    eventually(Duration::from_secs(5), "watchdog pings", || {
        (sockets[p].pings_since(now) >= 3).then_some(())
    });
    std::fs::write(&freeze[p], "").expect("freeze the decision loop");
    let frozen = Instant::now();
    // Late after the fence bound (600 ms), then no ping: a quiet 2 s within 4 s.
    eventually(Duration::from_secs(4), "no ping for 2 s", || {
        sockets[p]
            .last_ping()
            .is_some_and(|at| at.elapsed() > Duration::from_secs(2))
            .then_some(())
    });
    let last = sockets[p].last_ping().expect("pings");
    assert!(
        last.saturating_duration_since(frozen) < Duration::from_secs(2),
        "the pings stopped within the fence bound and a period: {:?} after the freeze",
        last.saturating_duration_since(frozen)
    );
    std::fs::remove_file(&freeze[p]).expect("thaw");
    let thawed = Instant::now();
    eventually(Duration::from_secs(5), "pings again once it ticks", || {
        (sockets[p].pings_since(thawed) >= 2).then_some(())
    });

    // SIGTERM to whichever agent is Online now: STOPPING while it hands over, before it exits.
    let online = eventually(Duration::from_secs(20), "one Online again", one_online);
    let other = 1 - online;
    let child = &mut agents.0[online];
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    let exited = eventually(Duration::from_secs(20), "the agent exits", || {
        child.try_wait().ok().flatten().map(|_| Instant::now())
    });
    let heard = sockets[online].heard();
    let (at, stopping) = heard
        .iter()
        .find(|(_, m)| m.contains("STOPPING=1"))
        .unwrap_or_else(|| panic!("STOPPING=1 was sent: {heard:?}"));
    assert!(
        stopping.contains(&format!(
            "STATUS=Stopping: handing over to {}",
            names[other]
        )),
        "{stopping:?}"
    );
    assert!(*at < exited, "STOPPING came before the exit");
    let log = std::fs::read_to_string(dir.path().join(format!("{}-failover.log", names[online])))
        .unwrap_or_default();
    assert!(log.contains("Handover complete"), "{log}");
}

/// The Debian package of this build, unpacked with `dpkg-deb -x` into a scratch folder (once
/// per test process; reused machines keep nothing of it).
struct Unpacked {
    root: tempfile::TempDir,
    deb: std::path::PathBuf,
}

impl Unpacked {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.path().join(rel)
    }
}

/// `cargo xtask dist --debug --no-build` (the debug binary this build made, so wasmtime is
/// built once per run), unpacked.
fn package() -> &'static Unpacked {
    static PACKAGE: std::sync::OnceLock<Unpacked> = std::sync::OnceLock::new();
    PACKAGE.get_or_init(|| {
        let xtask = duet_bin().with_file_name("xtask");
        assert!(
            xtask.exists(),
            "{} is missing: `cargo build --bins` (or `cargo xtask test`) builds it",
            xtask.display()
        );
        let printed =
            crate::support::output(Command::new(&xtask).args(["dist", "--debug", "--no-build"]));
        let deb = String::from_utf8_lossy(&printed)
            .lines()
            .last()
            .map(|l| std::path::PathBuf::from(l.trim()))
            .expect("xtask dist prints the .deb's path");
        let root = tempfile::tempdir().expect("tempdir");
        // The unprivileged agents run the binary from here.
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        crate::support::output(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(root.path()),
        );
        Unpacked { root, deb }
    })
}

/// The template filled in as an operator would.
fn fill_in(template: &str) -> String {
    let mut text = template.to_string();
    let placeholder = format!("= \"{}", duet_host::config::FILL_IN);
    for value in [
        "db-1",
        "db-2",
        "0123456789abcdef0123456789abcdef",
        "10.0.0.2",
    ] {
        text = text.replacen(&placeholder, &format!("= \"{value}"), 1);
    }
    text
}

#[test]
fn the_package_ships_a_verified_hardened_unit_and_a_template_that_refuses_to_start_unfilled() {
    let pkg = package();
    for file in [
        "usr/bin/duet",
        "usr/lib/systemd/system/duet.service",
        "usr/lib/sysusers.d/duet.conf",
        "etc/duet/duet.toml",
        "usr/share/man/man1/duet.1.gz",
        "usr/share/man/man1/duet-run.1.gz",
        "usr/share/bash-completion/completions/duet",
        "usr/share/zsh/vendor-completions/_duet",
        "usr/share/fish/vendor_completions.d/duet.fish",
        "usr/share/doc/duet/install.md",
        "usr/share/doc/duet/duet.example.toml",
        "usr/share/doc/duet/monitoring/duet-alerts.yml",
        "usr/share/doc/duet/monitoring/duet-dashboard.json",
    ] {
        assert!(pkg.path(file).is_file(), "the package holds /{file}");
    }
    let conffiles = crate::support::output(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(&pkg.deb)
            .arg("conffiles"),
    );
    assert_eq!(
        String::from_utf8_lossy(&conffiles).trim(),
        "/etc/duet/duet.toml"
    );
    let sysusers = std::fs::read_to_string(pkg.path("usr/lib/sysusers.d/duet.conf")).expect("read");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u duet ")),
        "{sysusers}"
    );

    // The template is refused, every key to fill in named; filled in, it is valid.
    let duet = pkg.path("usr/bin/duet");
    let template = pkg.path("etc/duet/duet.toml");
    let out = Command::new(&duet)
        .arg("check-config")
        .arg(&template)
        .output()
        .expect("duet check-config");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for key in [
        "agent.name",
        "buddy.name",
        "peer.pair_key",
        "heartbeat[0].target",
    ] {
        assert!(
            said.contains(&format!("{key}: still \"FILL-IN\"")),
            "the refusal names {key}: {said}"
        );
    }
    let out = Command::new(&duet)
        .args(["run", "--config"])
        .arg(&template)
        .output()
        .expect("duet run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "duet run refuses the template too"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("fill in the pair"));
    let text = std::fs::read_to_string(&template).expect("read the template");
    let scratch = tempfile::tempdir().expect("tempdir");
    let filled = scratch.path().join("duet.toml");
    std::fs::write(&filled, fill_in(&text)).expect("write");
    let out = Command::new(&duet)
        .arg("check-config")
        .arg(&filled)
        .output()
        .expect("duet check-config");
    assert!(
        out.status.success(),
        "the template filled in is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The unit: notify with a watchdog longer than the fence bound, only two capabilities,
    // the families it needs, no MemoryDenyWriteExecute (wasmtime compiles code).
    let unit = std::fs::read_to_string(pkg.path("usr/lib/systemd/system/duet.service"))
        .expect("read the unit");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit sets {key}"))
            .to_string()
    };
    assert_eq!(value("Type"), "notify");
    assert_eq!(value("User"), "duet");
    assert_eq!(value("AmbientCapabilities"), "CAP_NET_ADMIN CAP_NET_RAW");
    assert_eq!(value("CapabilityBoundingSet"), "CAP_NET_ADMIN CAP_NET_RAW");
    assert!(value("ExecStopPost").ends_with("duet release-vip --config /etc/duet/duet.toml"));
    let families = value("RestrictAddressFamilies");
    for family in ["AF_PACKET", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "{family} allowed: {families}"
        );
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("MemoryDenyWriteExecute")),
        "wasmtime compiles code: no MemoryDenyWriteExecute"
    );
    let watchdog: u64 = value("WatchdogSec")
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("WatchdogSec in seconds");
    let config = duet_host::config::parse(&fill_in(&text), scratch.path()).expect("valid");
    let bound = duet_host::fence_bound(&config.kernel);
    assert!(
        Duration::from_secs(watchdog) > bound * 4,
        "WatchdogSec ({watchdog} s) is well past the fence bound ({bound:?})"
    );

    // systemd-analyze, against the unpacked tree (systemd is not PID 1 here): the system's
    // units beside it so its dependencies resolve, its man pages on MANPATH.
    let root = scratch.path().join("root");
    crate::support::output(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", pkg.root.path().display()))
            .arg(&root),
    );
    crate::support::output(
        Command::new("cp")
            .args(["-rn", "/usr/lib/systemd/system/."])
            .arg(root.join("usr/lib/systemd/system")),
    );
    // ExecReload's /bin/kill, from procps (a dependency of the package).
    std::fs::create_dir_all(root.join("bin")).expect("bin");
    crate::support::output(
        Command::new("cp")
            .args(["-n", "/bin/kill"])
            .arg(root.join("bin/kill")),
    );
    let unit_path = root.join("usr/lib/systemd/system/duet.service");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(&unit_path)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .expect("systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify is clean: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        // 2.5 of 10: "OK" in systemd's words (docs/decisions.md).
        .arg("--threshold=25")
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    let level = report
        .lines()
        .find_map(|l| l.strip_prefix("→ Overall exposure level for duet.service: "))
        .unwrap_or_else(|| panic!("an overall exposure level: {report}"));
    assert!(
        out.status.success(),
        "exposure {level}, above the threshold of 2.5\n{report}"
    );
}

#[test]
fn the_packaged_binary_runs_a_non_root_pair_whose_vip_moves_on_kill_9_and_release_vip_removes_it() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces and setpriv (CI runs as root)");
        return;
    }
    let duet = package().path("usr/bin/duet");
    non_root_pair_moves_the_vip_on_kill_9(&duet);
}

/// A self-signed certificate for 127.0.0.1 (openssl): `<dir>/<name>.crt` and `.key`.
fn certificate(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    crate::support::output(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            // A self-signed certificate trusted as itself must not be a CA's (webpki).
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .stderr(Stdio::null()),
    );
    (crt, key)
}

/// `duet status --json` with these arguments: the status, when it was read over the API.
fn status_over(args: &[&std::ffi::OsStr]) -> Option<duet_core::api::Overview> {
    let out = Command::new(duet_bin())
        .args(["status", "--json"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn the_api_over_tls_serves_status_and_the_web_ui_refuses_plain_http_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, first_key) = certificate(dir.path(), "first");
    let (api_crt, api_key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    std::fs::copy(&first, &api_crt).expect("copy");
    std::fs::copy(&first_key, &api_key).expect("copy");
    let port = free_port();
    let extra = "[api.tls]\ncert = \"api.crt\"\nkey = \"api.key\"\nreload_interval = \"200ms\"\n";
    let config = AgentSpec {
        extra: extra.into(),
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(dir.path());
    let _agents = Agents(vec![crate::support::spawn(&config)]);
    let api = format!("127.0.0.1:{port}");
    let with_ca = |ca: &Path| {
        status_over(&[
            "--api".as_ref(),
            api.as_ref(),
            "--tls-ca".as_ref(),
            ca.as_os_str(),
        ])
    };

    // `duet status` over HTTPS: from the configuration (its certificate trusted), or named.
    let status = eventually(
        Duration::from_secs(30),
        "duet status --config over https",
        || status_over(&["--config".as_ref(), config.as_os_str()]),
    );
    assert_eq!(status.status.pair.expect("pair").local.agent, "agent-a");
    assert!(with_ca(&first).is_some(), "--api with --tls-ca");
    assert!(
        status_over(&["--api".as_ref(), api.as_ref()]).is_none(),
        "plain HTTP gets no status from the TLS port"
    );

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&api).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP is refused: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }

    // The web UI over HTTPS: the page and the wasm it loads, from the same origin.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let pem = std::fs::read(&first).expect("read");
            let client = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
                .https_only(true)
                .no_proxy()
                .build()
                .expect("client");
            let page = client
                .get(format!("https://{api}/"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("the page over https")
                .text()
                .await
                .expect("page");
            let at = page
                .find("/duet-web_bg.wasm?v=")
                .expect("the page loads the wasm");
            let url: String = page[at..]
                .chars()
                .take_while(|c| !matches!(c, '"' | '\''))
                .collect();
            let wasm = client
                .get(format!("https://{api}{url}"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("the wasm over https")
                .bytes()
                .await
                .expect("wasm");
            assert!(wasm.starts_with(b"\0asm"), "the web UI's wasm");
        });

    // A new certificate replaces the files (key first: a half-written pair is refused and
    // the running one kept): new connections get it, without a restart.
    let (second, second_key) = certificate(dir.path(), "second");
    std::fs::copy(&second_key, &api_key).expect("copy");
    assert!(
        with_ca(&first).is_some(),
        "the key alone changed: still the first"
    );
    std::fs::copy(&second, &api_crt).expect("copy");
    eventually(
        Duration::from_secs(10),
        "the second certificate served",
        || with_ca(&second),
    );
    assert!(with_ca(&first).is_none(), "the first is no longer served");
    // A broken certificate file is refused: the second stays in use.
    std::fs::write(&api_crt, "not a certificate").expect("write");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        assert!(
            with_ca(&second).is_some(),
            "the running certificate is kept"
        );
    }
}

/// The `duet_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("duet_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The metric families an agent's `/metrics` declares (`# TYPE` lines).
fn served_families(port: u16) -> std::collections::BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let text = eventually(Duration::from_secs(30), "/metrics", || {
        let text = runtime.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()
        })?;
        text.contains("duet_failover_state").then_some(text)
    });
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_the_dashboard_and_rules_use_only_served_metrics() {
    let dir = crate::support::workspace().join("docs/monitoring");
    for args in [
        ["check", "rules", "duet-alerts.yml"],
        ["test", "rules", "duet-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian prometheus; `cargo xtask test` installs it)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(dir.join("duet-alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("duet-alerts.test.yml")).expect("tests");
    let alerts: std::collections::BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let tested: std::collections::BTreeSet<&str> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("alertname: "))
        .collect();
    assert_eq!(alerts, tested, "every alert has unit tests");
    for wanted in [
        "DuetTwoOnline",
        "DuetAgentUnreachable",
        "DuetHeartbeatFailing",
        "DuetWitnessLost",
        "DuetDbSyncStackTooLarge",
        "DuetRuntimeErrors",
    ] {
        assert!(alerts.contains(wanted), "{wanted} is among the alerts");
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("duet-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            used.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    let rule_metrics: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .flat_map(metric_names)
        .collect();
    assert!(
        used.len() > 10,
        "the dashboard shows duet's metrics: {used:?}"
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // With a witness configured (here one that never answers), so its families are served.
    let config = AgentSpec {
        extra: format!(
            "[nats_connection]\nservers = [\"nats://127.0.0.1:{}\"]\n[witness]\nkey = \"pair-a\"\n",
            free_port()
        ),
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(scratch.path());
    let _agents = Agents(vec![crate::support::spawn(&config)]);
    let served = served_families(port);
    for name in used.iter().chain(&rule_metrics) {
        assert!(
            served.contains(name),
            "{name} is used by the dashboard or the rules but /metrics has no such family: {served:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_runs_over_https_in_chromium() {
    use crate::web_ui::{attr, browser_with, chromium_and_driver, open, start_driver, within};
    let Some((chromium, chromedriver)) = chromium_and_driver() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    certificate(dir.path(), "api");
    let port = free_port();
    let config = AgentSpec {
        extra: "[api.tls]\ncert = \"api.crt\"\nkey = \"api.key\"\n".into(),
        ..AgentSpec::new("agent-a", "agent-b", 100, port, free_port())
    }
    .write(dir.path());
    let _agents = Agents(vec![crate::support::spawn(&config)]);
    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().expect("profile dir");
    // The test certificate is self-signed: Chromium is told to accept it.
    let c = browser_with(
        &driver,
        &chromium,
        profile.path(),
        &["--ignore-certificate-errors"],
    )
    .await;
    // The app mounts (its wasm came over HTTPS), then shows the agent's state, read from the
    // API over HTTPS.
    open(&c, &format!("https://127.0.0.1:{port}/")).await;
    let state = within!(Duration::from_secs(30), "agent-a's state on the page", {
        attr(&c, "#agent-local", "data-state")
            .await
            .filter(|s| !s.is_empty())
    });
    assert!(
        ["Online", "Offline"].iter().any(|s| state.contains(s)),
        "{state}"
    );
    c.close().await.expect("close the browser");
}
