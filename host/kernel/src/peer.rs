//! The peer link: agent heartbeats and the sync connection, over the peer port.
//!
//! Every path (each `kind = "agent"` heartbeat, and the sync connection) is a TCP connection
//! from this agent to the buddy's `peer.listen`, optionally from a chosen source address. Both
//! sides send a [`Hello`] at once; frames are then authenticated with the pair key and
//! replay-protected ([`crate::frame`]). Each attempt sends this agent's [`PeerReport`] and
//! reads the buddy's in return: its state, its Status column, its go-offline request and its
//! answer to ours. Requests are state in the report (tagged with an id), so they are
//! asynchronous, idempotent and time-bounded, and nothing ever waits on the buddy. The buddy's
//! newest report from any path is the one used, so a request gets through as long as one path
//! works.
//!
//! A rejected frame (forged, replayed, garbled, too large) closes its connection and is
//! counted; it changes no state. A buddy whose hello fails authentication is a probe fault, not
//! a failure (it answers, so it is not dead: no takeover, no split brain); repeated, it makes
//! the Configuration row say "pair key mismatch".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::net::{BoxStream, Listener};
use crate::paths::record as record_attempt;
use crate::{Attempt, Kernel, PeerReport, Refusal, Slot};
use duet_base::lock;
use duet_frame::{FrameError, Hello, PairKey, Session, read_frame, read_frame_or_end, write_frame};

/// What travels in a data frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerMessage {
    /// The sender's report; the receiver answers with its own.
    Report(Box<PeerReport>),
    /// A batch of the sender's own events (the event log's forwarding, on a connection of its
    /// own); answered with [`PeerMessage::Ack`] or [`PeerMessage::Refused`].
    Events {
        origin: String,
        events: serde_json::Value,
    },
    /// The receiver holds the origin's events up to this number (committed).
    Ack { upto: u64 },
    /// The receiver could not store the batch, and why.
    Refused(String),
}

/// After this many authentication failures in a row from the buddy, the Configuration row
/// says "pair key mismatch" (one could be a garbled hello; three are a wrong key).
pub const AUTH_FAILURES_SHOWN: u32 = 3;

mod admission;
use admission::Admission;

/// A refused incoming connection is logged at most once per source address this often; the
/// next line says how many were not logged meanwhile. The metrics count every one.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Source addresses the refusal log remembers at once (a flood from many addresses must not
/// grow memory without bound); beyond that, refusals are counted together.
const REFUSAL_LOG_ADDRESSES: usize = 1024;

/// Rate limit of the peer port's refusal log lines: one per source address per
/// [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct RefusalLog {
    /// Per source address: when its last line was written, and refusals not logged since.
    seen: std::collections::HashMap<IpAddr, (tokio::time::Instant, u64)>,
    /// Refusals not logged because `seen` was full.
    overflow: u64,
}

impl RefusalLog {
    /// Whether to log a refusal from `from` at `now`; if so, how many were not logged before
    /// it.
    fn admit(&mut self, from: IpAddr, now: tokio::time::Instant) -> Option<u64> {
        if let Some((last, skipped)) = self.seen.get_mut(&from) {
            if now.duration_since(*last) < REFUSAL_LOG_EVERY {
                *skipped += 1;
                return None;
            }
            let before = std::mem::take(skipped);
            *last = now;
            return Some(before);
        }
        if self.seen.len() >= REFUSAL_LOG_ADDRESSES {
            // Addresses quiet for a whole period have nothing left to report but their count.
            let mut dropped = 0;
            self.seen.retain(|_, (last, skipped)| {
                let keep = now.duration_since(*last) < REFUSAL_LOG_EVERY;
                if !keep {
                    dropped += *skipped;
                }
                keep
            });
            self.overflow += dropped;
            if self.seen.len() >= REFUSAL_LOG_ADDRESSES {
                self.overflow += 1;
                return None;
            }
        }
        self.seen.insert(from, (now, 0));
        Some(std::mem::take(&mut self.overflow))
    }
}

