//! `cargo xtask dist [--debug] [--no-build]`: the Debian package. Builds `duet` (release;
//! `--debug`: the debug profile, so the test command builds wasmtime once; `--no-build`: the
//! binary is there already, as in the package test), generates its man pages and
//! shell completions with the binary itself, and packages it with cargo-deb from
//! `[package.metadata.deb]` in `host/cli/Cargo.toml`: the binary, the systemd unit, the
//! conffile `/etc/duet/duet.toml`, the sysusers entry for user `duet`, the docs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, output, run};

/// The cargo-deb release installed (it needs Rust 1.85; newer ones may need a newer Rust).
const CARGO_DEB: &str = "3.8.0";

/// Installs cargo-deb at [`CARGO_DEB`] unless that version is there already.
pub fn install_cargo_deb(root: &Path) -> anyhow::Result<()> {
    let installed = output(cargo(root).args(["deb", "--version"])).unwrap_or_default();
    if installed.split_whitespace().any(|w| w == CARGO_DEB) {
        return Ok(());
    }
    run(cargo(root).args(["install", "--locked", "cargo-deb", "--version", CARGO_DEB]))
}

/// Builds the package (`build`: the binaries first); returns the `.deb`'s path.
pub fn run_dist(root: &Path, debug: bool, build: bool) -> anyhow::Result<PathBuf> {
    install_cargo_deb(root)?;
    if build {
        // The same build as the test command's (`--bins`): nothing is built again there.
        let mut cmd = cargo(root);
        cmd.args(["build", "--locked", "--bins"]);
        if !debug {
            cmd.arg("--release");
        }
        run(&mut cmd)?;
    }
    let profile = if debug { "debug" } else { "release" };
    let bin_dir = root.join("target").join(profile);
    let duet = bin_dir.join("duet");
    if !duet.exists() {
        bail!(
            "{} is missing: build it first (without --no-build)",
            duet.display()
        );
    }
    let dist = bin_dir.join("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist)
            .with_context(|| format!("cannot clear {}", dist.display()))?;
    }
    let man = dist.join("man");
    run(Command::new(&duet).arg("man").arg(&man))?;
    run(Command::new("gzip")
        .args(["-9", "-n", "-f"])
        .args(pages(&man)?))?;
    for (shell, file) in [
        ("bash", "duet.bash"),
        ("zsh", "_duet"),
        ("fish", "duet.fish"),
    ] {
        let script = output(Command::new(&duet).args(["completions", shell]))?;
        std::fs::write(dist.join(file), script)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    let out_dir = root.join("target").join("debian");
    let mut deb = cargo(root);
    deb.args([
        "deb",
        "--locked",
        "--no-build",
        "-p",
        "duet-cli",
        "--output",
    ])
    .arg(&out_dir);
    if debug {
        // Strip the debug binary's line tables and compress fast: the test unpacks it at once.
        deb.args(["--profile", "dev", "--fast", "--strip"]);
    }
    let printed = output(&mut deb)?;
    let path = printed
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .context("cargo deb printed no .deb path")?;
    if !path.exists() {
        bail!(
            "cargo deb said it wrote {}, which is missing",
            path.display()
        );
    }
    println!("{}", path.display());
    Ok(path)
}

/// The roff pages `duet man` wrote.
fn pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    if pages.is_empty() {
        bail!("duet man wrote no page into {}", dir.display());
    }
    Ok(pages)
}
