//! duet-probe-sdk: write a duet probe plugin (world `duet:probe/probe-plugin`) without touching
//! wit-bindgen. Implement [`Probe`] and call [`export_probe!`]; build for `wasm32-wasip2`.
//! [`Config`] reads the plugin's table from the operator's configuration with errors that name
//! the key; [`host::disk_space_of`] is the one host function beyond WASI.
//!
//! ```ignore
//! use duet_probe_sdk::{export_probe, Config, Description, Outcome, Probe};
//!
//! struct Hello;
//!
//! impl Probe for Hello {
//!     fn describe() -> Description {
//!         Description::new("hello", env!("CARGO_PKG_VERSION"), 5_000)
//!     }
//!     fn check(_config: &Config) -> Result<Outcome, String> {
//!         Ok(Outcome::ok("Hello"))
//!     }
//! }
//!
//! export_probe!(Hello);
//! ```

/// The generated bindings of `wit/probe` (used by [`export_probe!`]).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "probe-plugin",
        path: "../../wit/probe",
        pub_export_macro: true,
        export_macro_name: "__export_probe_plugin",
        default_bindings_module: "duet_probe_sdk::bindings",
    });
}

pub use bindings::duet::probe::types::{Capability, Description, Metric, Outcome, Status};

/// Host functions beyond WASI; each checks the operator's grant first.
pub mod host {
    pub use crate::bindings::duet::probe::host::{DiskSpace, disk_space_of};
}

/// A probe plugin.
pub trait Probe {
    /// Name, version, default interval and the capabilities the plugin needs.
    fn describe() -> Description;
    /// One check with the plugin's table from the host configuration.
    /// `Err` means the probe itself or its configuration is at fault, not the checked thing.
    fn check(config: &Config) -> Result<Outcome, String>;
}

impl Description {
    /// A description with no capabilities; add them with [`Description::needs`].
    pub fn new(name: &str, version: &str, default_interval_ms: u32) -> Self {
        Description {
            name: name.into(),
            version: version.into(),
            default_interval_ms,
            capabilities: Vec::new(),
        }
    }

    /// Declares a capability the plugin needs (used only if the operator grants it too).
    pub fn needs(mut self, capability: Capability) -> Self {
        self.capabilities.push(capability);
        self
    }
}

impl Outcome {
    /// Healthy, showing `value`.
    pub fn ok(value: impl Into<String>) -> Self {
        Outcome {
            status: Status::Ok,
            value: value.into(),
            reason: None,
            metrics: Vec::new(),
        }
    }

    /// Unhealthy, showing `value`, because of `reason`.
    pub fn failing(value: impl Into<String>, reason: impl Into<String>) -> Self {
        Outcome {
            status: Status::Failing,
            value: value.into(),
            reason: Some(reason.into()),
            metrics: Vec::new(),
        }
    }

    /// Adds a measurement.
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.push(Metric {
            name: name.into(),
            value,
        });
        self
    }
}

/// The plugin's configuration table (`[plugins.plugin.<name>.config]`), with errors that name
/// the key.
#[derive(Debug, Clone, Default)]
pub struct Config(serde_json::Map<String, serde_json::Value>);

impl Config {
    /// Parses the JSON the host passes to `check`.
    pub fn parse(json: &str) -> Result<Self, String> {
        if json.trim().is_empty() {
            return Ok(Config::default());
        }
        match serde_json::from_str(json) {
            Ok(serde_json::Value::Object(map)) => Ok(Config(map)),
            Ok(_) => Err("the plugin's config is not a table".into()),
            Err(e) => Err(format!("the plugin's config is not valid JSON: {e}")),
        }
    }

    /// A string, if present.
    pub fn str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("config.{key}: expected a string, found {other}")),
        }
    }

    /// A string that must be present.
    pub fn required_str(&self, key: &str) -> Result<&str, String> {
        self.str(key)?
            .ok_or_else(|| format!("config.{key} is missing"))
    }

    /// A non-negative integer, if present.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("config.{key}: expected a non-negative integer, found {v}")),
        }
    }

    /// The raw value, for anything else.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }
}

/// Exports a [`Probe`] implementation as the plugin's `duet:probe/probe` interface.
#[macro_export]
macro_rules! export_probe {
    ($probe:ty) => {
        const _: () = {
            struct DuetProbeExport;
            impl $crate::bindings::exports::duet::probe::probe::Guest for DuetProbeExport {
                fn describe() -> $crate::Description {
                    <$probe as $crate::Probe>::describe()
                }
                fn check(
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::Outcome, ::std::string::String> {
                    let config = $crate::Config::parse(&config)?;
                    <$probe as $crate::Probe>::check(&config)
                }
            }
            $crate::bindings::__export_probe_plugin!(DuetProbeExport with_types_in $crate::bindings);
        };
    };
}