/// Logs a refused incoming connection, rate-limited per source address.
fn log_refusal(log: &std::sync::Mutex<RefusalLog>, from: SocketAddr, why: &str) {
    let Some(not_logged) = lock(log).admit(from.ip(), tokio::time::Instant::now()) else {
        return;
    };
    if not_logged == 0 {
        tracing::warn!(%from, reason = %why, "peer port: connection refused");
    } else {
        tracing::warn!(%from, reason = %why, not_logged, "peer port: connection refused (and {not_logged} more, not logged, since the last line)");
    }
}

/// The peer link's counters.
#[derive(Default)]
pub struct LinkStats {
    /// Hellos from the buddy that failed authentication since the last good one.
    pub(crate) auth_failures: AtomicU32,
    /// Frames rejected, by reason.
    pub(crate) rejected: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Configuration problems the link found, by the key they concern (a path that reaches
    /// the wrong agent, an unreadable report): shown in the Configuration row until resolved.
    pub(crate) problems: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl LinkStats {
    /// Frames rejected since start, by reason.
    pub fn rejections(&self) -> std::collections::BTreeMap<&'static str, u64> {
        lock(&self.rejected).clone()
    }

    /// Hellos from the buddy that failed authentication in a row.
    pub fn failed_hellos(&self) -> u32 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    fn reject(&self, reason: &'static str) {
        *lock(&self.rejected).entry(reason).or_default() += 1;
    }

    /// The Configuration problem the link has found, if any.
    pub fn configuration_problem(&self) -> Option<String> {
        (self.auth_failures.load(Ordering::Relaxed) >= AUTH_FAILURES_SHOWN)
            .then(|| "pair key mismatch".to_string())
    }

    /// Every configuration problem the link has found: the pair key first, then by key.
    pub fn configuration_problems(&self) -> Vec<String> {
        self.configuration_problem()
            .into_iter()
            .chain(lock(&self.problems).values().cloned())
            .collect()
    }

    /// Records (or, with `None`, clears) the problem concerning `key`.
    pub fn set_problem(&self, key: &str, problem: Option<String>) {
        let mut problems = lock(&self.problems);
        match problem {
            Some(p) => {
                problems.insert(key.to_string(), p);
            }
            None => {
                problems.remove(key);
            }
        }
    }
}

/// A label for metrics, per rejection reason.
fn reason(e: &FrameError) -> &'static str {
    match e {
        FrameError::TooLarge(_) => "too_large",
        FrameError::Truncated => "truncated",
        FrameError::BadMagic => "bad_magic",
        FrameError::Version(_) => "version",
        FrameError::Kind(_) => "kind",
        FrameError::BadMac => "bad_mac",
        FrameError::Replay { .. } => "replay",
        FrameError::Malformed(_) => "malformed",
    }
}

