//! The paths to the buddy and to the outside: each attempt's outcome is written into the
//! path's state ([`record`]), which the tick loop reads; the ICMP heartbeats run here, the
//! peer-link paths in [`crate::peer`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use duet_base::{Severity, lock};
use duet_core::{Heartbeat, HeartbeatKind, TimestampMs};
use tokio_util::sync::CancellationToken;

use crate::Kernel;
use crate::config::HeartbeatConfig;
use crate::net::{PingError, Pinger};

/// A path's state before its first attempt.
pub(crate) fn initial(id: &str, kind: HeartbeatKind, target: &str, max_failures: u32) -> Heartbeat {
    Heartbeat {
        id: id.into(),
        kind,
        target: target.into(),
        ok: false,
        failures: 0,
        max_failures,
        last_success: None,
        reason: Some("no attempt yet".into()),
        rtt_us: None,
    }
}

/// The outcome of one heartbeat attempt.
pub enum Attempt {
    /// An answer, after this round-trip time.
    Success(Duration),
    /// No answer: counts toward the path's allowed failures.
    Failure(String),
    /// The probe itself cannot work (no privilege, bad socket, a wrong target): shown, but
    /// never counted as a failure of the target — a broken probe must not look like a dead
    /// buddy or an isolation. The failure count stays as it was.
    Fault(String),
    /// The buddy answered but cannot be talked to (another pair key, another frame version):
    /// shown, and it proves the buddy alive, so the failure count is reset.
    Unusable(String),
}

/// Which measured path an attempt belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    /// `heartbeats[i]`.
    Heartbeat(usize),
    /// The sync connection.
    Sync,
}

/// Whether the sync connection counts as up: it has worked, and has not failed more often in
/// a row than it may.
pub(crate) fn sync_up(sync: &Heartbeat) -> bool {
    sync.last_success.is_some() && !sync.exceeded()
}

/// A path to the buddy failed its last attempt: the buddy may be about to be declared dead,
/// and work a takeover needs can start (the first failure is the earliest sign; starting on
/// one path's hiccup costs one ARP probe).
pub(crate) fn in_doubt(heartbeats: &[Heartbeat], sync: Option<&Heartbeat>) -> bool {
    heartbeats
        .iter()
        .filter(|h| h.kind == HeartbeatKind::Agent)
        .chain(sync.filter(|s| s.last_success.is_some()))
        .any(|h| h.failures > 0)
}

/// Writes an attempt's outcome into the path's state; wakes the tick loop on a change, and the
/// moment the path crosses its allowed failures (the attempt that declares it dead usually
/// fails for the same reason as the one before: without the wake, a takeover would wait for
/// the next tick).
pub(crate) fn record(kernel: &Kernel, slot: Slot, attempt: Attempt, now: TimestampMs) {
    let changed = {
        let mut all;
        let mut sync;
        let state: &mut Heartbeat = match slot {
            Slot::Heartbeat(i) => {
                all = lock(&kernel.heartbeats);
                &mut all[i]
            }
            Slot::Sync => match &kernel.sync {
                Some(s) => {
                    sync = lock(s);
                    &mut sync
                }
                None => return,
            },
        };
        let before = (state.ok, state.exceeded(), state.reason.clone());
        match attempt {
            Attempt::Success(rtt) => {
                state.ok = true;
                state.failures = 0;
                state.last_success = Some(now);
                state.reason = None;
                state.rtt_us = Some(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
            }
            Attempt::Failure(why) => {
                state.ok = false;
                state.failures = state.failures.saturating_add(1);
                state.reason = Some(why);
            }
            // The failure count stays as it was: a fault says nothing about the target.
            Attempt::Fault(why) => {
                state.ok = false;
                state.reason = Some(why);
            }
            Attempt::Unusable(why) => {
                state.ok = false;
                state.failures = 0;
                state.reason = Some(why);
            }
        }
        // A path that worked and now fails: an alarm in the event log.
        if before.0 && !state.ok {
            let (code, what) = match slot {
                Slot::Heartbeat(_) => ("heartbeat_failing", format!("Heartbeat {}", state.id)),
                Slot::Sync => ("sync_failing", "Sync Connection".to_string()),
            };
            kernel.alarms.raise(
                Severity::Warning,
                code,
                format!(
                    "{what} to {} failing: {}",
                    state.target,
                    state.reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
        before != (state.ok, state.exceeded(), state.reason.clone())
    };
    if changed {
        kernel.changed.notify_one();
    }
}

/// A "Ping to <ip>" or inverted heartbeat: ICMP echo ([`crate::net`]: a raw socket with root or
/// CAP_NET_RAW, else a datagram ping socket where allowed). Only an echo reply from the target
/// counts; an ICMP error is a failure that names it. Without the privilege the row says so, as
/// a probe fault.
pub(crate) async fn icmp(
    kernel: Arc<Kernel>,
    index: usize,
    mut hb: HeartbeatConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let target: std::net::IpAddr = hb
        .target
        .parse()
        .context("heartbeat target was validated as an IP")?;
    let ident = u16::try_from(index).unwrap_or(0) ^ (std::process::id() as u16);
    let mut interval = tokio::time::interval(hb.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut icmp: Option<Box<dyn Pinger>> = None;
    let mut seq: u16 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = interval.tick() => {}
        }
        // Reloaded timings apply from the next attempt (a new timeout takes a new socket).
        if let Some(live) = kernel.live_config().heartbeats.get(index) {
            if live.timeout != hb.timeout {
                hb.timeout = live.timeout;
                icmp = None;
            }
            if live.interval != hb.interval {
                hb.interval = live.interval;
                interval = tokio::time::interval_at(
                    tokio::time::Instant::now() + hb.interval,
                    hb.interval,
                );
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
        let now = kernel.clock.now();
        if icmp.is_none() {
            match kernel
                .network
                .pinger(hb.source, target, ident, hb.timeout)
                .await
            {
                Ok(p) => icmp = Some(p),
                Err(e) => {
                    let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        "ICMP not permitted: duet needs root or CAP_NET_RAW for this heartbeat (a probe fault, not a failure of the target)".to_string()
                    } else {
                        format!(
                            "cannot open an ICMP socket: {e} (a probe fault, not a failure of the target)"
                        )
                    };
                    record(&kernel, Slot::Heartbeat(index), Attempt::Fault(why), now);
                    continue;
                }
            }
        }
        let Some(p) = icmp.as_mut() else {
            continue;
        };
        seq = seq.wrapping_add(1);
        let attempt = match p.ping(seq).await {
            Ok(rtt) => Attempt::Success(rtt),
            Err(PingError::Timeout) => Attempt::Failure(format!(
                "no echo reply from {target} within {}",
                humantime::format_duration(hb.timeout)
            )),
            Err(PingError::Other(e)) => Attempt::Failure(format!("ping to {target} failed: {e}")),
        };
        record(&kernel, Slot::Heartbeat(index), attempt, kernel.clock.now());
    }
}
