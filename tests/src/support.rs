//! Helpers shared by the test modules.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use duet_host::runtime::{CoreRuntime, Limits};

/// A core component whose `step` loops forever and whose `evaluate` grows memory without bound.
pub const HOSTILE_CORE: &str = env!("DUET_TEST_HOSTILE_CORE");
/// The trivial example probe plugin (a component that is not a core).
pub const HELLO_PLUGIN: &str = env!("DUET_TEST_HELLO_PLUGIN");
/// A probe plugin that misbehaves as its config's `mode` says.
pub const HOSTILE_PLUGIN: &str = env!("DUET_TEST_HOSTILE_PLUGIN");
/// The tcp-port example plugin.
pub const TCP_PORT_PLUGIN: &str = env!("DUET_TEST_TCP_PORT_PLUGIN");
/// The file-age example plugin.
pub const FILE_AGE_PLUGIN: &str = env!("DUET_TEST_FILE_AGE_PLUGIN");

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// One core runtime per test process: compiling the embedded core is the slow part. Tests that
/// install a core must make a runtime of their own.
pub fn runtime() -> Arc<CoreRuntime> {
    static RT: OnceLock<Arc<CoreRuntime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            CoreRuntime::new(Limits {
                deadline: Duration::from_millis(200),
                memory_bytes: 64 << 20,
            })
            .expect("core runtime"),
        )
    })
    .clone()
}

/// The `duet` binary of this build (`cargo xtask test` builds it before the tests), or the one
/// `DUET_BIN` names (the benches run release builds).
pub fn duet_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DUET_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/duet_tests-<hash> → target/<profile>/duet
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target layout")
        .join("duet");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p duet-host), or run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up by default), so no
/// outgoing connection of a parallel test can take one between this call and the agent's
/// bind; each process starts at its own offset, so parallel test processes rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        start,
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % COUNT;
        let port = (FIRST + i) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT)
}

/// The peer port of the test agent whose API listens on `api_port`: a free port, chosen at
/// first use and the same for the rest of the test process, so each agent of a pair can name
/// the other's peer port from its API port.
pub fn peer_port(api_port: u16) -> u16 {
    static PORTS: OnceLock<std::sync::Mutex<std::collections::HashMap<u16, u16>>> = OnceLock::new();
    let mut ports = PORTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *ports.entry(api_port).or_insert_with(free_port)
}

/// The pair key of the test agents.
pub const PAIR_KEY: &str = "duet-test-pair-key-0123456789";

/// Kills the agent processes even when the test fails.
pub struct Agents(pub Vec<std::process::Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `duet run --config <config>`.
pub fn spawn(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(duet_bin())
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn duet")
}

/// One agent of a test pair on loopback, with quick timings.
pub struct AgentSpec {
    pub name: String,
    pub buddy: String,
    pub priority: u32,
    pub port: u16,
    pub buddy_port: u16,
    /// The agent heartbeat's interval and allowed failures (detection ≈ interval × (max + 1)).
    pub interval_ms: u64,
    /// The agent heartbeat's timeout.
    pub timeout_ms: u64,
    pub max_failures: u32,
    pub pair_key: String,
    /// More TOML appended at the end (more heartbeats, tokens).
    pub extra: String,
}

impl AgentSpec {
    pub fn new(name: &str, buddy: &str, priority: u32, port: u16, buddy_port: u16) -> Self {
        AgentSpec {
            name: name.into(),
            buddy: buddy.into(),
            priority,
            port,
            buddy_port,
            interval_ms: 200,
            timeout_ms: 150,
            max_failures: 3,
            pair_key: PAIR_KEY.into(),
            extra: String::new(),
        }
    }

    /// Writes `<dir>/<name>.toml` and returns its path.
    pub fn write(&self, dir: &std::path::Path) -> PathBuf {
        let AgentSpec {
            name,
            buddy,
            priority,
            port,
            buddy_port,
            interval_ms,
            timeout_ms,
            max_failures,
            pair_key,
            extra,
        } = self;
        let (peer, buddy_peer) = (peer_port(*port), peer_port(*buddy_port));
        let text = format!(
            r#"
            [agent]
            name = "{name}"
            priority = {priority}
            [buddy]
            name = "{buddy}"
            [api]
            listen = "127.0.0.1:{port}"
            [peer]
            listen = "127.0.0.1:{peer}"
            pair_key = "{pair_key}"
            [failover]
            startup_wait = "3s"
            [status]
            startup_grace = "1s"
            buddy_timeout = "3s"
            [log]
            failover_log = "{name}-failover.log"
            [[heartbeat]]
            kind = "agent"
            target = "127.0.0.1:{buddy_peer}"
            interval = "{interval_ms}ms"
            timeout = "{timeout_ms}ms"
            max_failures = {max_failures}
            {extra}
            "#
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    }
}

/// `duet status [--json] --api 127.0.0.1:<port>`: exit code and standard output.
pub fn status(port: u16, json: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(duet_bin());
    cmd.args(["status", "--api", &format!("127.0.0.1:{port}")]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run duet status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `duet status --json` of the agent on `port`, parsed; `None` while it does not answer.
pub fn status_json(port: u16) -> Option<duet_core::api::Status> {
    serde_json::from_str(&status(port, true).1).ok()
}

/// Polls `what` every 100 ms until it returns `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    self::within(within, f)
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`; `None` when it never
/// did (the caller says what failed, with whatever it knows).
pub fn within<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether this process runs as root (network namespaces, raw ICMP).
/// Process `pid` and its children (an agent and its plugins' process, `duet plugin-host`).
pub fn children_too(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    all
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command to its end, failing the test with the command's own message if it fails;
/// returns what it printed.
pub fn output(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `ip <args>`, failing the test with ip's message if it fails.
pub fn ip(args: &[&str]) {
    output(std::process::Command::new("ip").args(args));
}

/// `GET /api/v1/history` of the agent whose API is on `port`.
pub async fn history(port: u16) -> Vec<duet_core::api::HistoryEntry> {
    reqwest::get(format!("http://127.0.0.1:{port}/api/v1/history"))
        .await
        .expect("history")
        .json::<duet_core::api::History>()
        .await
        .expect("history JSON")
        .entries
}

/// The state of an agent's last decision, as its status says.
pub fn state(status: &duet_core::api::Status) -> Option<duet_core::FailoverState> {
    status.decision.as_ref().map(|d| d.state.state)
}

/// The row `key` of an agent's own column, as its status says.
pub fn row(status: &duet_core::api::Status, key: &str) -> Option<duet_core::Row> {
    status
        .pair
        .as_ref()?
        .local
        .rows
        .iter()
        .find(|r| r.key == key)
        .cloned()
}
