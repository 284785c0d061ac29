//! duet-host: the native host of a duet failover pair, the `duet` binary's library.
//!
//! - [`config`]: the TOML configuration, parsed then validated, errors naming the key path.
//! - [`runtime`]: the core component run by wasmtime, with deadlines, memory limits, fallback
//!   to the embedded core, and hot replacement.
//! - [`plugins`]: custom probe plugins (WASM components in a folder), sandboxed, hot-loaded.
//! - [`agent`]: the tick loop: probes → core → actions, and the status it publishes.
//! - [`probes`]: built-in probes: Configuration, NATS communication, RTE watchdog, NICs.
//! - [`peer`]: the peer link (agent heartbeats and the sync connection), over [`net`].
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
pub mod events;
pub mod failover_log;
pub mod metrics;
pub mod net;
pub mod pcap;
pub mod peer;
pub mod plugins;
pub mod probes;
pub mod runtime;
pub mod state_file;
pub mod status_cli;
pub mod vip;
mod web;

pub use agent::run;
/// The peer link's frame codec (its own crate, so the fuzz target builds without wasmtime).
pub use duet_frame as frame;

/// Locks a mutex, recovering from poisoning: every guarded value here is replaced whole, so a
/// panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
