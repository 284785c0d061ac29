//! Builds the wasm guests the tests use and exposes their paths as `DUET_TEST_*` constants.

#[path = "../xtask/src/guest.rs"]
mod guest;

use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["wit", "tests/guests", "plugins", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    let target = guest::nested_target_dir(&out_dir);
    let dir = guest::build(
        &workspace,
        &target,
        "wasm32-wasip2",
        &["duet-test-hostile-core", "duet-plugin-hello"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "cargo:rustc-env=DUET_TEST_HOSTILE_CORE={}",
        dir.join("duet_test_hostile_core.wasm").display()
    );
    println!(
        "cargo:rustc-env=DUET_TEST_HELLO_PLUGIN={}",
        dir.join("duet_plugin_hello.wasm").display()
    );
}
