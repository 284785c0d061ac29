//! Builds workspace crates for a wasm target with a nested `cargo build`.
//!
//! One home for this logic: `host/runtime/build.rs`, `host/api/build.rs` and `tests/build.rs` include this file with
//! `#[path]`, and xtask uses it as a module. A nested cargo needs its own target directory,
//! or it waits forever on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The profile every wasm crate is built with (see the workspace `Cargo.toml`).
pub const WASM_PROFILE: &str = "wasm-release";

/// Builds `packages` for `triple` into `target_dir`; returns the folder that holds the `.wasm`
/// files (`<lib_name>.wasm` for a library, `<bin-name>.wasm` for a binary).
pub fn build(
    workspace: &Path,
    target_dir: &Path,
    triple: &str,
    packages: &[&str],
) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--target", triple, "--profile", WASM_PROFILE])
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The outer build's settings must not leak into the wasm build.
    for (key, _) in std::env::vars() {
        let leaks = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key == "RUSTC_WRAPPER"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key == "CARGO_MAKEFLAGS"
            || key == "MAKEFLAGS";
        if leaks {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .map_err(|e| format!("failed to run cargo for {packages:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {packages:?} for {triple} failed ({status}); is the target installed? \
             `rustup target add {triple}` (cargo xtask test/demo install it)"
        ));
    }
    Ok(target_dir.join(triple).join(WASM_PROFILE))
}

/// The directory nested wasm builds use: `<outer target dir>/wasm-guests`, found from OUT_DIR
/// (`<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`).
pub fn nested_target_dir(out_dir: &Path) -> PathBuf {
    let build = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"));
    match build.and_then(Path::parent).and_then(Path::parent) {
        Some(target) => target.join("wasm-guests"),
        None => out_dir.join("wasm-guests"),
    }
}

/// What a build script that builds guests needs to know.
pub struct BuildEnv {
    /// The workspace root.
    pub workspace: PathBuf,
    /// The build script's OUT_DIR.
    pub out_dir: PathBuf,
    /// The nested target directory for wasm builds.
    pub target: PathBuf,
}

/// Reads the build script's environment and declares the workspace paths it depends on.
pub fn build_env(watched: &[&str]) -> BuildEnv {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|dir| dir.join("wit").is_dir() && dir.join("Cargo.lock").is_file())
        .expect("the crate lives in the duet workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in watched {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    let target = nested_target_dir(&out_dir);
    BuildEnv {
        workspace,
        out_dir,
        target,
    }
}
