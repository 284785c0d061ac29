//! Built-in probes behind Status rows of their own: Configuration ([`configuration`]), NATS
//! communication ([`nats`]), RTE Count ([`watchdog`]) and NIC <name> ([`nic`]).

pub mod configuration;
pub mod nats;
pub mod nic;
pub mod watchdog;

use std::sync::Arc;
use std::time::Duration;

/// The `[watchdog]` section, validated.
#[derive(Debug, Clone, Copy)]
pub struct WatchdogConfig {
    /// How long a probe call (NATS) may take before it is a runtime error.
    pub deadline: Duration,
    /// A runtime error hands over to the buddy (on the Online agent, like any switch trigger).
    pub switch_trigger: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            deadline: Duration::from_secs(5),
            switch_trigger: false,
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWatchdog {
    deadline: Option<String>,
    switch_trigger: Option<bool>,
}

/// Validates `[watchdog]`, pushing every mistake onto `errors`.
pub(crate) fn validate_watchdog(
    raw: RawWatchdog,
    errors: &mut Vec<crate::config::ConfigError>,
) -> WatchdogConfig {
    let d = WatchdogConfig::default();
    let deadline = crate::config::duration(
        errors,
        "watchdog.deadline",
        raw.deadline.as_deref(),
        d.deadline,
        (Duration::from_millis(10), Duration::from_secs(3600)),
    );
    WatchdogConfig {
        deadline,
        switch_trigger: raw.switch_trigger.unwrap_or(d.switch_trigger),
    }
}

/// The built-in probes' shared state, held by the agent.
#[derive(Default)]
pub struct Probes {
    pub watchdog: Arc<watchdog::Watchdog>,
    pub nics: Arc<nic::NicWatcher>,
    pub nats: Arc<nats::NatsState>,
}
