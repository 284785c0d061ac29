//! `cargo xtask bench`: runs the criterion benches, the web UI's measurements (bundle size,
//! time to first status in headless Chromium), the failover time through a VIP and the event
//! log's forwarding rate, and writes `docs/benchmarks.md` with the commit, the machine and the
//! figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// (criterion group, function, what it measures).
const FIGURES: [(&str, &str, &str); 6] = [
    ("evaluate", "native", "rules.evaluate, native duet-core"),
    (
        "evaluate",
        "wasm",
        "rules.evaluate, core.wasm through the host runtime",
    ),
    ("step", "native", "failover.step, native duet-core"),
    (
        "step",
        "wasm",
        "failover.step, core.wasm through the host runtime",
    ),
    (
        "evaluate-full",
        "native",
        "rules.evaluate of a full two-agent report (host/runtime/benches/full-pair.json), native",
    ),
    (
        "evaluate-full",
        "wasm",
        "rules.evaluate of a full two-agent report (host/runtime/benches/full-pair.json), core.wasm",
    ),
];

/// The target for one evaluation of the full two-agent report through core.wasm, in ns.
const EVALUATE_FULL_TARGET_NS: f64 = 20_000.0;

/// (criterion group, function, what it measures) of the plugin bench.
const PLUGIN_FIGURES: [(&str, &str, &str); 2] = [
    (
        "plugin",
        "call",
        "one `check` of a trivial pre-instantiated plugin (hello), deadline and limits armed",
    ),
    (
        "plugin",
        "instantiate",
        "a fresh instance of a compiled plugin (WASI context, store, limits)",
    ),
];

pub fn run(root: &Path) -> anyhow::Result<()> {
    crate::setup()?;
    // The plugin bench runs the hello plugin, built like the tests' guests.
    let guests = crate::guest::build(
        root,
        &root.join("target/wasm-guests"),
        "wasm32-wasip2",
        &["duet-plugin-hello"],
    )
    .map_err(anyhow::Error::msg)?;
    crate::run(
        crate::cargo(root)
            .args([
                "bench",
                "--locked",
                "-p",
                "duet-runtime",
                "-p",
                "duet-plugins",
                "--bench",
                "core",
                "--bench",
                "plugins",
            ])
            .env("DUET_BENCH_PLUGIN", guests.join("duet_plugin_hello.wasm")),
    )?;
    let web = web_ui(root)?;
    let failover = failover_time(root)?;
    let load = under_load(root)?;
    let witness = witness(root)?;
    let commit = commit(root);
    let dirty = crate::output(
        Command::new("git")
            .current_dir(root)
            .args(["status", "--porcelain"]),
    )
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    let mut md =
        String::from("# Benchmarks\n\nWritten by `cargo xtask bench`; do not edit by hand.\n\n");
    writeln!(
        md,
        "- commit: `{}`{}",
        commit,
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    )?;
    writeln!(md, "- machine: {}", machine())?;
    writeln!(
        md,
        "- rustc: {}",
        crate::output(Command::new("rustc").arg("--version"))
            .unwrap_or_default()
            .trim()
    )?;
    md.push_str("\n## Core calls\n\nPer call, mean of criterion's samples (95% confidence interval in brackets). The wasm figures include\nconverting the model to and from WIT types, the deadline set-up and the call into core.wasm. Each call\nstarts from owned inputs, as in the agent, which builds them every tick whichever core runs:\npreparing them is not timed, dropping the answer is.\n\n| what | mean | 95% CI |\n|---|---|---|\n");
    table(root, &mut md, &FIGURES)?;
    let (native, wasm) = (
        mean_ns(root, "evaluate-full", "native")?,
        mean_ns(root, "evaluate-full", "wasm")?,
    );
    writeln!(
        md,
        "\nFull two-agent report through core.wasm: {} per evaluation, {:.1}× native; target under {}: {}.",
        human(wasm),
        wasm / native,
        human(EVALUATE_FULL_TARGET_NS),
        if wasm < EVALUATE_FULL_TARGET_NS {
            "met"
        } else {
            "NOT met"
        }
    )?;
    md.push_str("\n## Probe plugins\n\nPer call, as above: the host side of `duet:probe` (async call, epoch deadline, memory and output\nlimits armed) into the hello plugin, from a tokio runtime.\n\n| what | mean | 95% CI |\n|---|---|---|\n");
    table(root, &mut md, &PLUGIN_FIGURES)?;
    let v = read_json(&root.join("target/criterion/plugin-load.json"))?;
    let f = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    writeln!(
        md,
        "\nThrough the real loader (folder scan, one task per plugin, deadlines, rows), {} copies of hello\nchecking at 1 Hz, measured over 10 s with getrusage:\n",
        f("plugins")
    )?;
    md.push_str("| what | figure |\n|---|---|\n");
    writeln!(
        md,
        "| memory per loaded plugin (RSS growth / plugins, instance + store + WASI context) | {:.0} KiB |",
        f("memory_per_plugin_kib")
    )?;
    writeln!(md, "| checks per second | {:.1} |", f("checks_per_second"))?;
    writeln!(
        md,
        "| CPU of {} plugins at 1 Hz, including the engine's epoch ticker (2 ms, only during calls) | {:.2} % of a core |",
        f("plugins"),
        f("cpu_core_fraction") * 100.0
    )?;
    writeln!(
        md,
        "| CPU of the idle engine (no calls: the epoch ticker sleeps), for comparison | {:.2} % of a core |",
        f("cpu_core_fraction_idle_engine") * 100.0
    )?;
    md.push_str(&web);
    md.push_str(&failover);
    md.push_str(&load);
    md.push_str(&witness);
    md.push_str(&dbsync(root)?);
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("failed to write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// A JSON file a bench wrote.
fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("failed to parse {}", path.display()))
}

