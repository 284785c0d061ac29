//! Forwarding: this agent's own events go to the buddy over a peer-link connection of their
//! own, in batches of at most `forward_batch` events, `forward_in_flight` batches pipelined.
//! The buddy answers each batch with the highest number it holds (committed); that is the
//! outbox cursor. On any failure the connection is dropped and made again after a backoff
//! that doubles up to `forward_max_backoff`; the cursor is read again from the buddy, so a
//! batch whose acknowledgement was lost is sent again and skipped there (idempotent).
//!
//! Which path: the sync connection's while it is up, else the first agent heartbeat path that
//! is up (their probes measure each path: `Kernel::sync`, `Kernel::heartbeats`). A path
//! that goes down under a forwarding connection ends it at once, so forwarding moves to
//! another path without waiting for an acknowledgement that cannot come; with no other path
//! up, DB Sync says Failing at once. Forwarding moves back to the sync connection once it
//! works again. See docs/event-log.md.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use duet_core::{Heartbeat, HeartbeatKind};
use tokio_util::sync::CancellationToken;

use super::{Event, EventLog, Severity};
use duet_base::lock;
use duet_kernel::peer::{EventSession, PeerMessage};
use duet_kernel::{Kernel, Slot};

/// A batch's largest encoded size (frames are at most 256 KiB).
const MAX_BATCH_BYTES: usize = 192 << 10;
/// How long an answer may take (a commit on a slow database).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// The "DB forwarding failing since" alarm is raised once a failure lasts this long.
const ALARM_AFTER: Duration = Duration::from_secs(10);
/// How often a forwarding connection checks its path's probe.
const PATH_CHECK: Duration = Duration::from_millis(100);

/// One path to the buddy's peer port that forwarding may take.
#[derive(Debug, Clone)]
struct Path {
    /// `the sync connection` or `heartbeat[0]`, for the log and the row's reason.
    name: String,
    slot: Slot,
    source: Option<IpAddr>,
    target: SocketAddr,
}

/// The paths to the buddy, preferred first: the sync connection, then each agent heartbeat
/// (one per distinct source and target).
fn paths(config: &duet_kernel::config::KernelConfig) -> Vec<Path> {
    let sync = config.sync.iter().map(|s| Path {
        name: "the sync connection".into(),
        slot: Slot::Sync,
        source: s.source,
        target: s.target,
    });
    let heartbeats = config
        .heartbeats
        .iter()
        .enumerate()
        .filter(|(_, h)| h.kind == HeartbeatKind::Agent)
        .filter_map(|(i, h)| {
            Some(Path {
                name: format!("heartbeat[{i}]"),
                slot: Slot::Heartbeat(i),
                source: h.source,
                target: h.target.parse().ok()?,
            })
        });
    let mut all: Vec<Path> = Vec::new();
    for p in sync.chain(heartbeats) {
        if !all
            .iter()
            .any(|o| o.source == p.source && o.target == p.target)
        {
            all.push(p);
        }
    }
    all
}

/// What the path's probe last measured.
fn probe(kernel: &Kernel, slot: Slot) -> Option<Heartbeat> {
    kernel.path(slot)
}

/// The path counts as down: its probe failed more often in a row than it may.
fn down(kernel: &Kernel, path: &Path) -> bool {
    probe(kernel, path.slot).is_some_and(|h| h.exceeded())
}

/// The path works: its last attempt succeeded.
fn works(kernel: &Kernel, path: &Path) -> bool {
    probe(kernel, path.slot).is_some_and(|h| h.ok && h.failures == 0)
}

/// The path to take now: the first that is not down; the preferred one when all are.
fn choose(kernel: &Kernel, paths: &[Path]) -> usize {
    paths.iter().position(|p| !down(kernel, p)).unwrap_or(0)
}

/// How a forwarding connection ended.
enum End {
    /// Shutdown.
    Stopped,
    /// Another path should be taken: not a failure of DB Sync.
    Move(String),
    Failed(String),
}

