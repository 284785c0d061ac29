//! Plugins in a compartment, in one real agent (`duet run`) beside a 1 Hz canary plugin whose
//! row must keep updating (no gap over 3 s) while the API answers: busy plugins stay within the
//! plugins' CPU budget (measured from the process's CPU time) and their rows say they were
//! slowed; a plugin creating sockets is stopped at its cap; a component with many memories is
//! stopped by its one memory limit; an ungranted `disk_space_of` gives one answer for existing
//! and missing paths; symbolic links are followed or refused in a row; 130 plugins opening a
//! FIFO are refused before any open and the thread count stays bounded, in the plugins' own
//! process (the agent's threads do not grow); a plugins folder that cannot be read unloads
//! nothing; a killed or stuck plugins' process shows in every row and is replaced.
//!
//! Serial (`cargo xtask test` runs it with the containment tests): it loads both cores.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use duet_core::Row;

use crate::admission::{http_get, open_fds};
use crate::plugins::{agent_config, rows};
use crate::support::{
    Agents, HELLO_PLUGIN, HOSTILE_PLUGIN, children_too, eventually, free_port, spawn,
};

/// The plugins' CPU budget in this test, in percent of one core.
const BUDGET: u32 = 30;
/// Busy plugins, each needing 40% of a core at its own interval.
const BUSY: usize = 4;
/// Plugins opening a FIFO.
const FIFOS: usize = 130;

/// The CPU time so far (user + system) of a process, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a process's stat");
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

/// A line of /proc/<pid>/status as a number ("Threads:").
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("{field} of the agent"))
}

