//! Custom probe plugins: WASM components (world `duet:probe/probe-plugin`) dropped into a
//! folder, loaded without restarting or recompiling the host, each run sandboxed (WASI p2
//! granting only what is declared and granted, a deadline, a memory and an output limit per
//! call) on its own interval. Each plugin is a row of the Status window.
//!
//! - [`config`]: the `[plugins]` section.
//! - [`sandbox`]: compiling (cached, bounded), validating and calling one plugin under its
//!   limits (deadline, one memory limit over all memories and tables, output).
//! - `guard`: what WASI may touch — regular files only, sockets and files capped, refusals
//!   named and logged at a bounded rate.
//! - `budget`: the compartment — a thread and a few I/O threads per plugin at lower priority,
//!   one CPU budget for all plugins.
//! - [`run`]: the folder watcher and the per-plugin threads, writing a [`PluginTable`] (also
//!   rendered for `/metrics`).
//! - [`process`]: the agent runs all that in a process of its own (`duet plugin-host`) and
//!   mirrors its rows: the plugins share no address space, allocator or thread with the
//!   decision path.

#![warn(clippy::too_many_lines)]

mod bindings;
mod budget;
pub mod config;
mod guard;
mod loader;
pub mod process;
pub mod sandbox;

/// A check's outcome as the plugin reports it.
pub use bindings::probe::duet::probe::types::Status as CheckStatus;
pub use loader::{CheckReport, OnChange, PluginStatus, PluginTable, check_file, load_file, run};
pub use sandbox::{Compiled, Fault, Grants, Instance, PluginEngine};