/// Watches the path of a forwarding connection (`paths[at]`); returns when the connection
/// should end: its path went down (another path is up: move; none: a failure, shown at
/// once), or a preferred path works again (move back).
async fn watch(kernel: &Kernel, paths: &[Path], at: usize) -> End {
    let path = &paths[at];
    // A path already down when the connection started proves nothing new by staying down:
    // the connection's own errors tell then.
    let mut was_down = down(kernel, path);
    let mut every = tokio::time::interval(PATH_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let is_down = down(kernel, path);
        let reason = || {
            probe(kernel, path.slot)
                .and_then(|h| h.reason)
                .unwrap_or_else(|| "no answer".into())
        };
        let other = paths
            .iter()
            .enumerate()
            .find(|(i, p)| *i != at && !down(kernel, p));
        match other {
            Some((_, p)) if is_down => {
                return End::Move(format!(
                    "{} to {} is down ({}): forwarding over {} to {}",
                    path.name,
                    path.target,
                    reason(),
                    p.name,
                    p.target
                ));
            }
            Some((i, p)) if i < at && works(kernel, p) => {
                return End::Move(format!(
                    "{} to {} works again: forwarding over it",
                    p.name, p.target
                ));
            }
            None if is_down && !was_down => {
                return End::Failed(format!(
                    "{} to {} is down: {}",
                    path.name,
                    path.target,
                    reason()
                ));
            }
            _ => {}
        }
        was_down = is_down;
    }
}

/// Runs the forwarder until `shutdown`.
pub async fn run(
    log: Arc<EventLog>,
    kernel: Arc<Kernel>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let paths = paths(kernel.config());
    if paths.is_empty() {
        failed(
            &kernel,
            &log,
            "no path to the buddy: configure an agent heartbeat or [sync]".into(),
        );
        return Ok(());
    }
    let mut backoff = Duration::from_millis(100);
    let mut alarmed = false;
    let mut last: Option<usize> = None;
    loop {
        let at = choose(&kernel, &paths);
        let path = &paths[at];
        if last.is_some_and(|l| l != at) || (last.is_none() && at != 0) {
            tracing::info!(path = %path.name, target = %path.target, "DB Sync: forwarding over {}", path.name);
        }
        last = Some(at);
        let outcome = tokio::select! {
            () = shutdown.cancelled() => End::Stopped,
            r = session(&kernel, &log, path.source, path.target, &shutdown) => match r {
                Ok(()) => End::Stopped,
                Err(why) => End::Failed(why),
            },
            end = watch(&kernel, &paths, at) => end,
        };
        let why = match outcome {
            End::Stopped => return Ok(()),
            End::Move(why) => {
                tracing::info!(reason = %why, "DB Sync: changing path");
                backoff = Duration::from_millis(100);
                continue;
            }
            End::Failed(why) => why,
        };
        failed(&kernel, &log, why.clone());
        let sync = lock(&log.sync).clone();
        if !alarmed
            && let Some(since) = sync.failing_since
            && kernel.clock().now().saturating_sub(since) >= duet_base::millis(ALARM_AFTER)
        {
            alarmed = true;
            let at = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(since),
            );
            log.raise(
                Severity::Error,
                "db_forwarding_failing",
                format!("DB forwarding is failing since {at}: {why}"),
            );
        }
        if sync.failing_since.is_none() {
            alarmed = false;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(log.config.forward_max_backoff);
        if lock(&log.sync).failing.is_none() {
            backoff = Duration::from_millis(100);
        }
    }
}

fn failed(kernel: &Kernel, log: &EventLog, why: String) {
    let now = kernel.clock().now();
    let mut sync = lock(&log.sync);
    if sync.failing.as_deref() != Some(why.as_str()) {
        tracing::warn!(reason = %why, "DB Sync failing");
    }
    sync.failing = Some(why);
    sync.failures = sync.failures.saturating_add(1);
    sync.failing_since.get_or_insert(now);
}

fn succeeded(kernel: &Kernel, log: &EventLog, upto: u64) {
    let mut sync = lock(&log.sync);
    if sync.failing.is_some() && sync.last_success.is_some() {
        tracing::info!("DB Sync active again");
    }
    sync.failing = None;
    sync.failures = 0;
    sync.failing_since = None;
    sync.last_success = Some(kernel.clock().now());
    drop(sync);
    log.acknowledged(upto);
}