/// A copy of the component `plugin` with one more core module declaring `count` memories of
/// `pages` 64 KiB pages, instantiated by the component: many memories, each under the limit.
fn with_memories(plugin: &[u8], count: u32, pages: u32) -> Vec<u8> {
    fn leb(mut n: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn read_leb(bytes: &[u8], at: &mut usize) -> u32 {
        let (mut n, mut shift) = (0u32, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            n |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }
    fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(u32::try_from(payload.len()).expect("small"), out);
        out.extend_from_slice(payload);
    }
    // The core modules the component defines at its top level (section 1).
    let (mut at, mut modules) = (8, 0);
    while at < plugin.len() {
        let id = plugin[at];
        at += 1;
        let size = read_leb(plugin, &mut at) as usize;
        modules += u32::from(id == 1);
        at += size;
    }
    let mut memories = Vec::new();
    leb(count, &mut memories);
    for _ in 0..count {
        memories.push(0x00);
        leb(pages, &mut memories);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(5, &memories, &mut module);
    let mut out = plugin.to_vec();
    section(1, &module, &mut out);
    let mut instance = vec![1, 0x00];
    leb(modules, &mut instance);
    instance.push(0);
    section(2, &instance, &mut out);
    out
}

/// The canary's successes, gathered while the test polls.
struct Canary(Vec<u64>);

impl Canary {
    fn saw(&mut self, rows: &BTreeMap<String, Row>) {
        let c = &rows["plugin:canary"];
        assert_eq!(c.value, "Hello", "the canary keeps answering: {c:?}");
        if let Some(at) = c.last_success
            && self.0.last() != Some(&at)
        {
            self.0.push(at);
        }
    }

    /// Rows now (the API must answer), noting the canary.
    fn rows(&mut self, port: u16) -> BTreeMap<String, Row> {
        let rows = eventually(Duration::from_secs(3), "the API answers", || rows(port));
        self.saw(&rows);
        rows
    }

    /// Polls until `f` holds on the rows, noting the canary every time.
    fn until<T>(
        &mut self,
        port: u16,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&BTreeMap<String, Row>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            let rows = self.rows(port);
            if let Some(v) = f(&rows) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {rows:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn assert_rhythm(&self) {
        let gaps: Vec<u64> = self.0.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(self.0.len() >= 10, "the canary ran: {:?}", self.0);
        assert!(
            gaps.iter().all(|g| *g <= 3_000),
            "the canary never missed more than 3 s: gaps {gaps:?} ms"
        );
    }
}

fn reason<'a>(rows: &'a BTreeMap<String, Row>, key: &str) -> Option<&'a str> {
    rows.get(key).and_then(|r| r.reason.as_deref())
}

/// The configuration: the canary, busy plugins, socket and disk probes, FIFO readers (their
/// files come later).
fn config(dir: &Path, port: u16, listener: u16, fifo: &Path) -> std::path::PathBuf {
    let mut text = format!(
        r#"
        [plugins]
        dir = "plugins"
        scan_interval = "500ms"
        cpu_budget_percent = {BUDGET}
        [plugins.plugin.canary]
        interval = "1s"
        [plugins.plugin.sockets]
        interval = "1s"
        connect = ["127.0.0.1:{listener}"]
        config = {{ mode = "sockets", target = "127.0.0.1:{listener}" }}
        [plugins.plugin.ungranted-sockets]
        interval = "1s"
        config = {{ mode = "sockets", target = "127.0.0.1:{listener}" }}
        [plugins.plugin.disk-existing]
        interval = "1s"
        config = {{ mode = "disk", path = "/etc/hostname" }}
        [plugins.plugin.disk-missing]
        interval = "1s"
        config = {{ mode = "disk", path = "/etc/no-such-file-here" }}
        "#
    );
    for k in 0..BUSY {
        text.push_str(&format!(
            "[plugins.plugin.busy{k}]\ninterval = \"1s\"\nconfig = {{ mode = \"busy\", busy_ms = 400 }}\n"
        ));
    }
    let granted = fifo.parent().expect("the FIFO's folder");
    for k in 0..FIFOS {
        text.push_str(&format!(
            "[plugins.plugin.fifo{k}]\ninterval = \"1s\"\nread_dirs = [\"{}\"]\nconfig = {{ mode = \"read\", path = \"{}\" }}\n",
            granted.display(),
            fifo.display()
        ));
    }
    agent_config(dir, port, &text)
}

#[test]
#[ignore = "serial: run alone by cargo xtask test (loads the machine)"]
fn plugins_stay_in_their_compartment_while_a_canary_keeps_its_rhythm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    let granted = dir.path().join("granted");
    std::fs::create_dir(&granted).expect("granted dir");
    let fifo = granted.join("fifo");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // A listener that accepts and holds every connection (the kernel's backlog does).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let target = listener.local_addr().expect("addr").port();

    std::fs::copy(HELLO_PLUGIN, plugins.join("canary.wasm")).expect("copy canary");
    for name in [
        "sockets",
        "ungranted-sockets",
        "disk-existing",
        "disk-missing",
    ] {
        std::fs::copy(HOSTILE_PLUGIN, plugins.join(format!("{name}.wasm"))).expect("copy");
    }
    for k in 0..BUSY {
        std::fs::copy(HOSTILE_PLUGIN, plugins.join(format!("busy{k}.wasm"))).expect("copy");
    }
    let hostile = std::fs::read(HOSTILE_PLUGIN).expect("read the hostile plugin");
    std::fs::write(
        plugins.join("memories.wasm"),
        with_memories(&hostile, 24, 16),
    )
    .expect("write the many-memories plugin");
    std::os::unix::fs::symlink(HELLO_PLUGIN, plugins.join("linked.wasm")).expect("symlink");
    std::os::unix::fs::symlink("/dev/zero", plugins.join("zero.wasm")).expect("symlink");

    let port = free_port();
    let agent = Agents(vec![spawn(&config(dir.path(), port, target, &fifo))]);
    let pid = agent.0[0].id();
    eventually(
        Duration::from_secs(30),
        "the canary's first success",
        || rows(port)?.get("plugin:canary")?.last_success,
    );
    let mut canary = Canary(Vec::new());

    // Each limit is reported with its reason.
    let expected = [
        (
            "plugin:sockets",
            "plugin fault: tried to hold more than 16 sockets open at once".to_string(),
        ),
        (
            "plugin:ungranted-sockets",
            "the sandbox refused: create a TCP socket: no address is granted (plugins.plugin.ungranted-sockets.connect)".to_string(),
        ),
        (
            "plugin:memories",
            "instantiation failed: grew past its memory limit of 16 MiB".to_string(),
        ),
        (
            "plugin:zero",
            "a symbolic link to /dev/zero, not followed: ".to_string()
                + &format!("{} is a character device, not a regular file: refused", plugins.join("zero.wasm").display()),
        ),
    ];
    let seen = canary.until(
        port,
        Duration::from_secs(60),
        "every limit's reason",
        |rows| {
            expected
                .iter()
                .all(|(key, why)| reason(rows, key).is_some_and(|r| r.contains(why.as_str())))
                .then(|| rows.clone())
        },
    );
    let linked = &seen["plugin:linked"];
    assert_eq!(
        linked.value, "Hello",
        "a link to a plugin is followed: {linked:?}"
    );
    assert_eq!(
        linked.label,
        format!("Plugin linked (link to {HELLO_PLUGIN})")
    );
    // An ungranted disk_space_of: the same answer whether the path exists or not.
    let (existing, missing) =
        canary.until(port, Duration::from_secs(30), "both disk answers", |rows| {
            Some((
                reason(rows, "plugin:disk-existing")?
                    .replace("/etc/hostname", "PATH")
                    .replace("disk-existing", "NAME"),
                reason(rows, "plugin:disk-missing")?
                    .replace("/etc/no-such-file-here", "PATH")
                    .replace("disk-missing", "NAME"),
            ))
        });
    assert_eq!(existing, missing);
    assert!(
        existing.contains("PATH is not in a granted directory"),
        "{existing}"
    );

    // The busy plugins are slowed, and the whole agent stays near the plugins' budget.
    canary.until(
        port,
        Duration::from_secs(30),
        "the busy plugins slowed",
        |rows| {
            (0..BUSY)
                .all(|k| {
                    rows[&format!("plugin:busy{k}")]
                        .value
                        .contains("slowed to every")
                })
                .then_some(())
        },
    );
    let busy = &canary.rows(port)["plugin:busy0"];
    eprintln!("a busy plugin's row: {busy:?}");
    assert!(
        busy.value.starts_with("busy 400 ms (slowed to every "),
        "{busy:?}"
    );
    assert!(
        busy.value.contains(&format!("CPU budget ({BUDGET}%")),
        "{busy:?}"
    );
    let family = children_too(pid);
    assert_eq!(
        family.len(),
        2,
        "the agent and its plugins' process: {family:?}"
    );
    let cpu = || family.iter().map(|&p| cpu_time(p)).sum::<Duration>();
    let (cpu0, at0) = (cpu(), Instant::now());
    let until = at0 + Duration::from_secs(12);
    while Instant::now() < until {
        canary.rows(port);
        std::thread::sleep(Duration::from_millis(250));
    }
    let used = (cpu() - cpu0).as_secs_f64() / at0.elapsed().as_secs_f64();
    eprintln!(
        "the agent used {:.0}% of a core while {BUSY} plugins wanted {}% (budget {BUDGET}%)",
        used * 100.0,
        BUSY * 40
    );
    // The budget, plus the agent's own work (a debug build answering this test's polls) and
    // one busy check more than its share starting inside the window.
    assert!(
        used < f64::from(BUDGET) / 100.0 + 0.25,
        "the agent used {:.0}% of a core",
        used * 100.0
    );
    // /metrics: the plugins' own series, labelled by plugin.
    let metrics = http_get(port, "/metrics").expect("/metrics");
    assert!(
        metrics.contains("duet_plugin_slowed{agent=\"a\",plugin=\"busy0\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("duet_plugin_fault{agent=\"a\",plugin=\"sockets\"} 1"),
        "{metrics}"
    );
    let fds: usize = family.iter().map(|&p| open_fds(p)).sum();
    eprintln!("the agent and its plugins' process hold {fds} descriptors");
    assert!(fds < 256, "the agent's descriptors stay bounded: {fds}");

    // 130 plugins reading a FIFO: refused before the open; threads stay bounded, and none of
    // them is the agent's own (the plugins run in their own process).
    let plugins_pid = family[1];
    let agent_threads = status_field(pid, "Threads:");
    let threads_before = status_field(plugins_pid, "Threads:");
    for k in 0..FIFOS {
        std::fs::copy(HOSTILE_PLUGIN, plugins.join(format!("fifo{k}.wasm"))).expect("copy");
    }
    let refused = "open fifo (in a granted directory): a FIFO, a socket or another special file, not a regular file: refused before opening";
    canary.until(
        port,
        Duration::from_secs(90),
        "every FIFO reader refused",
        |rows| {
            (0..FIFOS)
                .all(|k| {
                    reason(rows, &format!("plugin:fifo{k}")).is_some_and(|r| r.contains(refused))
                })
                .then_some(())
        },
    );
    let threads = status_field(plugins_pid, "Threads:");
    eprintln!(
        "the plugins' threads: {threads_before} before the FIFO readers, {threads} with them"
    );
    // One thread per plugin, and at most its I/O threads (2 by default) beside it.
    assert!(
        threads <= threads_before + FIFOS as u64 * 3,
        "threads: {threads_before} → {threads}"
    );
    assert!(
        threads >= threads_before + FIFOS as u64,
        "one thread per plugin, in the plugins' process: {threads_before} → {threads}"
    );
    let agent_after = status_field(pid, "Threads:");
    assert!(
        agent_after <= agent_threads + 4,
        "the agent's own threads: {agent_threads} → {agent_after}"
    );

    // The folder cannot be read: nothing is unloaded, the canary keeps running.
    let moved = dir.path().join("moved-away");
    std::fs::rename(&plugins, &moved).expect("move the folder away");
    let count = canary.rows(port).len();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            canary.rows(port).len(),
            count,
            "a failed scan unloads nothing"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::rename(&moved, &plugins).expect("move the folder back");
    canary.assert_rhythm();
    assert!(rows(port).is_some_and(|r| r.len() == count));

    // The plugins' process killed: every row says so, the agent runs on, a new process
    // takes the plugins back.
    // SAFETY: kill on a pid of this test's own agent's child.
    assert_eq!(
        unsafe { libc::kill(plugins_pid as i32, libc::SIGKILL) },
        0,
        "kill"
    );
    eventually(
        Duration::from_secs(10),
        "the rows say the process ended",
        || {
            reason(&rows(port)?, "plugin:canary")?
                .contains("the plugins' process ended")
                .then_some(())
        },
    );
    let before = rows(port).and_then(|r| r.get("plugin:canary")?.last_success);
    eventually(Duration::from_secs(30), "the canary back", || {
        let r = rows(port)?;
        let canary = r.get("plugin:canary")?;
        (canary.last_success > before && reason(&r, "plugin:canary").is_none()).then_some(())
    });
    let family = children_too(pid);
    assert!(
        family.len() == 2 && family[1] != plugins_pid,
        "a new plugins' process: {family:?}"
    );

    // A stuck plugins' process (stopped): after 10 s of silence it is replaced.
    let stuck = family[1];
    // SAFETY: kill on a pid of this test's own agent's child.
    assert_eq!(
        unsafe { libc::kill(stuck as i32, libc::SIGSTOP) },
        0,
        "stop"
    );
    eventually(Duration::from_secs(20), "the stuck process named", || {
        reason(&rows(port)?, "plugin:canary")?
            .contains("sent no report for 10s: stuck")
            .then_some(())
    });
    eventually(Duration::from_secs(30), "a new plugins' process", || {
        let family = children_too(pid);
        (family.len() == 2 && family[1] != stuck && reason(&rows(port)?, "plugin:canary").is_none())
            .then_some(())
    });
}
