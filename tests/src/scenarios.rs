//! Scenario files run through native duet-core and through core.wasm loaded by the host's
//! runtime (the code path `duet run` uses); outputs must be identical, and equal to
//! `expected.json` (`BLESS=1` rewrites it). Two kinds:
//!
//! - `scenario.json`: one agent — an initial state, a sequence of inputs, and evaluate calls;
//! - `pair.json`: two agents in the model check's simulated network, on a scripted plan; the
//!   output is the trace (transitions, requests, answers), and the model's invariants hold.

use std::path::Path;

use duet_core::{
    Answer, BuddyView, Decision, FailoverConfig, FailoverState, Heartbeat, HeartbeatKind, Input,
    MachineState, Observations, OperatorCommand, PairReport, ReceivedReport, RequestReason,
    RulesConfig, TimestampMs, VipResult,
};
use duet_host::runtime::CoreOrigin;
use serde::{Deserialize, Serialize};

use crate::model::{Plan, simulate};
use crate::support::{runtime, workspace};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario shows, in one sentence.
    #[allow(dead_code)]
    about: String,
    agent: String,
    /// When the agent started (default 0).
    #[serde(default)]
    started_at: TimestampMs,
    #[serde(default)]
    config: Option<FailoverConfig>,
    initial: MachineState,
    #[serde(default)]
    steps: Vec<StepSpec>,
    #[serde(default)]
    evaluate: Vec<EvaluateSpec>,
}

/// One `failover.step` call; the state is the previous step's decision.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    now: TimestampMs,
    #[serde(default)]
    heartbeats: Vec<HeartbeatSpec>,
    #[serde(default)]
    sync_up: bool,
    #[serde(default)]
    buddy: Option<BuddyView>,
    #[serde(default)]
    command: Option<OperatorCommand>,
    #[serde(default)]
    offline_request: Option<RequestReason>,
    #[serde(default)]
    remembered: Option<FailoverState>,
    #[serde(default)]
    answer: Option<Answer>,
    #[serde(default)]
    triggers: Vec<String>,
    #[serde(default)]
    vip: Option<VipResult>,
    #[serde(default)]
    nics: Vec<duet_core::Nic>,
    #[serde(default)]
    fenced: Option<u64>,
    #[serde(default)]
    witness: Option<duet_core::Witness>,
}

/// A heartbeat with defaults: ok when it has no failures, 3 allowed failures.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatSpec {
    id: String,
    kind: HeartbeatKind,
    #[serde(default)]
    failures: u32,
    #[serde(default = "three")]
    max_failures: u32,
    #[serde(default)]
    last_success: Option<TimestampMs>,
}

fn three() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateSpec {
    now: TimestampMs,
    observations: Observations,
    #[serde(default)]
    buddy: Option<ReceivedReport>,
    #[serde(default)]
    config: Option<RulesConfig>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Expected {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    decisions: Vec<Decision>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reports: Vec<PairReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace: Vec<String>,
}

/// Two agents on a scripted plan in the model's simulated network.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairScenario {
    /// What the scenario shows, in one sentence.
    #[allow(dead_code)]
    about: String,
    /// Seeds the simulated network's delays.
    seed: u64,
    plan: Plan,
}

fn run_pair(p: &PairScenario) -> Result<Expected, String> {
    let native = simulate(&p.plan, p.seed, &duet_core::failover::step)
        .map_err(|v| format!("native: {v}"))?;
    let rt = runtime();
    let not_wasm = std::cell::Cell::new(None);
    let wasm_step = |s: &MachineState, i: &Input, now: TimestampMs| {
        let answered = rt.step(s, i, now);
        if answered.by != CoreOrigin::Embedded {
            not_wasm.set(Some(answered.by.to_string()));
        }
        answered.value
    };
    let wasm = simulate(&p.plan, p.seed, &wasm_step).map_err(|v| format!("core.wasm: {v}"))?;
    if let Some(by) = not_wasm.take() {
        return Err(format!("core.wasm did not answer ({by})"));
    }
    if native != wasm {
        return Err(format!(
            "native and core.wasm traces differ:\nnative:\n{native}\nwasm:\n{wasm}"
        ));
    }
    Ok(Expected {
        decisions: Vec::new(),
        reports: Vec::new(),
        trace: native.lines().map(String::from).collect(),
    })
}

