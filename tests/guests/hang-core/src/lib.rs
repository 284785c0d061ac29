//! A hostile core for tests: it exports the whole `duet:core/core` world, so the host accepts
//! it, and every call loops forever, so only the host's deadline can stop it.

wit_bindgen::generate!({
    world: "core",
    path: "../../../wit/core",
});

use duet::core::types;
use exports::duet::core::{failover, rules};

struct Hang;

fn forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl rules::Guest for Hang {
    fn evaluate(
        _: types::Observations,
        _: Option<types::ReceivedReport>,
        _: types::RulesConfig,
        _: types::TimestampMs,
    ) -> types::PairReport {
        forever()
    }
}

impl failover::Guest for Hang {
    fn step(_: types::MachineState, _: types::Input, _: types::TimestampMs) -> types::Decision {
        forever()
    }
}

export!(Hang);
