//! duet-probe-sdk: write a duet probe plugin (world `duet:probe/probe-plugin`) without touching
//! wit-bindgen. Implement [`Probe`] and call [`export_probe!`]; build for `wasm32-wasip2`.
//!
//! ```ignore
//! use duet_probe_sdk::{export_probe, Description, Outcome, Probe, Status};
//!
//! struct Hello;
//!
//! impl Probe for Hello {
//!     fn describe() -> Description {
//!         Description { name: "hello".into(), version: "0.1.0".into(), default_interval_ms: 5_000, capabilities: vec![] }
//!     }
//!     fn check(_config: &str) -> Result<Outcome, String> {
//!         Ok(Outcome { status: Status::Ok, value: "Hello".into(), reason: None, metrics: vec![] })
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

/// A probe plugin.
pub trait Probe {
    /// Name, version, default interval and the capabilities the plugin needs.
    fn describe() -> Description;
    /// One check. `config` is the plugin's table from the host configuration, as JSON.
    /// `Err` means the probe itself or its configuration is at fault, not the checked thing.
    fn check(config: &str) -> Result<Outcome, String>;
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
                fn check(config: ::std::string::String) -> ::std::result::Result<$crate::Outcome, ::std::string::String> {
                    <$probe as $crate::Probe>::check(&config)
                }
            }
            $crate::bindings::__export_probe_plugin!(DuetProbeExport with_types_in $crate::bindings);
        };
    };
}