/// One path to the buddy's peer port.
#[derive(Debug, Clone)]
pub struct PathSpec {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// An open, authenticated connection.
struct Conn {
    stream: BoxStream,
    session: Session,
}

/// Why an attempt on a path failed.
enum PathError {
    /// Counts toward the path's allowed failures.
    Failure(String),
    /// The connection was closed or broke before an answer: a failure, unless a kept
    /// connection simply went stale (then the attempt is retried once on a fresh one).
    Closed(String),
    /// The path is misconfigured (it reaches another agent): shown, never counted.
    Fault(String),
    /// The buddy answered but cannot be talked to (key, version): alive, and shown.
    Unusable(String),
    /// Another agent answered (this name; this agent's own when the path loops back): a
    /// configuration fault, shown in the Configuration row and never counted.
    WrongAgent(String, String),
}

/// The pair keys in force: this agent seals with the first and accepts each (two while the
/// pair rotates its key).
fn keys(kernel: &Kernel) -> Vec<PairKey> {
    let live = kernel.live_config();
    std::iter::once(&live.peer.pair_key)
        .chain(&live.peer.accepted_pair_key)
        .map(|k| PairKey::new(k))
        .collect()
}

/// Whether a session still uses keys in force: it seals with the signing key and checks with
/// an accepted one. A session made before a reload changed the keys is closed (a path then
/// opens a fresh one at once, within the same attempt).
fn keys_in_force(session: &Session, keys: &[PairKey]) -> bool {
    let (ours, theirs) = session.keys();
    keys.first() == Some(ours) && keys.contains(theirs)
}

/// Takes a path's interval and attempt timeout in force (reloaded settings apply from the
/// next attempt; a new interval starts its timer anew).
fn retime(kernel: &Kernel, slot: Slot, spec: &mut PathSpec, interval: &mut tokio::time::Interval) {
    let live = kernel.live_config();
    let timing = match slot {
        Slot::Heartbeat(i) => live.heartbeats.get(i).map(|h| (h.interval, h.timeout)),
        Slot::Sync => live.sync.as_ref().map(|s| (s.interval, s.timeout)),
    };
    let Some((every, timeout)) = timing else {
        return;
    };
    spec.timeout = timeout;
    if every != spec.interval {
        spec.interval = every;
        *interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
}

/// Runs one path: an attempt every `interval`, each bounded by `timeout` (as in force: a
/// reload changes them from the next attempt on).
///
/// Between attempts the kept connection is watched: when the buddy's end closes it (its
/// process died: its kernel closes its sockets), the next attempt is made at once instead of
/// at the next interval, and the interval restarts from it. The failures that declare the
/// buddy dead stay `interval` apart; only the wait for the first one goes. At most one such
/// early attempt per interval: a buddy that closes every connection cannot make the path spin.
/// A silent buddy (a cut, a stall, a power loss) closes nothing and is judged as before.
pub(crate) async fn path(
    kernel: Arc<Kernel>,
    slot: Slot,
    mut spec: PathSpec,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut conn: Option<Conn> = None;
    // The buddy's last (boot, tick) and when it last moved.
    let mut last_tick: Option<((u64, u64), tokio::time::Instant)> = None;
    let mut interval = tokio::time::interval(spec.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut early_spent = false;
    loop {
        if !next_attempt(&mut interval, &mut conn, &mut early_spent, &shutdown).await {
            return Ok(());
        }
        retime(&kernel, slot, &mut spec, &mut interval);
        let keys = keys(&kernel);
        if conn
            .as_ref()
            .is_some_and(|c| !keys_in_force(&c.session, &keys))
        {
            conn = None;
        }
        let started = tokio::time::Instant::now();
        let exchange = async {
            let reused = conn.is_some();
            match attempt(&kernel, &keys, &spec, &mut conn).await {
                // A kept connection can have been closed meanwhile (the buddy's idle timeout,
                // a firewall, the buddy's reloaded keys): once, try again on a fresh one
                // within the same timeout.
                Err(PathError::Closed(_)) if reused => {
                    conn = None;
                    attempt(&kernel, &keys, &spec, &mut conn).await
                }
                other => other,
            }
        };
        let result = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            result = tokio::time::timeout(spec.timeout, exchange) => match result {
                Ok(result) => result,
                Err(_) => Err(PathError::Failure(format!(
                    "timed out: the buddy's duet did not answer within {}",
                    humantime::format_duration(spec.timeout)
                ))),
            },
        };
        if result.is_err() {
            // A failed or timed-out attempt leaves the stream in an unknown state.
            conn = None;
        }
        let now = kernel.clock.now();
        let key = match slot {
            Slot::Heartbeat(i) => format!("heartbeat[{i}].target"),
            Slot::Sync => "sync.target".to_string(),
        };
        match &result {
            Err(PathError::WrongAgent(who, _)) => {
                let whom = if *who == kernel.config.agent.name {
                    "this agent itself".to_string()
                } else {
                    format!("the agent {who}")
                };
                let buddy = &kernel.config.buddy.name;
                let problem = format!(
                    "{key}: {} reaches {whom}, not the buddy {buddy}",
                    spec.target
                );
                kernel.link.set_problem(&key, Some(problem));
            }
            Ok(_) => kernel.link.set_problem(&key, None),
            Err(_) => {}
        }
        let outcome = match result {
            Ok(report) => {
                let at = (report.boot, report.tick);
                let stuck = match last_tick {
                    Some((t, since)) if t == at => {
                        report.tick_ms > 0
                            && since.elapsed()
                                > Duration::from_millis(report.tick_ms.saturating_mul(4))
                                    + spec.interval
                    }
                    _ => {
                        last_tick = Some((at, tokio::time::Instant::now()));
                        false
                    }
                };
                if stuck {
                    Attempt::Failure(format!(
                        "the buddy answers but its decision loop is stuck at tick {}",
                        report.tick
                    ))
                } else {
                    kernel.receive(*report, now);
                    Attempt::Success(started.elapsed())
                }
            }
            Err(PathError::Failure(why) | PathError::Closed(why)) => Attempt::Failure(why),
            Err(PathError::Fault(why) | PathError::WrongAgent(_, why)) => Attempt::Fault(why),
            Err(PathError::Unusable(why)) => Attempt::Unusable(why),
        };
        record_attempt(&kernel, slot, outcome, now);
    }
}

/// Waits for a path's next attempt: its interval's tick or, once per interval, the kept
/// connection hung up by the buddy's end (which drops it and restarts the interval). False
/// once the agent stops.
async fn next_attempt(
    interval: &mut tokio::time::Interval,
    conn: &mut Option<Conn>,
    early_spent: &mut bool,
    shutdown: &CancellationToken,
) -> bool {
    let hung_up = tokio::select! {
        () = shutdown.cancelled() => return false,
        _ = interval.tick() => false,
        () = hang_up(conn), if !*early_spent => true,
    };
    *early_spent = hung_up;
    if hung_up {
        *conn = None;
        interval.reset();
    }
    true
}

/// Resolves when the kept connection ends between attempts: closed or reset by the buddy's
/// end, or sent bytes nobody asked for (the buddy only ever answers). Never resolves without
/// a connection. Cancel-safe: a read that has not completed consumed nothing.
async fn hang_up(conn: &mut Option<Conn>) {
    let Some(Conn { stream, .. }) = conn.as_mut() else {
        return std::future::pending().await;
    };
    let mut byte = [0u8; 1];
    // Whatever the read returns, the connection is no longer one to send a report on.
    let _ = tokio::io::AsyncReadExt::read(stream, &mut byte).await;
}

/// One exchange on a path: connect and greet if needed, send our report, read the buddy's.
async fn attempt(
    kernel: &Kernel,
    keys: &[PairKey],
    spec: &PathSpec,
    conn: &mut Option<Conn>,
) -> Result<Box<PeerReport>, PathError> {
    let buddy = &kernel.config.buddy.name;
    if conn.is_none() {
        *conn = Some(connect(kernel, keys, spec.source, spec.target).await?);
    }
    let Some(Conn { stream, session }) = conn.as_mut() else {
        unreachable!("connected above");
    };
    let frame = seal_report(kernel, session).map_err(PathError::Fault)?;
    write_frame(stream, &frame)
        .await
        .map_err(|e| PathError::Closed(format!("the connection failed: {e}")))?;
    let frame = read(kernel, stream).await?;
    let message = open(kernel, session, &frame).map_err(PathError::Failure)?;
    let PeerMessage::Report(report) = message else {
        kernel.link.reject("unreadable");
        return Err(PathError::Failure(
            "the buddy answered a report with another message".into(),
        ));
    };
    if report.agent != *buddy {
        kernel.link.reject("wrong_agent");
        return Err(PathError::WrongAgent(
            report.agent.clone(),
            format!("the report is from {}, not the buddy {buddy}", report.agent),
        ));
    }
    Ok(report)
}

/// Opens an authenticated session to the buddy's peer port (hello both ways), sealing with
/// the first of `keys` and accepting any.
async fn connect(
    kernel: &Kernel,
    keys: &[PairKey],
    source: Option<IpAddr>,
    target: SocketAddr,
) -> Result<Conn, PathError> {
    let buddy = &kernel.config.buddy.name;
    {
        let mut stream = kernel.network.connect(source, target).await.map_err(|e| {
            PathError::Failure(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused: the buddy's duet is not listening".to_string()
                }
                _ => format!("cannot connect to {}: {e}", target),
            })
        })?;
        let ours = Hello::new(&kernel.config.agent.name)
            .map_err(|e| PathError::Fault(format!("cannot make a hello: {e:#}")))?;
        let key = keys
            .first()
            .ok_or_else(|| PathError::Fault("no pair key".into()))?;
        write_frame(&mut stream, &ours.seal(key))
            .await
            .map_err(|e| PathError::Failure(format!("the connection failed: {e}")))?;
        let frame = read(kernel, &mut stream).await?;
        let (theirs, their_key) = match Hello::open_any(keys, &frame) {
            Ok(h) => h,
            Err(e) => {
                kernel.link.reject(reason(&e));
                if e == FrameError::BadMac {
                    // Something answers on the buddy's peer port, with another key: most
                    // likely the buddy, misconfigured. A fault, not a failure: declaring it
                    // dead would put both agents Online.
                    kernel.link.auth_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(PathError::Unusable(
                        "authentication failed: pair key mismatch (or a forged hello); check peer.pair_key on both agents".into(),
                    ));
                }
                if let FrameError::Version(v) = e {
                    // The buddy's duet speaks another frame version (a rolling upgrade): it is
                    // alive; counting it dead would put both agents Online.
                    return Err(PathError::Unusable(format!(
                        "the buddy speaks peer-link frame version {v}, this agent {}: upgrade both",
                        duet_frame::VERSION
                    )));
                }
                return Err(PathError::Failure(format!(
                    "the buddy's hello was rejected: {e}"
                )));
            }
        };
        kernel.link.auth_failures.store(0, Ordering::Relaxed);
        // Whoever answers must be the buddy. A target pointing at a third agent (or at
        // ourselves) is a configuration fault: shown, and never counted as a failure, which
        // could start a takeover.
        if theirs.agent != *buddy {
            kernel.link.reject("wrong_agent");
            return Err(PathError::WrongAgent(
                theirs.agent.clone(),
                format!(
                    "{} answered, not the buddy {buddy}: check the target {}",
                    theirs.agent, target
                ),
            ));
        }
        let session = Session::with_keys(key.clone(), their_key.clone(), &ours, &theirs, true);
        Ok(Conn { stream, session })
    }
}

