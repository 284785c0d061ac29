//! duet-core-component: duet-core behind the WIT world `duet:core/core`, built for
//! `wasm32-wasip2` into `core.wasm`. Thin on purpose: convert in, call duet-core, convert out.

wit_bindgen::generate!({
    world: "core",
    path: "../../wit/core",
});

use duet::core::types;
use duet_core::wit::WitInto;
use exports::duet::core::{failover, rules};

duet_core::wit_conversions!(duet::core::types);

struct Core;

impl rules::Guest for Core {
    fn evaluate(
        local: types::Observations,
        buddy_received_at: Option<types::TimestampMs>,
        config: types::RulesConfig,
        now: types::TimestampMs,
    ) -> types::Columns {
        let local: duet_core::Observations = local.wit_into();
        let config: duet_core::RulesConfig = config.wit_into();
        duet_core::rules::columns(&local, buddy_received_at, &config, now).wit_into()
    }
}

impl failover::Guest for Core {
    fn step(
        state: types::MachineState,
        input: types::Input,
        now: types::TimestampMs,
    ) -> types::Decision {
        let state: duet_core::MachineState = state.wit_into();
        let input: duet_core::Input = input.wit_into();
        duet_core::failover::step(&state, &input, now).wit_into()
    }
}

export!(Core);
