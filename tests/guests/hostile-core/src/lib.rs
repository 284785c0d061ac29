//! A hostile core for tests: it exports the whole `duet:core/core` world, so the host accepts
//! it, but `failover.step` loops forever (only the deadline stops it) and `rules.evaluate`
//! allocates without bound (only the memory limit stops it).

wit_bindgen::generate!({
    world: "core",
    path: "../../../wit/core",
});

use duet::core::types;
use exports::duet::core::{failover, rules};

struct Hostile;

impl rules::Guest for Hostile {
    fn evaluate(
        _: types::Observations,
        _: Option<types::TimestampMs>,
        _: types::RulesConfig,
        _: types::TimestampMs,
    ) -> types::Columns {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

impl failover::Guest for Hostile {
    fn step(_: types::MachineState, _: types::Input, _: types::TimestampMs) -> types::Decision {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(Hostile);
