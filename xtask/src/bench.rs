//! `cargo xtask bench`: runs the criterion benches and writes `docs/benchmarks.md` with the
//! commit, the machine and the figures.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// (criterion group, function, what it measures).
const FIGURES: [(&str, &str, &str); 4] = [
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
];

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
                "duet-host",
                "--bench",
                "core",
                "--bench",
                "plugins",
            ])
            .env("DUET_BENCH_PLUGIN", guests.join("duet_plugin_hello.wasm")),
    )?;
    let commit =
        crate::output(
            Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "--short", "HEAD"]),
        )
        .unwrap_or_else(|_| "unknown".into());
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
        commit.trim(),
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
    md.push_str("\n## Core calls\n\nPer call, mean of criterion's samples (95% confidence interval in brackets). The wasm figures include\nconverting the model to and from WIT types, the deadline set-up and the call into core.wasm.\n\n| what | mean | 95% CI |\n|---|---|---|\n");
    table(root, &mut md, &FIGURES)?;
    md.push_str("\n## Probe plugins\n\nPer call, as above: the host side of `duet:probe` (async call, epoch deadline, memory and output\nlimits armed) into the hello plugin, from a tokio runtime.\n\n| what | mean | 95% CI |\n|---|---|---|\n");
    table(root, &mut md, &PLUGIN_FIGURES)?;
    let load = root.join("target/criterion/plugin-load.json");
    let text = std::fs::read_to_string(&load)
        .with_context(|| format!("failed to read {}", load.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("failed to parse {}", load.display()))?;
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
        "| CPU of {} plugins at 1 Hz, including the engine's 2 ms epoch ticker | {:.2} % of a core |",
        f("plugins"),
        f("cpu_core_fraction") * 100.0
    )?;
    writeln!(
        md,
        "| CPU of the idle engine (the epoch ticker alone), for comparison | {:.2} % of a core |",
        f("cpu_core_fraction_idle_engine") * 100.0
    )?;
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("failed to write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Appends one table row per criterion figure.
fn table(root: &Path, md: &mut String, figures: &[(&str, &str, &str)]) -> anyhow::Result<()> {
    for &(group, function, what) in figures {
        let path = root
            .join("target/criterion")
            .join(group)
            .join(function)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("failed to parse {}", path.display()))?;
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
