//! duet-base: what every host crate shares, and nothing that decides.
//!
//! - [`Clock`]: the agent's clock (wall time at start, advanced by tokio's monotonic clock).
//! - [`Severity`] and [`Alarms`]: how a crate raises an alarm without knowing the event log.
//! - [`config`]: the one error collector every configuration section validates into.
//! - [`watchdog`]: times calls on the decision path and counts the components that overran.
//! - [`pulse`]: the decision loop's pulse (tick gaps, late past the fence bound), read by the
//!   virtual IPs, the API and the fence.
//! - [`fds`]: the file descriptor limit, raised to the hard limit at start, and the
//!   descriptors the decision path keeps in reserve.
//! - [`caps`]: the process's Linux capabilities (CAP_NET_ADMIN, CAP_NET_RAW), read from /proc.
//! - [`text`]: outside text made safe to print (control characters escaped, long values cut).
//! - [`lock`], [`millis`], [`snake`]: small helpers with one spelling each.

#![warn(clippy::too_many_lines)]

pub mod caps;
pub mod config;
pub mod fds;
pub mod pulse;
pub mod text;
pub mod watchdog;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use duet_core::TimestampMs;
use serde::Serialize;

pub use duet_core::Severity;

/// Locks a mutex, recovering from poisoning: every guarded value here is replaced whole, so a
/// panic elsewhere cannot leave it half-written.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A duration in whole milliseconds, saturating (the unit of every timestamp and setting the
/// core sees).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A model enum's JSON name (`buddy_dead`), for labels and keys.
pub fn snake<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Where a crate raises an alarm or notice: the event log implements it, so no capability
/// needs to know the event log. Raising never blocks.
pub trait Alarms: Send + Sync {
    fn raise(&self, severity: Severity, code: &str, message: String);
}

/// Wakes the tick loop: a capability calls it when what it shows changed, so the next decision
/// comes at once instead of at the next tick.
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// The agent's clock: milliseconds since the Unix epoch, as the system clock said at start.
///
/// Read once from the system clock, then advanced by the monotonic clock: a clock step (NTP,
/// a board without a real-time clock) never stretches or skips a timeout, a start-up wait or
/// the ping-pong guard. The price: if the clock was wrong at start (no real-time clock, NTP not
/// yet synced), timestamps in the log and the API stay off by that much until a restart. The
/// monotonic clock is tokio's, so a simulation with paused time runs the agent on virtual time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: TimestampMs,
    start: tokio::time::Instant,
}

impl Clock {
    /// The system clock, now.
    pub fn system() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        Clock::starting_at(wall)
    }

    /// A clock that reads `wall` now.
    pub fn starting_at(wall: TimestampMs) -> Self {
        Clock {
            wall,
            start: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now(&self) -> TimestampMs {
        self.wall.saturating_add(millis(self.start.elapsed()))
    }
}