/// A session of the event log's forwarding: a connection of its own to the buddy's peer port,
/// so event batches never delay a heartbeat's report.
pub struct EventSession {
    conn: Conn,
}

impl EventSession {
    /// Connects to the buddy's peer port and says hello.
    pub async fn connect(
        kernel: &Kernel,
        source: Option<IpAddr>,
        target: SocketAddr,
    ) -> Result<Self, String> {
        match connect(kernel, &keys(kernel), source, target).await {
            Ok(conn) => Ok(EventSession { conn }),
            Err(
                PathError::Failure(why)
                | PathError::Closed(why)
                | PathError::Fault(why)
                | PathError::Unusable(why)
                | PathError::WrongAgent(_, why),
            ) => Err(why),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &PeerMessage) -> Result<(), String> {
        let payload =
            serde_json::to_vec(message).map_err(|e| format!("cannot encode a message: {e}"))?;
        let frame = self
            .conn
            .session
            .seal(&payload)
            .map_err(|e| format!("cannot seal a message: {e}"))?;
        write_frame(&mut self.conn.stream, &frame)
            .await
            .map_err(|e| format!("the connection failed: {e}"))
    }

    /// Reads the buddy's next message.
    pub async fn receive(&mut self, kernel: &Kernel) -> Result<PeerMessage, String> {
        let frame = match read(kernel, &mut self.conn.stream).await {
            Ok(f) => f,
            Err(
                PathError::Failure(why)
                | PathError::Closed(why)
                | PathError::Fault(why)
                | PathError::Unusable(why)
                | PathError::WrongAgent(_, why),
            ) => return Err(why),
        };
        open(kernel, &mut self.conn.session, &frame)
    }
}

/// Reads the buddy's next frame on a path; a rejected frame is counted.
async fn read(kernel: &Kernel, stream: &mut BoxStream) -> Result<Vec<u8>, PathError> {
    match read_frame(stream).await {
        Ok(Ok(frame)) => Ok(frame),
        Ok(Err(e)) => {
            kernel.link.reject(reason(&e));
            Err(PathError::Failure(format!(
                "the buddy's frame was rejected: {e}"
            )))
        }
        Err(e) => Err(PathError::Closed(closed(&e))),
    }
}

/// What a broken stream means, in words.
fn closed(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the buddy closed the connection".into()
    } else {
        format!("the connection failed: {e}")
    }
}

