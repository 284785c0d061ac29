//! evaluate and step per call: native duet-core vs core.wasm through the host's runtime.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use duet_core::{
    Check, FailoverState, Heartbeat, HeartbeatKind, Input, MachineState, Mode, Observations,
    RulesConfig,
};
use duet_runtime::{CoreOrigin, CoreRuntime, Limits};

fn heartbeats() -> Vec<Heartbeat> {
    let hb = |id: &str, kind, failures| Heartbeat {
        id: id.into(),
        kind,
        target: "10.0.0.2".into(),
        ok: failures == 0,
        failures,
        max_failures: 3,
        last_success: Some(1_700_000_000_000),
        reason: (failures > 0).then(|| "timed out".to_string()),
        rtt_us: Some(180),
    };
    vec![
        hb("corp", HeartbeatKind::Agent, 0),
        hb("acq", HeartbeatKind::Agent, 1),
        hb("gw", HeartbeatKind::Inverted, 0),
        hb("ping", HeartbeatKind::Ping, 0),
    ]
}

/// Times `run` alone, `iters` times, each on fresh inputs from `prepare` (untimed): the agent
/// builds its observations and the buddy's received report every tick whichever core runs, and
/// hands them over by value. Dropping the answer is timed.
fn owned_inputs<I, O>(iters: u64, prepare: impl Fn() -> I, run: impl Fn(I) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = prepare();
        let start = Instant::now();
        drop(black_box(run(input)));
        total += start.elapsed();
    }
    total
}

fn bench(c: &mut Criterion) {
    let rt = CoreRuntime::new(Limits::default()).expect("core runtime");
    let now = 1_700_000_100_000;
    let obs = Observations {
        agent: "agent-a".into(),
        buddy: "agent-b".into(),
        started_at: now - 60_000,
        state: FailoverState::Online,
        mode: Mode::Automatic,
        configuration: Check::Ok,
        heartbeats: heartbeats(),
        sync: Check::Ok,
        database: Check::Ok,
        nats: Check::Failing("no responders".into()),
        rte_count: 0,
        probes: Vec::new(),
        nics: Vec::new(),
    };
    let config = RulesConfig::default();
    let state = MachineState::new(FailoverState::Offline, Mode::Automatic, now - 30_000);
    let mut input = Input::quiet("agent-a");
    input.heartbeats = heartbeats();
    assert_eq!(rt.step(&state, &input, now).by, CoreOrigin::Embedded);

    let mut g = c.benchmark_group("evaluate");
    g.bench_function("native", |b| {
        b.iter_custom(|n| {
            owned_inputs(
                n,
                || obs.clone(),
                |o| duet_core::rules::evaluate(&o, None, &config, now),
            )
        })
    });
    g.bench_function("wasm", |b| {
        b.iter_custom(|n| owned_inputs(n, || obs.clone(), |o| rt.evaluate(o, None, &config, now)))
    });
    g.finish();
    let mut g = c.benchmark_group("step");
    g.bench_function("native", |b| {
        b.iter(|| duet_core::failover::step(&state, &input, now))
    });
    g.bench_function("wasm", |b| b.iter(|| rt.step(&state, &input, now)));
    g.finish();
}

/// A full two-agent report, checked in: every row kind on this agent (heartbeats of each kind,
/// sync, RTE, NICs, database, NATS, plugins) and the buddy's full last report.
#[derive(serde::Deserialize)]
struct FullPair {
    observations: Observations,
    buddy: duet_core::ReceivedReport,
    config: RulesConfig,
    now: u64,
}

fn bench_full(c: &mut Criterion) {
    let rt = CoreRuntime::new(Limits::default()).expect("core runtime");
    let text = include_str!("full-pair.json");
    let full: FullPair = serde_json::from_str(text).expect("benches/full-pair.json");
    let native = duet_core::rules::evaluate(
        &full.observations,
        Some(&full.buddy),
        &full.config,
        full.now,
    );
    let wasm = rt.evaluate(
        full.observations.clone(),
        Some(full.buddy.clone()),
        &full.config,
        full.now,
    );
    assert_eq!(wasm.by, CoreOrigin::Embedded);
    assert_eq!(wasm.value, native, "core.wasm and native agree");
    assert!(
        native.local.rows.len() >= 14,
        "a full report: {} rows",
        native.local.rows.len()
    );
    let mut g = c.benchmark_group("evaluate-full");
    let inputs = || (full.observations.clone(), full.buddy.clone());
    g.bench_function("native", |b| {
        b.iter_custom(|n| {
            owned_inputs(n, inputs, |(o, r)| {
                let at = Some(r.received_at);
                duet_core::rules::columns(&o, at, &full.config, full.now).with_buddy(Some(r))
            })
        })
    });
    g.bench_function("wasm", |b| {
        b.iter_custom(|n| {
            owned_inputs(n, inputs, |(o, r)| {
                rt.evaluate(o, Some(r), &full.config, full.now)
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_full);
criterion_main!(benches);