/// Runs one ignored measurement test of `duet-tests` (`module::name`) and reads the JSON file
/// it writes, `output` under the workspace.
fn measurement(root: &Path, test: &str, output: &str) -> anyhow::Result<serde_json::Value> {
    crate::run(crate::cargo(root).args([
        "test",
        "--locked",
        "-p",
        "duet-tests",
        "--lib",
        test,
        "--",
        "--ignored",
        "--exact",
    ]))?;
    read_json(&root.join(output))
}

/// criterion's estimates of one figure.
fn estimates(root: &Path, group: &str, function: &str) -> anyhow::Result<serde_json::Value> {
    read_json(
        &root
            .join("target/criterion")
            .join(group)
            .join(function)
            .join("new/estimates.json"),
    )
}

/// A criterion figure's mean, in ns.
fn mean_ns(root: &Path, group: &str, function: &str) -> anyhow::Result<f64> {
    estimates(root, group, function)?
        .pointer("/mean/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("no mean in criterion's {group}/{function}"))
}

/// The short hash of HEAD.
fn commit(root: &Path) -> String {
    crate::output(
        Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"]),
    )
    .map_or_else(|_| "unknown".into(), |c| c.trim().to_string())
}

/// Appends one table row per criterion figure.
fn table(root: &Path, md: &mut String, figures: &[(&str, &str, &str)]) -> anyhow::Result<()> {
    for &(group, function, what) in figures {
        let v = estimates(root, group, function)?;
        let ns = |p: &str| {
            v.pointer(p)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        writeln!(
            md,
            "| {what} | {} | [{} – {}] |",
            human(ns("/mean/point_estimate")),
            human(ns("/mean/confidence_interval/lower_bound")),
            human(ns("/mean/confidence_interval/upper_bound"))
        )?;
    }
    Ok(())
}

/// The target for the web bundle (wasm + js, gzip).
const BUNDLE_TARGET_KB: u64 = 300;

/// The "Web UI" section: the bundle the host embeds (as built for the tests) and the time to
/// the first status, measured by the ignored `web_ui::time_to_first_status_bench` test.
fn web_ui(root: &Path) -> anyhow::Result<String> {
    crate::run(crate::cargo(root).args(["build", "--locked", "--bins"]))?;
    let web = newest_web_dir(&root.join("target/debug/build"))?;
    let mut files = Vec::new();
    for name in ["duet-web_bg.wasm", "duet-web.js", "style.css", "index.html"] {
        let size = |suffix: &str| {
            let path = web.join(format!("{name}{suffix}"));
            std::fs::metadata(&path)
                .with_context(|| format!("failed to read {}", path.display()))
                .map(|m| m.len())
        };
        files.push((name, size("")?, size(".gz")?, size(".br")?));
    }
    let first = measurement(
        root,
        "web_ui::time_to_first_status_bench",
        "target/web-e2e/first-status.json",
    )?;
    let ms = |k: &str| first[k].as_f64().unwrap_or(f64::NAN);
    let total: u64 = files.iter().map(|f| f.2).sum();
    let mut md = String::from(
        "
## Web UI

The bundle the host embeds (`wasm-release` profile, after wasm-bindgen), compressed at build
time; the host serves brotli (or gzip) as the browser accepts. Target: under 300 KB gzip.

| file | size | gzip -9 | brotli 11 |
|---|---|---|---|
",
    );
    for (name, raw, gz, br) in &files {
        writeln!(md, "| {name} | {} | {} | {} |", kb(*raw), kb(*gz), kb(*br))?;
    }
    writeln!(
        md,
        "| **total** | {} | **{}** ({} the {BUNDLE_TARGET_KB} KB target) | **{}** |",
        kb(files.iter().map(|f| f.1).sum()),
        kb(total),
        if total <= BUNDLE_TARGET_KB * 1000 {
            "within"
        } else {
            "over"
        },
        kb(files.iter().map(|f| f.3).sum()),
    )?;
    let bytes = |k: &str| first[k].as_u64().unwrap_or_default();
    writeln!(
        md,
        "
Transferred, as headless Chromium's Resource Timing counts it (`transferSize`: headers and
body of the page, style sheet, script and wasm): first load on a fresh profile {} B (target
under 150,000 B), repeat load {} B (target under 5,000 B: the page's `304`, the rest from the
cache).",
        bytes("first_load_bytes"),
        bytes("repeat_load_bytes")
    )?;
    writeln!(
        md,
        "
Time to first status: from navigation start to the first frame showing agent-a's state, headless
Chromium on loopback against a settled pair of debug-build agents, {} fresh page loads: median
{:.0} ms (min {:.0} ms, max {:.0} ms). Loads cut short (Chromium's ERR_NETWORK_CHANGED while
other tests add network interfaces, or over 20 s) are repeated; there were {}.",
        first["loads"],
        ms("median_ms"),
        ms("min_ms"),
        ms("max_ms"),
        first["cut_short"]
    )?;
    Ok(md)
}

/// `cargo xtask bench failover` / `load` / `witness`: only that bench; its section of
/// `docs/benchmarks.md` is replaced (or appended), the rest left as the last full run wrote it.
pub fn section_only(root: &Path, which: &str) -> anyhow::Result<()> {
    crate::setup()?;
    crate::run(crate::cargo(root).args(["build", "--locked", "--bins"]))?;
    // The commit the binaries were built from, not whatever HEAD is once the bench ends.
    let commit = commit(root);
    let (title, body) = match which {
        "load" => ("\n## Under load", under_load(root)?),
        "witness" => ("\n## With a witness", witness(root)?),
        _ => ("\n## Failover time", failover_time(root)?),
    };
    let section = format!(
        "{body}\nThis section was measured on its own (`cargo xtask bench {which}`) at commit `{commit}`.\n"
    );
    let out = root.join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&out).unwrap_or_default();
    let kept = match old.find(title) {
        Some(i) => {
            let rest = &old[i + 1..];
            let end = rest.find("\n## ").map_or(old.len(), |j| i + 1 + j);
            format!("{}{}", &old[..i], &old[end..])
        }
        None => old,
    };
    let mut md = kept.trim_end().to_string();
    md.push('\n');
    md.push_str(&section);
    std::fs::write(&out, md).with_context(|| format!("failed to write {}", out.display()))?;
    println!("wrote the {which} section of {}", out.display());
    Ok(())
}

