//! The smallest duet probe plugin: reports "Hello" and is always healthy.

use duet_probe_sdk::{Description, Outcome, Probe, Status, export_probe};

struct Hello;

impl Probe for Hello {
    fn describe() -> Description {
        Description {
            name: "hello".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            default_interval_ms: 5_000,
            capabilities: Vec::new(),
        }
    }

    fn check(_config: &str) -> Result<Outcome, String> {
        Ok(Outcome {
            status: Status::Ok,
            value: "Hello".into(),
            reason: None,
            metrics: Vec::new(),
        })
    }
}

export_probe!(Hello);
