//! Probe plugins in a running agent (`duet run`, a real process): hostile plugins are stopped
//! with the right reason while a 1 Hz canary keeps its rhythm and a granted loopback connect
//! works; files dropped into the folder appear, broken replacements keep the old version,
//! deleted files disappear; `duet plugin check` validates and runs one check.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use duet_core::Row;

use crate::support::{
    Agents, FILE_AGE_PLUGIN, HELLO_PLUGIN, HOSTILE_PLUGIN, PAIR_KEY, TCP_PORT_PLUGIN, duet_bin,
    eventually, free_port, spawn, status_json,
};

/// Writes a single agent's configuration (its buddy never answers) with `plugins` appended.
pub(crate) fn agent_config(dir: &Path, port: u16, plugins: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
        [agent]
        name = "a"
        [buddy]
        name = "b"
        [api]
        listen = "127.0.0.1:{port}"
        [peer]
        listen = "127.0.0.1:{peer}"
        pair_key = "{PAIR_KEY}"
        [status]
        startup_grace = "0s"
        [[heartbeat]]
        kind = "agent"
        target = "127.0.0.1:{buddy}"
        interval = "1s"
        {plugins}
        "#,
        peer = crate::support::peer_port(port),
        buddy = free_port(),
    );
    let path = dir.join("a.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The agent's own rows by key, `None` while it does not answer.
pub(crate) fn rows(port: u16) -> Option<BTreeMap<String, Row>> {
    let status = status_json(port)?;
    let pair = status.pair?;
    Some(
        pair.local
            .rows
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .expect("VmRSS of the agent")
}

/// A loopback TCP server that greets every client with a banner, on its own thread.
fn banner_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"duet-test-banner 1.0\r\n");
        }
    });
    port
}

