//! Differential test: generated inputs through native duet-core and through core.wasm must give
//! identical outputs. A seeded generator, so a failure names the seed that reproduces it.

use duet_core::{
    Answer, BuddyView, Check, Command, FailoverConfig, FailoverState, Heartbeat, HeartbeatKind,
    Input, Led, MachineState, Mode, Observations, OperatorCommand, Probe, ReceivedReport, Report,
    RequestReason, Row, RulesConfig, VipResult,
};
use duet_host::runtime::CoreOrigin;

use crate::support::runtime;

const CASES: u64 = 10_000;

/// SplitMix64: small, seeded, good enough to spread inputs.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn flip(&mut self) -> bool {
        self.below(2) == 0
    }
    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.flip() { Some(f(self)) } else { None }
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn small(&mut self) -> u32 {
        self.below(7) as u32
    }
    fn text(&mut self) -> String {
        self.pick(&["a", "b", "agent-a", "agent-b", "", "ünïcode ✓", "10.0.0.1"])
            .to_string()
    }
    fn state(&mut self) -> FailoverState {
        self.pick(&[
            FailoverState::Offline,
            FailoverState::PreparingToGoOnline,
            FailoverState::GoingOnline,
            FailoverState::Online,
            FailoverState::GoingOffline,
        ])
    }
    fn check(&mut self) -> Check {
        match self.below(3) {
            0 => Check::NotConfigured,
            1 => Check::Ok,
            _ => Check::Failing(self.text()),
        }
    }
    fn heartbeats(&mut self) -> Vec<Heartbeat> {
        (0..self.below(5))
            .map(|i| {
                let failures = self.small();
                Heartbeat {
                    id: format!("hb{i}"),
                    kind: self.pick(&[
                        HeartbeatKind::Agent,
                        HeartbeatKind::Ping,
                        HeartbeatKind::Inverted,
                    ]),
                    target: self.text(),
                    ok: failures == 0,
                    failures,
                    max_failures: self.below(5) as u32,
                    last_success: self.maybe(|g| g.below(100_000)),
                    reason: self.maybe(Gen::text),
                    rtt_us: self.maybe(|g| g.below(10_000) as u32),
                }
            })
            .collect()
    }
    fn input(&mut self, now: u64) -> Input {
        Input {
            agent: self.pick(&["a", "b"]).to_string(),
            started_at: now.saturating_sub(self.below(30_000)),
            config: FailoverConfig {
                priority: self.below(3) as u32,
                vip_enabled: self.flip(),
                prepare_timeout_ms: self.below(20_000),
                going_online_timeout_ms: self.below(40_000),
                going_offline_timeout_ms: self.below(20_000),
                min_switch_interval_ms: self.below(60_000),
                startup_wait_ms: self.below(20_000),
            },
            heartbeats: self.heartbeats(),
            sync_up: self.flip(),
            buddy: self.maybe(|g| BuddyView {
                name: g.pick(&["a", "b"]).to_string(),
                priority: g.below(3) as u32,
                state: g.state(),
                isolated: g.flip(),
                received_at: now.saturating_sub(g.below(20_000)),
                was_online: g.flip(),
                yielding: g.maybe(|g| g.below(30_000)),
                outside_ok_at: g.maybe(|g| now.saturating_sub(g.below(20_000))),
            }),
            command: self.maybe(|g| OperatorCommand {
                by: g.text(),
                command: match g.below(4) {
                    0 => Command::Switch,
                    1 => Command::ForceOnline,
                    2 => Command::SetMode(Mode::Manual),
                    _ => Command::SetMode(Mode::Automatic),
                },
            }),
            offline_request: self.maybe(|g| {
                g.pick(&[
                    RequestReason::Takeover,
                    RequestReason::TieBreak,
                    RequestReason::Handover,
                    RequestReason::Operator,
                ])
            }),
            remembered: self.maybe(Gen::state),
            answer: self.maybe(|g| {
                if g.flip() {
                    Answer::Accepted
                } else {
                    Answer::Refused(g.text())
                }
            }),
            triggers: (0..self.below(3)).map(|_| self.text()).collect(),
            vip: self.maybe(|g| match g.below(3) {
                0 => VipResult::Acquired,
                1 => VipResult::Released,
                _ => VipResult::Failed(g.text()),
            }),
            nics: self.nics(),
            fenced: self.maybe(|g| g.below(5_000)),
            witness: self.maybe(|g| duet_core::Witness {
                reachable: g.flip(),
                held: g.flip(),
                free: g.flip(),
                holder: g.maybe(|g| g.pick(&["a", "b"]).to_string()),
                lease_ms: g.below(10_000),
            }),
        }
    }
    fn observations(&mut self, now: u64) -> Observations {
        Observations {
            agent: self.text(),
            buddy: self.text(),
            started_at: now.saturating_sub(self.below(20_000)),
            state: self.state(),
            mode: self.pick(&[Mode::Automatic, Mode::Manual]),
            configuration: self.check(),
            heartbeats: self.heartbeats(),
            sync: self.check(),
            database: self.check(),
            nats: self.check(),
            rte_count: self.small(),
            probes: (0..self.below(3))
                .map(|i| Probe {
                    key: format!("plugin:p{i}"),
                    label: self.text(),
                    status: self.check(),
                    value: self.text(),
                    counts_toward_led: self.flip(),
                    failures: self.small(),
                    last_success: self.maybe(|g| g.below(100_000)),
                })
                .collect(),
            nics: self.nics(),
        }
    }
    fn nics(&mut self) -> Vec<duet_core::Nic> {
        (0..self.below(3))
            .map(|i| duet_core::Nic {
                name: format!("eth{i}"),
                up: self.flip(),
                changed: self.flip(),
                carries_vip: self.flip(),
            })
            .collect()
    }
    fn received(&mut self, now: u64) -> ReceivedReport {
        ReceivedReport {
            report: Report {
                agent: self.text(),
                generated_at: self.below(100_000),
                state: self.maybe(Gen::state),
                led: self.pick(&[Led::Green, Led::Red, Led::Transparent]),
                rows: (0..self.below(4))
                    .map(|_| Row {
                        key: self.text(),
                        label: self.text(),
                        value: self.text(),
                        reason: self.maybe(Gen::text),
                        failures: self.maybe(Gen::small),
                        last_success: self.maybe(|g| g.below(100_000)),
                        turns_led_red: self.flip(),
                    })
                    .collect(),
            },
            received_at: now.saturating_sub(self.below(30_000)),
        }
    }
}

