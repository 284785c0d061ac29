//! The host's core runtime: what it refuses, and how it contains a core that misbehaves.

use std::path::PathBuf;
use std::time::Duration;

use duet_core::{FailoverState, Input, MachineState, Mode};
use duet_host::runtime::{CoreOrigin, CoreRuntime, EMBEDDED_CORE, Limits, LoadError};

use crate::support::{HANG_CORE, HELLO_PLUGIN, runtime};

#[test]
fn refuses_component_without_core_exports() {
    let bytes = std::fs::read(HELLO_PLUGIN).expect("hello plugin");
    let err = runtime()
        .load(&bytes, CoreOrigin::File(PathBuf::from(HELLO_PLUGIN)))
        .err()
        .expect("must be refused");
    assert!(matches!(err, LoadError::MissingExport { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("does not export duet:core/rules@0.1.0"),
        "{text}"
    );
    assert!(
        text.contains("duet:probe/probe@0.1.0"),
        "the error lists what the component does export: {text}"
    );
}

#[test]
fn refuses_bytes_that_are_not_a_component() {
    let truncated = &EMBEDDED_CORE[..EMBEDDED_CORE.len() / 2];
    for bytes in [b"not wasm at all".as_slice(), truncated] {
        let err = runtime()
            .load(bytes, CoreOrigin::File("x.wasm".into()))
            .err()
            .expect("must be refused");
        assert!(matches!(err, LoadError::Invalid(_)), "{err}");
    }
}

#[test]
fn accepts_the_embedded_core_from_a_file() {
    let rt = runtime();
    let core = rt
        .load(EMBEDDED_CORE, CoreOrigin::File("core.wasm".into()))
        .expect("valid core");
    assert_eq!(core.origin(), &CoreOrigin::File("core.wasm".into()));
}

#[test]
fn looping_core_is_cut_at_its_deadline_and_the_embedded_core_answers() {
    // A runtime of its own: this test installs a core, the others share the default one.
    let rt = CoreRuntime::new(Limits {
        deadline: Duration::from_millis(50),
        memory_bytes: 16 << 20,
    })
    .expect("runtime");
    let hang = std::fs::read(HANG_CORE).expect("hang core");
    rt.install(
        rt.load(&hang, CoreOrigin::File(HANG_CORE.into()))
            .expect("the hang core is a valid core"),
    );
    assert_eq!(rt.active(), CoreOrigin::File(HANG_CORE.into()));

    let state = MachineState::new(FailoverState::Offline, Mode::Automatic, 0);
    let input = Input::quiet("a");
    let answered = rt.step(&state, &input, 1_000);
    assert_eq!(answered.by, CoreOrigin::Embedded);
    assert_eq!(
        answered.value,
        duet_core::failover::step(&state, &input, 1_000)
    );
    let (failed, why) = answered.failed.expect("the hang core failed this call");
    assert_eq!(failed, CoreOrigin::File(HANG_CORE.into()));
    assert!(why.contains("deadline"), "{why}");
    // The failed core was replaced: later calls go straight to the embedded one.
    assert_eq!(rt.active(), CoreOrigin::Embedded);
    assert!(rt.step(&state, &input, 1_001).failed.is_none());
}
