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

pub fn run(root: &Path) -> anyhow::Result<()> {
    crate::setup()?;
    crate::run(crate::cargo(root).args([
        "bench",
        "--locked",
        "-p",
        "duet-host",
        "--bench",
        "core",
    ]))?;
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
    for (group, function, what) in FIGURES {
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
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("failed to write {}", out.display()))?;
    println!("wrote {}", out.display());
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
