//! Configuration reload: which of the kernel's settings change while it runs and which wait
//! for a restart. [`merge`] takes the live ones from a new, validated configuration into the
//! running one; [`crate::Kernel::reload`] hands the result to the tick loop, which applies it
//! at a tick boundary (the paths read their timings from it on their next attempt).
//!
//! Live: the paths' timings (`interval`, `timeout`, `max_failures` of each heartbeat and of
//! `[sync]`), `[status]`, `[failover]`, `agent.priority` and the pair keys. Everything else
//! (names, addresses, the paths themselves, `[core]`, `[state]`, `[log]`, `agent.mode`) is
//! read once at start: a change is named, and waits for a restart.

use crate::config::KernelConfig;

/// What a reload changed, by key path as written in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Settings that differ and were taken (they apply at the next tick).
    pub applied: Vec<String>,
    /// Settings that differ and wait for a restart (the running value stays).
    pub restart: Vec<String>,
}

/// `running` with every live setting of `new`, and what differs between the two.
pub fn merge(running: &KernelConfig, new: &KernelConfig) -> (KernelConfig, Changes) {
    let mut merged = running.clone();
    let mut changes = Changes::default();
    // Taken when it differs.
    macro_rules! live {
        ($key:expr, $($field:tt)+) => {
            if running.$($field)+ != new.$($field)+ {
                changes.applied.push($key.into());
                merged.$($field)+ = new.$($field)+.clone();
            }
        };
    }
    // Named when it differs; the running value stays.
    macro_rules! restart {
        ($key:expr, $($field:tt)+) => {
            if running.$($field)+ != new.$($field)+ {
                changes.restart.push($key.into());
            }
        };
    }
    restart!("agent.name", agent.name);
    live!("agent.priority", agent.priority);
    restart!("agent.mode", agent.mode);
    restart!("buddy.name", buddy.name);
    restart!("peer.listen", peer.listen);
    live!("peer.pair_key", peer.pair_key);
    live!("peer.accepted_pair_key", peer.accepted_pair_key);
    match (&running.sync, &new.sync) {
        (Some(_), Some(_)) => {
            restart!("sync.target", sync.as_ref().map(|s| s.target));
            restart!("sync.source", sync.as_ref().map(|s| s.source));
            if let (Some(old), Some(to)) = (&mut merged.sync, &new.sync) {
                let mut timing = |key: &str, differs: bool| {
                    if differs {
                        changes.applied.push(format!("sync.{key}"));
                    }
                };
                timing("interval", old.interval != to.interval);
                timing("timeout", old.timeout != to.timeout);
                timing("max_failures", old.max_failures != to.max_failures);
                (old.interval, old.timeout, old.max_failures) =
                    (to.interval, to.timeout, to.max_failures);
            }
        }
        (None, None) => {}
        _ => changes.restart.push("sync".into()),
    }
    restart!("core.path", core.path);
    restart!("core.deadline", core.deadline);
    restart!("core.memory_limit_mib", core.memory_limit_bytes);
    restart!("core.tick", core.tick);
    restart!("core.watch_interval", core.watch_interval);
    restart!("core.priority", core.priority);
    live!("status.buddy_timeout", status.buddy_timeout);
    live!("status.startup_grace", status.startup_grace);
    live!("failover.prepare_timeout", failover.prepare_timeout);
    live!(
        "failover.going_online_timeout",
        failover.going_online_timeout
    );
    live!(
        "failover.going_offline_timeout",
        failover.going_offline_timeout
    );
    live!("failover.min_switch_interval", failover.min_switch_interval);
    live!("failover.startup_wait", failover.startup_wait);
    heartbeats(running, new, &mut merged, &mut changes);
    restart!("state.file", state.file);
    restart!("log.failover_log", log.failover_log);
    restart!("log.failover_log_max_mib", log.failover_log_max_bytes);
    restart!("log.failover_log_keep", log.failover_log_keep);
    restart!("log.failover_log_retention", log.failover_log_retention);
    (merged, changes)
}

/// The heartbeats: each one's timings are live; what it is (id, kind, target, source) and
/// how many there are wait for a restart (each is a task started with the agent).
fn heartbeats(
    running: &KernelConfig,
    new: &KernelConfig,
    merged: &mut KernelConfig,
    changes: &mut Changes,
) {
    for (i, (old, to)) in running.heartbeats.iter().zip(&new.heartbeats).enumerate() {
        let mut key = |name: &str, differs: bool, live: bool| {
            if differs {
                let list = if live {
                    &mut changes.applied
                } else {
                    &mut changes.restart
                };
                list.push(format!("heartbeat[{i}].{name}"));
            }
        };
        key("id", old.id != to.id, false);
        key("kind", old.kind != to.kind, false);
        key("target", old.target != to.target, false);
        key("source", old.source != to.source, false);
        key("interval", old.interval != to.interval, true);
        key("timeout", old.timeout != to.timeout, true);
        key("max_failures", old.max_failures != to.max_failures, true);
        let hb = &mut merged.heartbeats[i];
        (hb.interval, hb.timeout, hb.max_failures) = (to.interval, to.timeout, to.max_failures);
    }
    let (ours, theirs) = (running.heartbeats.len(), new.heartbeats.len());
    changes.restart.extend(
        (ours.min(theirs)..ours.max(theirs)).map(|i| format!("heartbeat[{i}] (added or removed)")),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::minimal;

    #[test]
    fn timings_and_keys_are_taken_and_the_rest_is_named_for_a_restart() {
        // The timeout follows the interval when not written.
        let running = minimal("a", "b", "interval = \"200ms\"");
        let new = minimal(
            "a",
            "b",
            "interval = \"400ms\"\nmax_failures = 5\n\
             [core]\ntick = \"100ms\"\n[failover]\nmin_switch_interval = \"45s\"",
        );
        let (merged, changes) = merge(&running, &new);
        assert_eq!(
            changes.applied,
            [
                "failover.min_switch_interval",
                "heartbeat[0].interval",
                "heartbeat[0].timeout",
                "heartbeat[0].max_failures"
            ]
        );
        assert_eq!(changes.restart, ["core.tick"]);
        assert_eq!(merged.heartbeats[0].interval, Duration::from_millis(400));
        assert_eq!(merged.heartbeats[0].max_failures, 5);
        assert_eq!(merged.failover.min_switch_interval, Duration::from_secs(45));
        assert_eq!(merged.core.tick, running.core.tick, "kept until a restart");
        assert_eq!(merge(&merged, &new).1.applied, Vec::<String>::new());
        assert_eq!(
            merge(&merged, &new).1.restart,
            ["core.tick"],
            "still pending: the running value differs from the file's"
        );
    }

    #[test]
    fn an_added_heartbeat_waits_for_a_restart() {
        let running = minimal("a", "b", "");
        let new = minimal(
            "a",
            "b",
            "[[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:7203\"",
        );
        let (merged, changes) = merge(&running, &new);
        assert!(changes.applied.is_empty(), "{changes:?}");
        assert_eq!(changes.restart, ["heartbeat[1] (added or removed)"]);
        assert_eq!(merged.heartbeats.len(), 1);
    }
}
