//! duet-core: the status rules and the failover state machine of a duet pair.
//!
//! Pure Rust: no I/O, no clock, no randomness. Time and configuration are inputs; the new
//! state, the actions and the Status window's rows are outputs. The same crate builds natively
//! (the host's fallback, tests, benches, the web UI's model) and, through `core/component`, as
//! the WebAssembly component `core.wasm` that the host runs.
//!
//! - [`rules::evaluate`]: observations (+ the buddy's last report) → both Status columns.
//! - [`failover::step`]: machine state + input → [`Decision`] (new state, actions, reason).
//!
//! ```
//! use duet_core::{failover, FailoverState, MachineState, Mode};
//! let state = MachineState::new(FailoverState::Offline, Mode::Automatic, 0);
//! let input = duet_core::Input::quiet("a");
//! let decision = failover::step(&state, &input, 1_000);
//! assert_eq!(decision.state.state, FailoverState::Offline);
//! ```

pub mod api;
pub mod failover;
pub mod rules;
mod types;
pub mod wit;

pub use types::*;