/// One connection's life: returns why it ended (`Ok` only at shutdown).
async fn session(
    kernel: &Kernel,
    log: &EventLog,
    source: Option<IpAddr>,
    target: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let origin = log.origin().to_string();
    let mut link = tokio::time::timeout(
        ANSWER_TIMEOUT,
        EventSession::connect(kernel, source, target),
    )
    .await
    .map_err(|_| format!("no answer from {target} within {ANSWER_TIMEOUT:?}"))??;
    // Learn the cursor: an empty batch is answered with what the buddy holds.
    let mut acked = ask(kernel, &mut link, &origin, Vec::new()).await?;
    succeeded(kernel, log, acked);
    let mut sent = acked;
    // The last number of each batch in flight, oldest first.
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    let mut keepalive = tokio::time::interval(log.config.forward_interval);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        // Fill the pipeline from the store.
        while in_flight.len() < log.config.forward_in_flight && sent < log.local_max() {
            let Some(store) = log.store() else { break };
            let events = store
                .after(&origin, sent, log.config.forward_batch)
                .await
                .map_err(|e| format!("cannot read this agent's events: {e:#}"))?;
            let events = fit(events);
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            link.send(&batch(&origin, &events)?).await?;
            in_flight.push_back(last);
            sent = last;
        }
        if in_flight.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = log.committed.notified() => continue,
                _ = keepalive.tick() => {
                    // Nothing to send: check that the buddy is there (the DB Sync row).
                    acked = ask(kernel, &mut link, &origin, Vec::new()).await?;
                    succeeded(kernel, log, acked);
                    sent = sent.max(acked);
                    continue;
                }
            }
        }
        let upto = answer(kernel, &mut link).await?;
        in_flight.pop_front();
        acked = acked.max(upto);
        succeeded(kernel, log, acked);
    }
}

/// A batch of this agent's events as the peer link carries it.
fn batch(origin: &str, events: &[Event]) -> Result<PeerMessage, String> {
    Ok(PeerMessage::Events {
        origin: origin.to_string(),
        events: serde_json::to_value(events).map_err(|e| format!("cannot encode events: {e}"))?,
    })
}

/// Sends a batch and waits for its answer.
async fn ask(
    kernel: &Kernel,
    link: &mut EventSession,
    origin: &str,
    events: Vec<Event>,
) -> Result<u64, String> {
    link.send(&batch(origin, &events)?).await?;
    answer(kernel, link).await
}

async fn answer(kernel: &Kernel, link: &mut EventSession) -> Result<u64, String> {
    match tokio::time::timeout(ANSWER_TIMEOUT, link.receive(kernel)).await {
        Err(_) => Err(format!(
            "the buddy did not acknowledge within {}",
            humantime::format_duration(ANSWER_TIMEOUT)
        )),
        Ok(Err(why)) => Err(why),
        Ok(Ok(PeerMessage::Ack { upto })) => Ok(upto),
        Ok(Ok(PeerMessage::Refused(why))) => Err(format!("the buddy refused the events: {why}")),
        Ok(Ok(_)) => Err("the buddy answered with an unexpected message".into()),
    }
}

/// Cuts a batch so that it fits in a frame.
fn fit(mut events: Vec<Event>) -> Vec<Event> {
    let mut size = 64;
    let mut keep = 0;
    for e in &events {
        // An upper bound of the event's JSON without encoding it twice: fields, names and
        // the hash, each byte that JSON escapes counted at its longest (\u00XX).
        let text = [&e.origin, &e.id, &e.source, &e.code, &e.message];
        let escaped: usize = text
            .iter()
            .map(|t| {
                t.bytes()
                    .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
                    .count()
                    * 5
            })
            .sum();
        let one = 200 + text.iter().map(|t| t.len()).sum::<usize>() + escaped;
        if keep > 0 && size + one > MAX_BATCH_BYTES {
            break;
        }
        size += one;
        keep += 1;
    }
    events.truncate(keep);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewEvent, Severity};

    #[test]
    fn a_batch_always_fits_in_a_frame_even_with_escaped_messages() {
        let events: Vec<Event> = (1..=1_000)
            .map(|seq| {
                NewEvent {
                    at: 1,
                    severity: Severity::Info,
                    source: "app".into(),
                    code: "c".into(),
                    // Every byte escaped by JSON, at the longest message allowed.
                    message: "\u{1}".repeat(crate::MAX_MESSAGE),
                }
                .stored("agent-a", seq)
            })
            .collect();
        let batch = fit(events);
        assert!(!batch.is_empty());
        let frame =
            serde_json::to_vec(&super::batch("agent-a", &batch).expect("a batch")).expect("encode");
        assert!(
            frame.len() < duet_frame::MAX_FRAME - 1024,
            "{}",
            frame.len()
        );
    }
}