#[test]
fn step_is_identical_native_and_wasm_on_generated_inputs() {
    let rt = runtime();
    let mut g = Gen(0x5EED_0001);
    for case in 0..CASES {
        let now = 10_000 + g.below(200_000);
        let state = MachineState {
            state: g.state(),
            mode: g.pick(&[Mode::Automatic, Mode::Manual]),
            since: now.saturating_sub(g.below(60_000)),
            last_switch: g.maybe(|g| now.saturating_sub(g.below(90_000))),
            met_buddy: g.flip(),
            isolated_since: g.maybe(|g| now.saturating_sub(g.below(20_000))),
            forced: g.flip(),
            evidence_failures: g.maybe(|g| g.below(6) as u32),
        };
        let input = g.input(now);
        let native = duet_core::failover::step(&state, &input, now);
        let wasm = rt.step(&state, &input, now);
        assert_eq!(
            wasm.by,
            CoreOrigin::Embedded,
            "case {case}: core.wasm did not answer"
        );
        assert_eq!(
            native, wasm.value,
            "case {case} differs (seed 0x5EED_0001): state {state:?}, input {input:?}"
        );
    }
}

#[test]
fn evaluate_is_identical_native_and_wasm_on_generated_inputs() {
    let rt = runtime();
    let mut g = Gen(0x5EED_0002);
    for case in 0..CASES {
        let now = 10_000 + g.below(200_000);
        let obs = g.observations(now);
        let buddy = g.maybe(|g| g.received(now));
        let config = RulesConfig {
            startup_grace_ms: g.below(10_000),
            buddy_timeout_ms: g.below(20_000),
            vip_enabled: g.flip(),
        };
        let native = duet_core::rules::evaluate(&obs, buddy.as_ref(), &config, now);
        let wasm = rt.evaluate(obs.clone(), buddy.clone(), &config, now);
        assert_eq!(
            wasm.by,
            CoreOrigin::Embedded,
            "case {case}: core.wasm did not answer"
        );
        assert_eq!(native, wasm.value, "case {case} differs (seed 0x5EED_0002)");
    }
}
