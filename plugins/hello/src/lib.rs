//! The smallest duet probe plugin: reports "Hello" and is always healthy. A template to start
//! from (`cargo xtask plugin new NAME` copies it).

use duet_probe_sdk::{Config, Description, Outcome, Probe, export_probe};

struct Hello;

impl Probe for Hello {
    fn describe() -> Description {
        Description::new("hello", env!("CARGO_PKG_VERSION"), 5_000)
    }

    fn check(_config: &Config) -> Result<Outcome, String> {
        Ok(Outcome::ok("Hello"))
    }
}

export_probe!(Hello);