/// The "Failover time" section: duet beside keepalived in the same topology and run, measured
/// by the ignored `keepalived::takeover_bench` test against a release build of duet (network
/// namespaces: needs root; keepalived from Debian).
fn failover_time(root: &Path) -> anyhow::Result<String> {
    let uid = crate::output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        return Ok("\n## Failover time\n\nNot measured: the bench builds network namespaces and needs root.\n".into());
    }
    crate::apt_install(&["keepalived"])?;
    crate::run(crate::cargo(root).args(["build", "--locked", "--release", "--bin", "duet"]))?;
    let release = root.join("target/release/duet");
    crate::run(
        crate::cargo(root)
            .args(["test", "--locked", "-p", "duet-tests", "--lib"])
            .args(["keepalived::takeover_bench", "--", "--ignored", "--exact"])
            .env("DUET_BIN", &release),
    )?;
    let v = read_json(&root.join("target/takeover-bench.json"))?;
    let keepalived = crate::output(Command::new("keepalived").arg("--version"))
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("keepalived")
        .to_string();
    takeover_tables(&v, &keepalived)
}

/// The tables of the takeover bench's results.
fn takeover_tables(v: &serde_json::Value, keepalived: &str) -> anyhow::Result<String> {
    let ms = |x: &serde_json::Value, k: &str| x[k].as_f64().unwrap_or(f64::NAN);
    let mut md = format!(
        "
## Failover time

duet (release build) beside {keepalived} (Debian), one run, the same topology for each: two
nodes in network namespaces (LAN through a bridge, a direct sync cable), a VIP on the LAN, a UDP
service on each node answering with its name, a client namespace asking the VIP every 10 ms.
Each kill: kill -9 of the active node (keepalived: its whole process group), time until the
client hears the backup; the killed node is restarted and the next kill hits the other one.
Kills alternate between the daemons ({} per daemon and setting). keepalived runs VRRPv3 with
equal priorities (100) and `nopreempt`. Equal settings are equal nominal detection times:
keepalived declares the master down after 3 × advert + skew ((256 − 100) / 256 × advert), duet
after `max_failures + 1` missed intervals.

| settings | keepalived nominal | duet nominal | daemon | median | p90 | p99 | max | duet / keepalived (median, p99) |
|---|---|---|---|---|---|---|---|---|
",
        v["runs"]
    );
    for p in v["pairings"].as_array().into_iter().flatten() {
        let (k, d) = (&p["keepalived"], &p["duet"]);
        let (kt, dt) = (&k["takeover"], &d["takeover"]);
        writeln!(
            md,
            "| {} | {:.1} ms (advert {} ms) | {:.0} ms ({} ms × {}, tick {} ms) | keepalived | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | |",
            p["label"].as_str().unwrap_or("?"),
            ms(k, "nominal_ms"),
            k["advert_ms"],
            ms(d, "nominal_ms"),
            d["interval_ms"],
            d["max_failures"],
            d["tick_ms"],
            ms(kt, "median_ms"),
            ms(kt, "p90_ms"),
            ms(kt, "p99_ms"),
            ms(kt, "max_ms"),
        )?;
        writeln!(
            md,
            "| | | | duet | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}, {:.2} |",
            ms(dt, "median_ms"),
            ms(dt, "p90_ms"),
            ms(dt, "p99_ms"),
            ms(dt, "max_ms"),
            ms(dt, "median_ms") / ms(kt, "median_ms"),
            ms(dt, "p99_ms") / ms(kt, "p99_ms"),
        )?;
    }
    md.push_str(
        "
Where duet's time goes (medians; from the survivor's failover log, whole milliseconds, and a
capture at the client): detection is the kill to the step that finds every path dead; decision
to the claim (Preparing, then Going online); the claim to the step that logs Online (the lease
and the first gratuitous ARP come first); the first gratuitous ARP seen at the client; the first
answer. keepalived's first gratuitous ARP beside it.

| settings | detection | decision | claim to Online logged | first GARP at client | first answer | keepalived first GARP |
|---|---|---|---|---|---|---|
",
    );
    for p in v["pairings"].as_array().into_iter().flatten() {
        let (k, d) = (&p["keepalived"], &p["duet"]);
        let med = |x: &serde_json::Value| ms(x, "median_ms");
        writeln!(
            md,
            "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            p["label"].as_str().unwrap_or("?"),
            med(&d["detection"]),
            med(&d["decision"]),
            med(&d["claimed"]),
            med(&d["garp"]),
            med(&d["takeover"]),
            med(&k["garp"]),
        )?;
    }
    md.push_str(
        "
Stalls: SIGSTOP of the active daemon (keepalived: its process group) for 2× its interval
(shorter than detection: any takeover is false) and for 4× (longer than detection: a takeover
is expected, counted, not judged), then SIGCONT; takeovers counted per round (duet: the backup
reached Going online or Online; keepalived: the backup held the VIP).

| settings | rounds | 2× keepalived | 2× duet | 4× keepalived | 4× duet | duet, 500 ms stop at defaults |
|---|---|---|---|---|---|---|
",
    );
    for p in v["pairings"].as_array().into_iter().flatten() {
        let stall = |factor: u64, who: &str| {
            p["stalls"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["factor"].as_u64() == Some(factor))
                .map_or_else(|| "?".to_string(), |s| s[who].to_string())
        };
        let half = if p["keepalived"]["advert_ms"].as_u64() == Some(1_000) {
            p["duet"]["stalls_500ms"].to_string()
        } else {
            "".into()
        };
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {half} |",
            p["label"].as_str().unwrap_or("?"),
            p["stall_rounds"],
            stall(2, "keepalived"),
            stall(2, "duet"),
            stall(4, "keepalived"),
            stall(4, "duet"),
        )?;
    }
    md.push_str(
        "
Idle, before the kills (each node, averaged over both; 20 s): CPU in % of one core, resident
memory.

| settings | keepalived CPU | keepalived RSS | duet CPU | duet RSS |
|---|---|---|---|---|
",
    );
    for p in v["pairings"].as_array().into_iter().flatten() {
        let (k, d) = (&p["keepalived"], &p["duet"]);
        let mb = |x: &serde_json::Value| x["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
        writeln!(
            md,
            "| {} | {:.2} % | {:.1} MiB | {:.2} % | {:.1} MiB |",
            p["label"].as_str().unwrap_or("?"),
            ms(k, "idle_cpu_percent"),
            mb(k),
            ms(d, "idle_cpu_percent"),
            mb(d),
        )?;
    }
    Ok(md)
}