/// This agent's current report, sealed into the session's next frame. Row texts are trimmed
/// so the frame always fits: a report we cannot send must never look like a dead buddy on
/// the other side.
fn seal_report(kernel: &Kernel, session: &mut Session) -> Result<Vec<u8>, String> {
    let mut report = kernel.outgoing_report();
    let mut limit = MAX_ROW_TEXT;
    loop {
        let payload = serde_json::to_vec(&PeerMessage::Report(Box::new(report.clone())))
            .map_err(|e| format!("cannot encode this agent's report: {e}"))?;
        if payload.len() + FRAME_OVERHEAD <= duet_frame::MAX_FRAME || limit == 0 {
            return session
                .seal(&payload)
                .map_err(|e| format!("cannot send this agent's report: {e}"));
        }
        for row in &mut report.report.rows {
            trim(&mut row.value, limit);
            if let Some(reason) = row.reason.as_mut() {
                trim(reason, limit);
            }
        }
        limit /= 4;
    }
}

/// Row values and reasons longer than this are cut before a report is sent.
const MAX_ROW_TEXT: usize = 4096;
/// A data frame's bytes besides its payload.
const FRAME_OVERHEAD: usize = 64;

fn trim(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// Authenticates and decodes a data frame; a rejection is counted.
fn open(kernel: &Kernel, session: &mut Session, frame: &[u8]) -> Result<PeerMessage, String> {
    let payload = session.open(frame).map_err(|e| {
        kernel.link.reject(reason(&e));
        format!("frame rejected: {e}")
    })?;
    let message = serde_json::from_slice(&payload).map_err(|e| unreadable(kernel, &e))?;
    kernel.link.set_problem("peer report", None);
    Ok(message)
}

/// An authentic (the MAC verified) yet unreadable message: another duet version, or a bug.
/// Counted, shown in the Configuration row; the connection ends.
fn unreadable(kernel: &Kernel, e: &dyn std::fmt::Display) -> String {
    kernel.link.reject("unreadable");
    kernel.link.set_problem(
        "peer report",
        Some(format!(
            "the buddy's peer report is unreadable ({e}): are both agents the same duet version?"
        )),
    );
    format!("the buddy sent an unreadable message: {e}")
}

/// Serves the peer port until `shutdown`.
pub(crate) async fn serve(
    kernel: Arc<Kernel>,
    mut listener: Box<dyn Listener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The connections live in this task's set: they end with it, however it ends.
    let mut connections = tokio::task::JoinSet::new();
    // The buddy's addresses have slots of their own; strangers share a small pool.
    let admission = Admission::new(
        kernel
            .config
            .buddy_addresses()
            .iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok().map(|a| a.ip())),
    );
    let refusals: Arc<std::sync::Mutex<RefusalLog>> = Arc::default();
    loop {
        let (stream, from) = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(error = %e, "peer port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Some(slot) = admission.admit(from.ip()) else {
            kernel.link.reject("too_many_connections");
            log_refusal(&refusals, from, "too many connections; closing this one");
            continue;
        };
        let kernel = kernel.clone();
        let refusals = refusals.clone();
        connections.spawn(async move {
            match connection(&kernel, stream, slot.handshake()).await {
                Ended::Closed(why) => tracing::debug!(%from, %why, "peer connection closed"),
                Ended::Refused(why) => log_refusal(&refusals, from, &why),
            }
            drop(slot);
        });
    }
}

