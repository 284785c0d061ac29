//! duet-host: the native host of a duet failover pair, the `duet` binary's library.
//!
//! - [`config`]: the TOML configuration, parsed then validated, errors naming the key path.
//! - [`runtime`]: the core component run by wasmtime, with deadlines, memory limits, fallback
//!   to the embedded core, and hot replacement.
//! - [`agent`]: the tick loop: probes → core → actions, and the status it publishes.
//! - [`api`]: the HTTP API and the web UI.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = duet_host::config::load(std::path::Path::new("duet.toml"))?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! duet_host::run(config, duet_host::agent::RunOptions::default(), shutdown).await
//! # }
//! ```

pub mod agent;
pub mod api;
pub mod auth;
pub mod bindings;
pub mod config;
pub mod frame;
pub mod metrics;
pub mod pcap;
pub mod runtime;
pub mod state_file;
pub mod status_cli;
mod web;

pub use agent::run;

/// Locks a mutex, recovering from poisoning: every guarded value here is replaced whole, so a
/// panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