/// Failover under load and takeovers without a fault (tests/src/containment.rs).
fn under_load(root: &Path) -> anyhow::Result<String> {
    let uid = crate::output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        return Ok("\n## Under load\n\nNot measured: the bench builds network namespaces and needs root.\n".into());
    }
    let v = measurement(root, "containment::load_bench", "target/load-bench.json")?;
    let f = &v["failover"];
    let ms = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
    Ok(format!(
        "
## Under load

The failover-time topology at the defaults while both cores are saturated: a CPU hog per core
at ordinary priority in the test process and four busy-but-legal plugins (900 ms of every 1 s)
on each agent; the decision threads run at SCHED_RR 10. kill -9 of the Online agent, time until
the backup answers at the client: {} runs, median {:.0} ms, p99 {:.0} ms (min {:.0} ms, max
{:.0} ms). Then {} s of the same load with no fault: {} state changes (0 expected: no takeover),
largest gap between two ticks {:.0} ms (tick 250 ms).
",
        f["runs"],
        ms("median_ms"),
        ms("p99_ms"),
        ms("min_ms"),
        ms("max_ms"),
        v["quiet_seconds"],
        v["state_changes"],
        v["max_tick_gap_ms"].as_f64().unwrap_or(f64::NAN)
    ))
}

/// Failover time and cuts with the witness (tests/src/witness/bench.rs).
fn witness(root: &Path) -> anyhow::Result<String> {
    let uid = crate::output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        return Ok("\n## With a witness\n\nNot measured: the bench builds network namespaces and needs root.\n".into());
    }
    let v = measurement(
        root,
        "witness::bench::witness_bench",
        "target/witness-bench.json",
    )?;
    let k = &v["kill"];
    let ms = |k: &serde_json::Value, f: &str| k[f].as_f64().unwrap_or(f64::NAN);
    Ok(format!(
        "
## With a witness

A pair at the defaults (200 ms × 3) with the witness at its defaults (lease {} ms, renew {} ms),
in network namespaces, a three-node nats-server cluster with JetStream on the gateway host
(tests/src/witness/bench.rs).

kill -9 of the Online agent, time until its buddy is Online (it takes the lease once the
revision stood still for a whole lease): {} runs, median {:.0} ms, p90 {:.0} ms, p99 {:.0} ms,
max {:.0} ms.

{} cuts between the agents (every agent path and the sync cable; both keep the gateway and the
witness), each held {} ms (past detection and a whole lease), then healed: exactly one agent
Online throughout in {}, two Online in {}, the Online role moved in {}; nobody Online for {} ms
in all.
",
        v["lease_ms"],
        v["renew_ms"],
        k["runs"],
        ms(k, "median_ms"),
        ms(k, "p90_ms"),
        ms(k, "p99_ms"),
        ms(k, "max_ms"),
        v["cuts"],
        v["cut_hold_ms"],
        v["one_online_throughout"],
        v["two_online"],
        v["moved"],
        v["nobody_online_ms"],
    ))
}