/// How an incoming connection ended.
enum Ended {
    /// Closed, silent or broken: nothing wrong was received.
    Closed(String),
    /// Closed because of what was received (a rejected frame, another agent): counted in the
    /// metrics, and logged (rate-limited).
    Refused(String),
}

/// Serves one incoming connection, each step of its handshake within `handshake`; returns why
/// it ended.
async fn connection(kernel: &Kernel, mut stream: BoxStream, handshake: Duration) -> Ended {
    let keys = keys(kernel);
    let Some(key) = keys.first().cloned() else {
        return Ended::Closed("no pair key".into());
    };
    let ours = match Hello::new(&kernel.config.agent.name) {
        Ok(h) => h,
        Err(e) => return Ended::Closed(format!("{e:#}")),
    };
    // Our hello first, so a client with the wrong key can tell a key mismatch from a refusal.
    // A sender that wrote and closed at once makes this write fail (its end answers with a
    // reset); what it wrote before closing is still in our receive buffer, so it is read and
    // judged all the same, and only then does the failed write end the connection.
    let said_hello = write_frame(&mut stream, &ours.seal(&key)).await;
    let frame = match incoming(kernel, &mut stream, handshake).await {
        Ok(frame) => frame,
        Err(Ended::Closed(why)) => {
            return Ended::Closed(said_hello.err().map_or(why, |e| e.to_string()));
        }
        Err(refused) => return refused,
    };
    let (theirs, their_key) = match Hello::open_any(&keys, &frame) {
        Ok((h, k)) => (h, k.clone()),
        Err(e) => {
            kernel.link.reject(reason(&e));
            return Ended::Refused(format!("hello rejected: {e}"));
        }
    };
    if theirs.agent != kernel.config.buddy.name {
        kernel.link.reject("wrong_agent");
        return Ended::Refused(format!("{} is not the buddy", theirs.agent));
    }
    if let Err(e) = said_hello {
        return Ended::Closed(e.to_string());
    }
    let mut session = Session::with_keys(key, their_key, &ours, &theirs, false);
    let idle = idle_timeout(&kernel.live_config());
    // A hello can be replayed by anyone who recorded one; only a data frame proves the key.
    // Until then the connection gets as little time as before its hello.
    let mut authenticated = false;
    loop {
        let within = if authenticated { idle } else { handshake };
        let frame = match incoming(kernel, &mut stream, within).await {
            Ok(frame) => frame,
            Err(ended) => return ended,
        };
        if !keys_in_force(&session, &self::keys(kernel)) {
            // The buddy's path retries at once on a fresh connection, with the keys in force.
            return Ended::Closed("the pair keys were reloaded".into());
        }
        let report = match open(kernel, &mut session, &frame) {
            Ok(PeerMessage::Report(report)) => report,
            Ok(PeerMessage::Events { origin, events }) => {
                // The buddy's event log forwarding (a connection of its own): store, then
                // acknowledge what is held.
                authenticated = true;
                let answer = match kernel.inbox.receive(origin, events).await {
                    Ok(upto) => PeerMessage::Ack { upto },
                    Err(Refusal::Refused(why)) => PeerMessage::Refused(why),
                    Err(Refusal::Unreadable(e)) => return Ended::Refused(unreadable(kernel, &e)),
                };
                let sent = match serde_json::to_vec(&answer) {
                    Ok(payload) => match session.seal(&payload) {
                        Ok(frame) => write_frame(&mut stream, &frame).await,
                        Err(e) => return Ended::Closed(e.to_string()),
                    },
                    Err(e) => return Ended::Closed(e.to_string()),
                };
                if let Err(e) = sent {
                    return Ended::Closed(e.to_string());
                }
                continue;
            }
            Ok(PeerMessage::Ack { .. } | PeerMessage::Refused(_)) => {
                kernel.link.reject("unreadable");
                return Ended::Refused("an answer where a request was expected".into());
            }
            Err(why) => return Ended::Refused(why),
        };
        if report.agent != theirs.agent {
            kernel.link.reject("wrong_agent");
            return Ended::Refused(format!(
                "a report from {} on {}'s connection",
                report.agent, theirs.agent
            ));
        }
        kernel.receive(*report, kernel.clock.now());
        authenticated = true;
        let sent = match seal_report(kernel, &mut session) {
            Ok(frame) => write_frame(&mut stream, &frame).await,
            Err(why) => return Ended::Closed(why),
        };
        if let Err(e) = sent {
            return Ended::Closed(e.to_string());
        }
    }
}