impl StepSpec {
    fn input(&self, agent: &str, started_at: TimestampMs, config: FailoverConfig) -> Input {
        Input {
            agent: agent.to_string(),
            started_at,
            config,
            heartbeats: self
                .heartbeats
                .iter()
                .map(|h| Heartbeat {
                    id: h.id.clone(),
                    kind: h.kind,
                    target: h.id.clone(),
                    ok: h.failures == 0,
                    failures: h.failures,
                    max_failures: h.max_failures,
                    last_success: h.last_success,
                    reason: (h.failures > 0).then(|| "timed out".to_string()),
                    rtt_us: None,
                })
                .collect(),
            sync_up: self.sync_up,
            buddy: self.buddy.clone(),
            command: self.command.clone(),
            offline_request: self.offline_request,
            remembered: self.remembered,
            answer: self.answer.clone(),
            triggers: self.triggers.clone(),
            vip: self.vip.clone(),
            nics: self.nics.clone(),
            fenced: self.fenced,
            witness: self.witness.clone(),
        }
    }
}

/// Runs one scenario natively and through core.wasm; returns the (identical) outputs.
fn run(s: &Scenario) -> Result<Expected, String> {
    let rt = runtime();
    let config = s.config.unwrap_or_default();
    let (mut native_state, mut wasm_state) = (s.initial, s.initial);
    let mut decisions = Vec::new();
    for (i, spec) in s.steps.iter().enumerate() {
        let input = spec.input(&s.agent, s.started_at, config);
        let native = duet_core::failover::step(&native_state, &input, spec.now);
        let wasm = rt.step(&wasm_state, &input, spec.now);
        if wasm.by != CoreOrigin::Embedded {
            return Err(format!("step {i}: core.wasm did not answer ({})", wasm.by));
        }
        if native != wasm.value {
            return Err(format!(
                "step {i}: native and core.wasm differ:\nnative: {native:?}\nwasm:   {:?}",
                wasm.value
            ));
        }
        native_state = native.state;
        wasm_state = wasm.value.state;
        decisions.push(native);
    }
    let mut reports = Vec::new();
    for (i, spec) in s.evaluate.iter().enumerate() {
        let config = spec.config.unwrap_or_default();
        let native =
            duet_core::rules::evaluate(&spec.observations, spec.buddy.as_ref(), &config, spec.now);
        let wasm = rt.evaluate(
            spec.observations.clone(),
            spec.buddy.clone(),
            &config,
            spec.now,
        );
        if wasm.by != CoreOrigin::Embedded || native != wasm.value {
            return Err(format!(
                "evaluate {i}: native and core.wasm differ ({}):\nnative: {native:?}\nwasm:   {:?}",
                wasm.by, wasm.value
            ));
        }
        reports.push(native);
    }
    Ok(Expected {
        decisions,
        reports,
        trace: Vec::new(),
    })
}

fn check_dir(dir: &Path, bless: bool) -> Result<(), String> {
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let got = if dir.join("pair.json").exists() {
        let pair: PairScenario =
            serde_json::from_str(&read("pair.json")?).map_err(|e| format!("pair.json: {e}"))?;
        run_pair(&pair)?
    } else {
        let scenario: Scenario = serde_json::from_str(&read("scenario.json")?)
            .map_err(|e| format!("scenario.json: {e}"))?;
        run(&scenario)?
    };
    let expected_path = dir.join("expected.json");
    if bless {
        let text = serde_json::to_string_pretty(&got).map_err(|e| e.to_string())? + "\n";
        return std::fs::write(&expected_path, text).map_err(|e| format!("expected.json: {e}"));
    }
    let expected: Expected = serde_json::from_str(&read("expected.json")?)
        .map_err(|e| format!("expected.json: {e} (BLESS=1 writes it)"))?;
    if expected != got {
        let got = serde_json::to_string_pretty(&got).map_err(|e| e.to_string())?;
        return Err(format!(
            "outputs differ from expected.json (BLESS=1 rewrites it); got:\n{got}"
        ));
    }
    Ok(())
}

#[test]
fn scenario_files_match_native_and_wasm() {
    let bless = std::env::var_os("BLESS").is_some();
    let root = workspace().join("tests/scenarios");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/scenarios")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 6,
        "expected the scenario files under {}",
        root.display()
    );
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            check_dir(d, bless).err().map(|e| {
                format!(
                    "{}: {e}",
                    d.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
