//! Builds the wasm guests the tests use and exposes their paths as `DUET_TEST_*` constants.

// Shared with host/runtime/build.rs, host/api/build.rs and xtask; not every helper is used here.
#[allow(dead_code)]
#[path = "../xtask/src/guest.rs"]
mod guest;

fn main() {
    let env = guest::build_env(&["wit", "tests/guests", "plugins", "Cargo.lock"]);
    let dir = guest::build(
        &env.workspace,
        &env.target,
        "wasm32-wasip2",
        &[
            "duet-test-hostile-core",
            "duet-test-hostile-plugin",
            "duet-plugin-hello",
            "duet-plugin-tcp-port",
            "duet-plugin-file-age",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (env, file) in [
        ("DUET_TEST_HOSTILE_PLUGIN", "duet_test_hostile_plugin.wasm"),
        ("DUET_TEST_TCP_PORT_PLUGIN", "duet_plugin_tcp_port.wasm"),
        ("DUET_TEST_FILE_AGE_PLUGIN", "duet_plugin_file_age.wasm"),
    ] {
        println!("cargo:rustc-env={env}={}", dir.join(file).display());
    }
    println!(
        "cargo:rustc-env=DUET_TEST_HOSTILE_CORE={}",
        dir.join("duet_test_hostile_core.wasm").display()
    );
    println!(
        "cargo:rustc-env=DUET_TEST_HELLO_PLUGIN={}",
        dir.join("duet_plugin_hello.wasm").display()
    );
}