/// The event log's forwarding rate, end to end over loopback (tests/src/dbsync.rs).
fn dbsync(root: &Path) -> anyhow::Result<String> {
    let v = measurement(root, "dbsync::forwarding_bench", "target/dbsync-bench.json")?;
    let mut md = String::from(
        "
## Event log forwarding (DB Sync)

Events per second end to end over loopback: posted to agent-a's API (4 clients, 5,000 events
per request), committed in agent-a's store, forwarded over the peer link (batches of 2,000,
8 in flight) and committed in agent-b's store, until agent-b holds them all. Two debug-build
`duet run` agents and their databases share this machine. Target: 20,000 events/s on SQLite.

| store | events | all posted after | all on the buddy after | events/s |
|---|---|---|---|---|
",
    );
    for (backend, name) in [
        ("sqlite", "SQLite (embedded)"),
        ("postgres", "PostgreSQL (local)"),
    ] {
        let f = &v[backend];
        let num = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
        writeln!(
            md,
            "| {name} | {} | {:.2} s | {:.2} s | **{:.0}** |",
            f["events"],
            num("posted_s"),
            num("forwarded_s"),
            num("events_per_s")
        )?;
    }
    Ok(md)
}

/// `target/debug/build/duet-api-*/out/web` with the newest wasm (several builds may be kept).
fn newest_web_dir(build: &Path) -> anyhow::Result<std::path::PathBuf> {
    let mut best: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    for entry in std::fs::read_dir(build)
        .with_context(|| format!("failed to read {}", build.display()))?
        .flatten()
    {
        if !entry.file_name().to_string_lossy().starts_with("duet-api-") {
            continue;
        }
        let web = entry.path().join("out/web");
        if let Ok(modified) =
            std::fs::metadata(web.join("duet-web_bg.wasm")).and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            best = Some((modified, web));
        }
    }
    best.map(|(_, dir)| dir)
        .with_context(|| format!("no built web UI under {}", build.display()))
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

fn human(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kb| format!("{} GiB", kb / (1024 * 1024)),
        );
    format!("{cpu}, {cores} cores, {mem}, {}", std::env::consts::ARCH)
}