#[test]
fn hostile_plugins_are_stopped_with_their_reason_while_a_canary_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    let granted = banner_server();
    let not_granted = banner_server();
    let secret = tempfile::tempdir().expect("a directory that is not granted");
    let secret_file = secret.path().join("secret.txt");
    std::fs::write(&secret_file, "not for plugins").expect("write secret");
    std::fs::copy(HELLO_PLUGIN, plugins.join("canary.wasm")).expect("copy canary");
    std::fs::copy(TCP_PORT_PLUGIN, plugins.join("granted-port.wasm")).expect("copy tcp-port");
    for mode in ["loop", "bomb", "trap", "flood", "connect", "read"] {
        std::fs::copy(HOSTILE_PLUGIN, plugins.join(format!("{mode}.wasm"))).expect("copy hostile");
    }
    let port = free_port();
    let config = agent_config(
        dir.path(),
        port,
        &format!(
            r#"
            [plugins]
            dir = "plugins"
            scan_interval = "200ms"
            [plugins.plugin.canary]
            interval = "1s"
            [plugins.plugin.granted-port]
            interval = "1s"
            connect = ["127.0.0.1:{granted}"]
            config = {{ address = "127.0.0.1:{granted}", banner = "duet-test-banner" }}
            [plugins.plugin.loop]
            interval = "1s"
            timeout = "300ms"
            config = {{ mode = "loop" }}
            [plugins.plugin.bomb]
            interval = "1s"
            memory_limit_mib = 8
            config = {{ mode = "bomb" }}
            [plugins.plugin.trap]
            interval = "1s"
            config = {{ mode = "trap" }}
            [plugins.plugin.flood]
            interval = "1s"
            max_output_kib = 16
            config = {{ mode = "flood" }}
            [plugins.plugin.connect]
            interval = "1s"
            connect = ["127.0.0.1:{granted}"]
            config = {{ mode = "connect", target = "127.0.0.1:{not_granted}" }}
            [plugins.plugin.read]
            interval = "1s"
            read_dirs = ["plugins"]
            config = {{ mode = "read", path = "{secret}" }}
            "#,
            secret = secret_file.display(),
        ),
    );
    let agent = Agents(vec![spawn(&config)]);
    let pid = agent.0[0].id();

    // Every hostile plugin is reported with its own reason.
    let expected: [(&str, &str); 6] = [
        (
            "plugin:loop",
            "plugin fault: exceeded its deadline of 300ms",
        ),
        (
            "plugin:bomb",
            "plugin fault: grew past its memory limit of 8 MiB",
        ),
        (
            "plugin:trap",
            "plugin fault: trapped: wasm `unreachable` executed",
        ),
        (
            "plugin:flood",
            "plugin fault: returned 1048576 bytes, more than its output limit of 16 KiB",
        ),
        (
            "plugin:connect",
            &*format!(
                "the sandbox refused: connect to 127.0.0.1:{not_granted} is not granted (plugins.plugin.connect.connect)"
            ),
        ),
        ("plugin:read", "No such file or directory"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, r)| (k.to_string(), r.to_string()))
        .collect();
    let first = eventually(
        Duration::from_secs(60),
        "every hostile plugin's reason",
        || {
            let rows = rows(port)?;
            // The files load side by side: the two good plugins are there too.
            let loaded = ["plugin:canary", "plugin:granted-port"]
                .iter()
                .all(|k| rows.contains_key(*k));
            (loaded
                && expected.iter().all(|(key, why)| {
                    rows.get(key)
                        .and_then(|r| r.reason.as_deref())
                        .is_some_and(|r| r.contains(why.as_str()))
                }))
            .then_some(rows)
        },
    );
    for (key, _) in &expected {
        assert!(first[key].turns_led_red, "{key} turns the LED red");
    }
    let rss_start = rss_kib(pid);

    // For 12 s more, while the hostile ones are restarted with backoff: the canary never
    // misses more than 3 s, the granted connect succeeds, and RTE Count counts the four
    // plugins in runtime error once each.
    let mut canary: Vec<u64> = Vec::new();
    let mut granted_ok = false;
    let mut rte_values = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        if let Some(rows) = rows(port) {
            let c = &rows["plugin:canary"];
            assert_eq!(c.value, "Hello", "the canary keeps answering: {c:?}");
            if let Some(at) = c.last_success
                && canary.last() != Some(&at)
            {
                canary.push(at);
            }
            let g = &rows["plugin:granted-port"];
            granted_ok |= g.reason.is_none() && g.value.starts_with("Open, banner matches");
            if let Some(rte) = rows.get("rte-count") {
                rte_values.insert(rte.value.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let gaps: Vec<u64> = canary.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        canary.len() >= 8,
        "the canary ran about once a second: {canary:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= 3_000),
        "the canary never missed more than 3 s: gaps {gaps:?} ms"
    );
    assert!(granted_ok, "the granted loopback connect succeeded");
    // A plugin's own metrics are in /metrics, labelled by plugin.
    let metrics = crate::admission::http_get(port, "/metrics").expect("/metrics");
    assert!(
        metrics.contains(
            "duet_plugin_metric{agent=\"a\",plugin=\"granted-port\",metric=\"connect_ms\"} "
        ),
        "{metrics}"
    );
    assert_eq!(
        rte_values.into_iter().collect::<Vec<_>>(),
        ["4"],
        "RTE Count: loop, bomb, trap and flood, each once"
    );
    let rss_end = rss_kib(pid);
    eprintln!("agent RSS: {rss_start} KiB after the first faults, {rss_end} KiB 12 s later");
    assert!(
        rss_end < 256 * 1024 && rss_end < rss_start + 64 * 1024,
        "the agent's RSS stays bounded: {rss_start} KiB → {rss_end} KiB"
    );
}

#[test]
fn plugin_files_dropped_replaced_and_deleted_take_effect_while_the_agent_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    let port = free_port();
    let config = agent_config(
        dir.path(),
        port,
        r#"
        [plugins]
        dir = "plugins"
        scan_interval = "100ms"
        [plugins.plugin.dropped]
        interval = "200ms"
        timeout = "200ms"
        "#,
    );
    let _agent = Agents(vec![spawn(&config)]);
    eventually(Duration::from_secs(30), "the agent's first report", || {
        rows(port).filter(|r| !r.keys().any(|k| k.starts_with("plugin:")))
    });

    // Dropped in: its row appears.
    let file = plugins.join("dropped.wasm");
    std::fs::copy(HELLO_PLUGIN, &file).expect("drop hello");
    let seen = eventually(Duration::from_secs(30), "the dropped plugin's row", || {
        rows(port)?
            .remove("plugin:dropped")
            .filter(|r| r.value == "Hello")
    });
    assert_eq!(seen.label, "Plugin dropped");
    assert_eq!(seen.reason, None);

    // A truncated replacement: refused, the old version keeps running.
    let bytes = std::fs::read(HELLO_PLUGIN).expect("read hello");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncate");
    let before = seen.last_success.expect("a success");
    let later = eventually(
        Duration::from_secs(30),
        "more checks of the old version",
        || {
            rows(port)?
                .remove("plugin:dropped")
                .filter(|r| r.last_success.is_some_and(|t| t > before + 1_000))
        },
    );
    assert_eq!(later.value, "Hello", "the old version still answers");

    // A changed valid file: the new plugin answers (file-age without config: a probe fault).
    std::fs::copy(FILE_AGE_PLUGIN, &file).expect("replace");
    let replaced = eventually(Duration::from_secs(30), "the replacement's row", || {
        rows(port)?
            .remove("plugin:dropped")
            .filter(|r| r.value == "Probe fault")
    });
    assert_eq!(
        replaced.reason.as_deref(),
        Some("probe fault: config.path is missing")
    );

    // Not a plugin at all: a row that names the file and what is wrong.
    std::fs::write(plugins.join("junk.wasm"), b"not wasm").expect("junk");
    let junk = eventually(Duration::from_secs(30), "the junk file's row", || {
        rows(port)?.remove("plugin:junk")
    });
    let why = junk.reason.expect("a reason");
    assert!(
        why.starts_with("not loaded: ")
            && why.contains("junk.wasm")
            && why.contains("not a valid WebAssembly component"),
        "{why}"
    );

    // Deleted: the rows disappear.
    std::fs::remove_file(&file).expect("delete");
    std::fs::remove_file(plugins.join("junk.wasm")).expect("delete junk");
    eventually(Duration::from_secs(30), "the rows to disappear", || {
        rows(port).filter(|r| !r.keys().any(|k| k.starts_with("plugin:")))
    });
}

