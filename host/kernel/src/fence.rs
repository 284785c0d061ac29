//! Self-fencing. The buddy tolerates a silence of about `max_failures × interval` before it
//! declares this agent dead and takes over; an agent whose decision loop has been silent
//! longer ([`Pulse::late`]) may already be replaced. It fences itself: removes its virtual IPs
//! before anything else, stops announcing and renewing, and tells its buddy it yields
//! ([`Kernel::outgoing_report`]), so the buddy takes over at once and the pair never has two
//! Online. Checked from three places, whichever runs first: the fence thread (its own OS
//! thread, for a loop stuck while the process runs), the tick loop first thing after every
//! wait, and every report leaving on the peer link (both for a whole-process stop: on waking,
//! nothing announces this agent Online before it fenced). See docs/decisions.md for the bound.

use std::sync::Arc;
use std::time::Duration;

use duet_base::pulse::Pulse;
use duet_base::{lock, millis};
use duet_core::api::Status;
use duet_core::{FailoverState, TimestampMs};

use crate::Kernel;
use crate::config::KernelConfig;

/// The fence bound: the shortest silence after which the buddy could count this agent's
/// heartbeat answers as failures it acts on — `max_failures × interval` of the fastest agent
/// heartbeat (the buddy needs one failure more, plus a timeout, to declare death) — but never
/// below two ticks, which a healthy loop can take.
pub fn bound(config: &KernelConfig) -> Duration {
    let heartbeats = config
        .heartbeats
        .iter()
        .filter(|h| h.kind == duet_core::HeartbeatKind::Agent)
        .map(|h| h.interval * h.max_failures.max(1));
    let sync = config
        .sync
        .iter()
        .map(|s| s.interval * s.max_failures.max(1));
    heartbeats
        .chain(sync)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .max(config.core.tick * 2)
}

/// Fences the agent if its loop is late and it holds or claims the pair; the stall that
/// fenced it, while fenced.
pub(crate) fn check(kernel: &Kernel) -> Option<u64> {
    if kernel.pulse.late() {
        trip(kernel, millis(kernel.pulse.silence()));
    }
    *lock(&kernel.fenced)
}

fn trip(kernel: &Kernel, stall: u64) {
    let state = kernel.peer.borrow().state;
    if state == FailoverState::Offline {
        // Nothing to give up: the buddy may take over as it sees fit.
        return;
    }
    {
        let mut fenced = lock(&kernel.fenced);
        if fenced.is_some() {
            return;
        }
        *fenced = Some(stall);
    }
    let errors = kernel.vips.fence();
    kernel.show_fence(stall);
    tracing::error!(
        stall_ms = stall,
        bound_ms = kernel.pulse.bound().map_or(0, millis),
        state = state.label(),
        "the decision loop stalled past its bound: fenced (virtual IPs removed, announcing stopped, the buddy is told this agent yields)"
    );
    for e in errors {
        tracing::error!(error = %e, "fencing could not remove a virtual IP (its lease lapses)");
    }
}

/// A fenced agent's status, whatever the step that published it decided before the fence:
/// Offline since `now` (in this agent's column, its Failover Status row and its last
/// decision's state: the VIPs are gone), and its decision-loop row says why. The loop's first status after it took the fence
/// says the same in its own words.
pub(crate) fn overlay(status: &mut Status, stall: u64, now: TimestampMs) {
    if let Some(decision) = status.decision.as_mut()
        && decision.state.state != FailoverState::Offline
    {
        decision.state.state = FailoverState::Offline;
        decision.state.since = now;
    }
    if let Some(pair) = status.pair.as_mut() {
        pair.local.state = Some(FailoverState::Offline);
        for row in pair.local.rows.iter_mut() {
            match row.key.as_str() {
                "failover-status" => row.value = FailoverState::Offline.label().into(),
                "decision-loop" => {
                    row.reason = Some(format!("stalled for {stall} ms: this agent fenced itself"));
                }
                _ => {}
            }
        }
    }
}

/// The fence thread: checks the pulse a few times per bound, on its own OS thread at the
/// decision path's priority, until the kernel stops. None when fencing is off.
pub(crate) fn watch(kernel: Arc<Kernel>) -> std::io::Result<()> {
    let Some(bound) = kernel.pulse.bound() else {
        return Ok(());
    };
    let priority = kernel.config.core.priority;
    let every = (bound / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    std::thread::Builder::new()
        .name("duet-fence".into())
        .spawn(move || {
            crate::decision::raise_priority(priority);
            while !kernel.stop.is_cancelled() {
                std::thread::sleep(every);
                check(&kernel);
            }
        })
        .map(drop)
}

/// The pulse a kernel with `config` keeps: late past [`bound`].
pub fn pulse(config: &KernelConfig) -> Arc<Pulse> {
    Arc::new(Pulse::new(Some(bound(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_fastest_agent_path_tolerance_but_at_least_two_ticks() {
        let config = crate::config::minimal("a", "b", "");
        assert_eq!(bound(&config), Duration::from_millis(600), "200 ms × 3");
        let config = crate::config::minimal(
            "a",
            "b",
            "[[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:7203\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\n[core]\ntick = \"50ms\"",
        );
        assert_eq!(bound(&config), Duration::from_millis(150), "50 ms × 3");
        let config = crate::config::minimal(
            "a",
            "b",
            "[[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:7203\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\nmax_failures = 1\n[core]\ntick = \"100ms\"",
        );
        assert_eq!(bound(&config), Duration::from_millis(200), "two ticks");
    }
}
