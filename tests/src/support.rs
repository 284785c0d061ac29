//! Helpers shared by the test modules.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use duet_host::runtime::{CoreRuntime, Limits};

/// A core component whose `step` loops forever and whose `evaluate` grows memory without bound.
pub const HOSTILE_CORE: &str = env!("DUET_TEST_HOSTILE_CORE");
/// The trivial example probe plugin (a component that is not a core).
pub const HELLO_PLUGIN: &str = env!("DUET_TEST_HELLO_PLUGIN");

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

/// The `duet` binary of this build (`cargo xtask test` builds it before the tests).
pub fn duet_bin() -> PathBuf {
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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