#[test]
fn plugin_check_validates_a_file_and_runs_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(duet_bin())
            .args(["plugin", "check"])
            .args(args)
            .output()
            .expect("run duet plugin check");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&[HELLO_PLUGIN]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kind hello 0.1.0") && out.contains("check: Ok — Hello"),
        "{out}"
    );

    let config = agent_config(
        dir.path(),
        free_port(),
        r#"
        [plugins.plugin.spin]
        timeout = "100ms"
        config = { mode = "loop" }
        "#,
    );
    let (code, out) = run(&[
        HOSTILE_PLUGIN,
        "--config",
        config.to_str().expect("utf-8 path"),
        "--name",
        "spin",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("check: plugin fault — exceeded its deadline of 100ms"),
        "{out}"
    );

    let (code, out) = run(&[crate::support::HOSTILE_CORE]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("invalid: not a duet probe plugin: it does not export duet:probe/probe@0.1.0"),
        "{out}"
    );

    // What is not a regular file is refused before it is opened: a FIFO nobody writes to, and
    // a symbolic link to an endless device, end at once with the reason.
    let fifo = dir.path().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let zero = dir.path().join("zero.wasm");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    for (file, kind) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
        let started = Instant::now();
        let (code, out) = run(&[file.to_str().expect("utf-8 path")]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains(&format!("is {kind}, not a regular file: refused")),
            "{out}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{file:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_failing_switch_trigger_plugin_hands_the_online_agent_over() {
    use crate::support::AgentSpec;
    use duet_core::FailoverState::{Offline, Online};
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    std::fs::copy(TCP_PORT_PLUGIN, plugins.join("guard.wasm")).expect("copy tcp-port");
    // Connects succeed while the listener exists (the kernel completes them), fail once dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let guarded = listener.local_addr().expect("addr");
    let (pa, pb) = (free_port(), free_port());
    let mut a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb);
    a.extra = format!(
        r#"
        [plugins]
        dir = "plugins"
        scan_interval = "100ms"
        [plugins.plugin.guard]
        interval = "300ms"
        timeout = "200ms"
        switch_trigger = true
        trigger_after = 2
        connect = ["{guarded}"]
        config = {{ address = "{guarded}" }}
        "#
    );
    let a = a.write(dir.path());
    // The ping-pong guard would hold the trigger for 30 s after agent-a went online.
    let text = std::fs::read_to_string(&a).expect("read config");
    std::fs::write(
        &a,
        text.replace(
            "startup_wait = \"3s\"",
            "startup_wait = \"3s\"\nmin_switch_interval = \"1s\"",
        ),
    )
    .expect("write config");
    let b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa).write(dir.path());
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    let state = |port| status_json(port)?.decision.map(|d| d.state.state);
    eventually(
        Duration::from_secs(30),
        "agent-a Online with a healthy guard",
        || {
            let guard_ok = rows(pa)?.get("plugin:guard")?.reason.is_none();
            (guard_ok && state(pa) == Some(Online) && state(pb) == Some(Offline)).then_some(())
        },
    );

    drop(listener);
    eventually(
        Duration::from_secs(30),
        "agent-b Online after the trigger",
        || (state(pb) == Some(Online) && state(pa) == Some(Offline)).then_some(()),
    );
    let history: Vec<duet_core::api::HistoryEntry> = history(pa);
    assert!(
        history.iter().any(
            |h| h.decision.reason.code == duet_core::ReasonCode::SwitchTrigger
                && h.decision.reason.text == "switch trigger plugin:guard fails"
        ),
        "{history:?}"
    );
}