/// The next frame of an incoming connection within `within`; a rejected one is counted. What
/// arrived before the sender closed is judged too: a frame cut short is a truncated frame.
async fn incoming(
    kernel: &Kernel,
    stream: &mut BoxStream,
    within: Duration,
) -> Result<Vec<u8>, Ended> {
    match tokio::time::timeout(within, read_frame_or_end(stream)).await {
        Err(_) => Err(Ended::Closed(format!(
            "silent for {}",
            humantime::format_duration(within)
        ))),
        Ok(Err(e)) => Err(Ended::Closed(closed(&e))),
        Ok(Ok(None)) => Err(Ended::Closed("the other end closed the connection".into())),
        Ok(Ok(Some(Err(e)))) => {
            kernel.link.reject(reason(&e));
            Err(Ended::Refused(format!("frame rejected: {e}")))
        }
        Ok(Ok(Some(Ok(frame)))) => Ok(frame),
    }
}

/// How long an authenticated incoming connection may stay silent before it is closed: well
/// over any of the buddy's intervals (its paths mirror ours; a longer one than that costs the
/// buddy a reconnect, which its path does at once).
fn idle_timeout(config: &crate::config::KernelConfig) -> Duration {
    let longest = config
        .heartbeats
        .iter()
        .map(|h| h.interval)
        .chain(config.sync.iter().map(|s| s.interval))
        .max()
        .unwrap_or(Duration::from_secs(1));
    longest * 3 + Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_address_per_period_with_the_count_not_logged() {
        let mut log = RefusalLog::default();
        let t0 = tokio::time::Instant::now();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert_eq!(log.admit(a, t0), Some(0), "the first refusal is logged");
        for i in 1..=99 {
            assert_eq!(log.admit(a, t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(
            log.admit(b, t0),
            Some(0),
            "another address has its own line"
        );
        assert_eq!(
            log.admit(a, t0 + REFUSAL_LOG_EVERY),
            Some(99),
            "the next line counts the ones not logged"
        );
        assert_eq!(log.admit(a, t0 + REFUSAL_LOG_EVERY * 2), Some(0));
    }

    #[test]
    fn a_flood_from_many_addresses_keeps_the_refusal_log_bounded() {
        let mut log = RefusalLog::default();
        let t0 = tokio::time::Instant::now();
        let mut logged = 0;
        for i in 0..(REFUSAL_LOG_ADDRESSES as u32 + 500) {
            if log.admit(IpAddr::from(i.to_be_bytes()), t0).is_some() {
                logged += 1;
            }
        }
        assert_eq!(logged, REFUSAL_LOG_ADDRESSES);
        assert!(log.seen.len() <= REFUSAL_LOG_ADDRESSES);
        // A period later, room again; the line carries the refusals that were not logged.
        let later = t0 + REFUSAL_LOG_EVERY;
        assert_eq!(log.admit([192, 0, 2, 1].into(), later), Some(500));
    }
}
