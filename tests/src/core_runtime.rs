//! The host's core runtime: what it refuses, and how it contains a core that misbehaves.

use std::path::PathBuf;
use std::time::Duration;

use duet_core::{FailoverState, Input, MachineState, Mode};
use duet_host::runtime::{CoreOrigin, CoreRuntime, EMBEDDED_CORE, Limits, LoadError};

use crate::support::{HELLO_PLUGIN, HOSTILE_CORE, runtime};

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

/// A runtime of its own (the other tests share one) with the hostile core installed.
fn hostile_runtime(limits: Limits) -> CoreRuntime {
    let rt = CoreRuntime::new(limits).expect("runtime");
    let hostile = std::fs::read(HOSTILE_CORE).expect("hostile core");
    let core = rt
        .load(&hostile, CoreOrigin::File(HOSTILE_CORE.into()))
        .expect("the hostile core is a valid core");
    rt.install(core);
    assert_eq!(rt.active(), CoreOrigin::File(HOSTILE_CORE.into()));
    rt
}

#[test]
fn looping_core_is_cut_at_its_deadline_and_the_embedded_core_answers() {
    let rt = hostile_runtime(Limits {
        deadline: Duration::from_millis(50),
        memory_bytes: 16 << 20,
    });

    let state = MachineState::new(FailoverState::Offline, Mode::Automatic, 0);
    let input = Input::quiet("a");
    let answered = rt.step(&state, &input, 1_000);
    assert_eq!(answered.by, CoreOrigin::Embedded);
    assert_eq!(
        answered.value,
        duet_core::failover::step(&state, &input, 1_000)
    );
    let (failed, why) = answered.failed.expect("the hostile core failed this call");
    assert_eq!(failed, CoreOrigin::File(HOSTILE_CORE.into()));
    assert!(why.contains("deadline"), "{why}");
    // The failed core was replaced: later calls go straight to the embedded one, and the
    // runtime error stays visible (RTE Count, metrics) until another core is installed.
    assert_eq!(rt.active(), CoreOrigin::Embedded);
    assert_eq!(rt.fallbacks(), 1);
    assert!(
        rt.fault()
            .is_some_and(|(o, _)| o == CoreOrigin::File(HOSTILE_CORE.into()))
    );
    assert!(rt.step(&state, &input, 1_001).failed.is_none());
    rt.install(
        rt.load(EMBEDDED_CORE, CoreOrigin::File("good.wasm".into()))
            .expect("valid core"),
    );
    assert!(
        rt.fault().is_none(),
        "a newly installed core clears the runtime error"
    );
}

#[test]
fn core_growing_past_its_memory_limit_is_stopped_and_the_embedded_core_answers() {
    let rt = hostile_runtime(Limits {
        deadline: Duration::from_secs(5),
        memory_bytes: 16 << 20,
    });

    let obs = duet_core::Observations {
        agent: "a".into(),
        buddy: "b".into(),
        started_at: 0,
        state: FailoverState::Offline,
        mode: Mode::Automatic,
        configuration: duet_core::Check::Ok,
        heartbeats: Vec::new(),
        sync: duet_core::Check::NotConfigured,
        database: duet_core::Check::NotConfigured,
        nats: duet_core::Check::NotConfigured,
        rte_count: 0,
        probes: Vec::new(),
        nics: Vec::new(),
    };
    let config = duet_core::RulesConfig::default();
    let answered = rt.evaluate(obs.clone(), None, &config, 60_000);
    assert_eq!(answered.by, CoreOrigin::Embedded);
    assert_eq!(
        answered.value,
        duet_core::rules::evaluate(&obs, None, &config, 60_000)
    );
    let (failed, why) = answered.failed.expect("the hostile core failed this call");
    assert_eq!(failed, CoreOrigin::File(HOSTILE_CORE.into()));
    assert!(
        !why.contains("deadline"),
        "stopped by the memory limit, not the 5 s deadline: {why}"
    );
    assert_eq!(rt.active(), CoreOrigin::Embedded);
}