/// `GET /api/v1/history` of the agent on `port`.
fn history(port: u16) -> Vec<duet_core::api::HistoryEntry> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(crate::support::history(port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_by_content_and_reused_by_the_next_engine() {
    use duet_host::plugins::{PluginEngine, config::PluginSettings, load_file};
    let cache = tempfile::tempdir().expect("tempdir");
    let settings = PluginSettings::default();
    let hello = Path::new(HELLO_PLUGIN);
    let tcp = Path::new(TCP_PORT_PLUGIN);

    let first = PluginEngine::standalone(Some(cache.path().to_path_buf())).expect("engine");
    let loaded = load_file(&first, "hello", hello, &settings)
        .await
        .expect("hello loads");
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let hello_entry = &entries[0];
    let name = hello_entry
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        name.starts_with(&loaded.sha256) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A second engine (the next start) reads the cache instead of compiling: shown by planting
    // hello's artifact under tcp-port's hash — it then describes itself as hello.
    let tcp_sha = {
        use sha2::Digest as _;
        let bytes = std::fs::read(tcp).expect("read tcp-port");
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let planted = cache.path().join(name.replace(&loaded.sha256, &tcp_sha));
    std::fs::copy(hello_entry, &planted).expect("plant");
    let second = PluginEngine::standalone(Some(cache.path().to_path_buf())).expect("engine");
    let from_cache = load_file(&second, "tcp", tcp, &settings)
        .await
        .expect("loads");
    assert_eq!(from_cache.description.name, "hello");

    // A corrupt entry is not trusted: the file is compiled again.
    std::fs::write(&planted, b"garbage").expect("corrupt");
    let third = PluginEngine::standalone(Some(cache.path().to_path_buf())).expect("engine");
    let compiled = load_file(&third, "tcp", tcp, &settings)
        .await
        .expect("loads");
    assert_eq!(compiled.description.name, "tcp-port");
}
