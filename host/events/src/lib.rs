//! The event log: the alarms and notices duet raises and the events applications post, kept in
//! each agent's store ([`store`]) and forwarded to the buddy ([`forward`]), so both agents hold
//! the same history.
//!
//! Each event belongs to its *origin* (the agent that first stored it) and has a sequence
//! number there, given when it is committed: its id is `<origin>:<seq>`. Each agent forwards
//! the events of its own origin to the buddy, in order, in acknowledged batches; the receiver
//! stores a batch idempotently (a duplicate id is skipped) and acknowledges the highest
//! sequence number it holds. That number is the sender's outbox cursor — the "DB Sync Stack"
//! is everything above it — so nothing needs to be remembered on the sender's side besides
//! its own events.
//!
//! Raising never blocks: [`EventLog::raise`] queues an event for the writer task, which
//! commits queued events together (group commit). [`EventLog::append`] waits for the commit
//! (or for the spool) and is what the API's `POST /api/v1/events` uses.

#![warn(clippy::too_many_lines)]

pub mod config;
pub mod forward;
pub mod shown;
pub mod spool;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use duet_core::{Check, Probe, TimestampMs};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use config::DatabaseConfig;
use duet_base::Clock;
pub use duet_base::Severity;
use duet_base::lock;
use spool::Spool;
use store::Store;

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `<origin>:<seq>`.
    pub id: String,
    /// The agent that first stored it.
    pub origin: String,
    /// Its number at the origin, from 1, without gaps.
    pub seq: u64,
    /// When it was raised (ms since the Unix epoch).
    pub at: TimestampMs,
    pub severity: Severity,
    /// Who raised it: `duet`, or the name of the API token that posted it.
    pub source: String,
    /// A short machine-readable code (`switch`, `heartbeat_failing`, ...).
    pub code: String,
    pub message: String,
    /// SHA-256 (hex) of the fields above: checked by the receiver.
    pub hash: String,
}

/// An event not yet stored (no origin number yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at: TimestampMs,
    pub severity: Severity,
    pub source: String,
    pub code: String,
    pub message: String,
}

/// The longest code and source, in bytes.
pub const MAX_CODE: usize = 128;
/// The longest message, in bytes.
pub const MAX_MESSAGE: usize = 4096;

/// The earliest time an event may carry: 2000-01-01T00:00:00Z. Earlier is a clock never set
/// (or a number in seconds, not milliseconds).
pub const EARLIEST_AT: TimestampMs = 946_684_800_000;
/// How far ahead of this agent's clock an event's time may be: clocks of the same site
/// disagree by seconds, never by a day.
pub const MOST_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Why an event's time is refused, if it is: before [`EARLIEST_AT`] or more than
/// [`MOST_AHEAD`] after `now`. Such a time would never expire or sort where it belongs.
pub fn time_problem(at: TimestampMs, now: TimestampMs) -> Option<String> {
    let latest = now.saturating_add(duet_base::millis(MOST_AHEAD));
    if at < EARLIEST_AT {
        Some(format!(
            "{at} is before 2000-01-01 ({EARLIEST_AT}): give milliseconds since the Unix epoch"
        ))
    } else if at > latest {
        Some(format!(
            "{at} is more than a day ahead of this agent's clock ({now})"
        ))
    } else {
        None
    }
}

pub fn event_id(origin: &str, seq: u64) -> String {
    format!("{origin}:{seq}")
}

/// The payload hash of an event's fields.
pub fn payload_hash(origin: &str, seq: u64, e: &NewEvent) -> String {
    let mut h = Sha256::new();
    for part in [
        origin.as_bytes(),
        &seq.to_be_bytes(),
        &e.at.to_be_bytes(),
        e.severity.as_str().as_bytes(),
        e.source.as_bytes(),
        e.code.as_bytes(),
        e.message.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl NewEvent {
    /// The stored event this becomes as `origin`'s number `seq`.
    pub fn stored(self, origin: &str, seq: u64) -> Event {
        let hash = payload_hash(origin, seq, &self);
        Event {
            id: event_id(origin, seq),
            origin: origin.to_string(),
            seq,
            at: self.at,
            severity: self.severity,
            source: self.source,
            code: self.code,
            message: self.message,
            hash,
        }
    }
}

impl Event {
    /// Whether the id and hash match the fields (a receiver checks every event).
    pub fn verify(&self) -> Result<(), String> {
        let new = NewEvent {
            at: self.at,
            severity: self.severity,
            source: self.source.clone(),
            code: self.code.clone(),
            message: self.message.clone(),
        };
        if self.id != event_id(&self.origin, self.seq) {
            return Err(format!("event {} has a wrong id", self.id));
        }
        if payload_hash(&self.origin, self.seq, &new) != self.hash {
            return Err(format!("event {} does not match its hash", self.id));
        }
        Ok(())
    }
}

/// What became of appended events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Committed to the store, with these ids.
    Stored(Vec<String>),
    /// The store is down: written to the durable spool, ids given when they are stored.
    Spooled,
}

struct Pending {
    events: Vec<NewEvent>,
    done: Option<oneshot::Sender<Result<Appended, String>>>,
}

/// The forwarder's view, for the DB Sync rows.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// `None`: the last exchange worked; otherwise why not.
    pub failing: Option<String>,
    /// Failed attempts in a row.
    pub failures: u32,
    pub last_success: Option<TimestampMs>,
    /// When the current failure started (for the "failing since" alarm).
    pub failing_since: Option<TimestampMs>,
}

/// The event log of one agent.
pub struct EventLog {
    origin: String,
    buddy: String,
    config: DatabaseConfig,
    clock: Clock,
    queue: mpsc::UnboundedSender<Pending>,
    queue_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Pending>>>,
    /// The store, once connected.
    store: watch::Sender<Option<Store>>,
    /// The Database row.
    database: std::sync::Mutex<Check>,
    /// The highest own sequence number committed.
    local_max: AtomicU64,
    /// The buddy's highest sequence number of our events (its acknowledgement); valid once
    /// `acked_known`.
    acked: AtomicU64,
    acked_known: AtomicBool,
    /// Events waiting in the spool.
    spooled: AtomicU64,
    pub(crate) sync: std::sync::Mutex<SyncState>,
    /// Wakes the forwarder after a commit.
    pub(crate) committed: Notify,
    /// Changes when the buddy acknowledges (a switch waits for the outbox to drain).
    acked_changed: watch::Sender<u64>,
    /// The buddy's events: the highest number held, per origin (cached).
    received: tokio::sync::Mutex<HashMap<String, u64>>,
    /// Test fault point: abort the process after this many received batches are committed,
    /// before their acknowledgement (`DUET_FAULT_ABORT_AFTER_COMMIT`).
    abort_after_commit: Option<u64>,
    /// Test throttle: sleep this long before storing each received batch
    /// (`DUET_FAULT_RECEIVE_DELAY_MS`).
    receive_delay: Option<Duration>,
    received_batches: AtomicU64,
    /// Not run at all (the simulation): no rows, raised events dropped.
    disabled: AtomicBool,
}

/// Reads a test fault variable.
fn fault(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?.parse().ok()?;
    tracing::warn!(variable = name, value = v, "test fault point armed");
    Some(v)
}

impl EventLog {
    /// How long a switch waits for the outbox to drain (`database.switch_drain_timeout`).
    pub fn switch_drain_timeout(&self) -> std::time::Duration {
        self.config.switch_drain_timeout
    }

    pub fn new(config: DatabaseConfig, origin: &str, buddy: &str, clock: Clock) -> Arc<Self> {
        let (queue, queue_rx) = mpsc::unbounded_channel();
        Arc::new(EventLog {
            origin: origin.to_string(),
            buddy: buddy.to_string(),
            config,
            clock,
            queue,
            queue_rx: std::sync::Mutex::new(Some(queue_rx)),
            store: watch::Sender::new(None),
            database: std::sync::Mutex::new(Check::Failing("not connected yet".into())),
            local_max: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_known: AtomicBool::new(false),
            spooled: AtomicU64::new(0),
            sync: std::sync::Mutex::new(SyncState {
                failing: Some("not connected yet".into()),
                ..SyncState::default()
            }),
            committed: Notify::new(),
            acked_changed: watch::Sender::new(0),
            received: tokio::sync::Mutex::new(HashMap::new()),
            abort_after_commit: fault("DUET_FAULT_ABORT_AFTER_COMMIT"),
            receive_delay: fault("DUET_FAULT_RECEIVE_DELAY_MS").map(Duration::from_millis),
            received_batches: AtomicU64::new(0),
            disabled: AtomicBool::new(false),
        })
    }

    /// The event log will not run: no rows, and raised events are dropped.
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
        drop(lock(&self.queue_rx).take());
        *lock(&self.database) = Check::NotConfigured;
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The store, if connected.
    pub fn store(&self) -> Option<Store> {
        self.store.borrow().clone()
    }

    /// Raises an event duet itself noticed; never blocks (the writer commits it shortly).
    /// This is the hook for every alarm and notice: heartbeats, the sync connection, switches,
    /// a NIC unplugged, a runtime error.
    pub fn raise(&self, severity: Severity, code: &str, message: impl Into<String>) {
        let event = NewEvent {
            at: self.clock.now(),
            severity,
            source: "duet".into(),
            code: code.to_string(),
            message: message.into(),
        };
        tracing::info!(target: "duet::events", code, severity = severity.as_str(), "{}", event.message);
        let _ = self.queue.send(Pending {
            events: vec![event],
            done: None,
        });
    }

    /// Appends events and waits until they are committed (or spooled).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Appended, String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                events,
                done: Some(tx),
            })
            .map_err(|_| "the event log has stopped".to_string())?;
        rx.await
            .map_err(|_| "the event log stopped before storing the events".to_string())?
    }

    /// Own events not yet acknowledged by the buddy (`None`: not known yet), and spooled ones.
    pub fn backlog(&self) -> Option<u64> {
        let spooled = self.spooled.load(Ordering::Relaxed);
        self.acked_known.load(Ordering::Relaxed).then(|| {
            self.local_max
                .load(Ordering::Relaxed)
                .saturating_sub(self.acked.load(Ordering::Relaxed))
                + spooled
        })
    }

    pub fn local_max(&self) -> u64 {
        self.local_max.load(Ordering::Relaxed)
    }

    /// The buddy acknowledged our events up to `upto`.
    pub(crate) fn acknowledged(&self, upto: u64) {
        self.acked.store(upto, Ordering::Relaxed);
        self.acked_known.store(true, Ordering::Relaxed);
        self.acked_changed.send_replace(upto);
    }

    /// Waits at most `limit` for the outbox to drain; returns the events still waiting.
    pub async fn drained(&self, limit: Duration) -> u64 {
        let mut rx = self.acked_changed.subscribe();
        let wait = async {
            loop {
                if self.backlog() == Some(0) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.backlog()
            .unwrap_or_else(|| self.local_max.load(Ordering::Relaxed))
    }

    /// The Database row's check.
    pub fn database_check(&self) -> Check {
        lock(&self.database).clone()
    }

    /// Whether a failing database should hand over (only if configured so).
    pub fn trigger(&self) -> Option<String> {
        (self.config.switch_on_failure && matches!(self.database_check(), Check::Failing(_)))
            .then(|| "database".to_string())
    }

    /// The DB Sync and DB Sync Stack rows (shown on the Online agent).
    pub fn rows(&self) -> Vec<Probe> {
        if self.disabled.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let sync = lock(&self.sync).clone();
        let backlog = self.backlog();
        let too_large = backlog.is_some_and(|b| b > self.config.stack_too_large);
        vec![
            Probe {
                key: "db-sync".into(),
                label: "DB Sync".into(),
                status: sync.failing.clone().map_or(Check::Ok, Check::Failing),
                value: if sync.failing.is_some() {
                    "Failing"
                } else {
                    "Active"
                }
                .into(),
                counts_toward_led: true,
                failures: sync.failures,
                last_success: sync.last_success,
            },
            Probe {
                key: "db-sync-stack".into(),
                label: "DB Sync Stack".into(),
                status: if too_large {
                    Check::Failing(format!(
                        "{} events wait to be forwarded to {} (more than {}): the sync does not keep up",
                        backlog.unwrap_or(0),
                        self.buddy,
                        self.config.stack_too_large
                    ))
                } else {
                    Check::Ok
                },
                value: match backlog {
                    Some(n) if too_large => format!("Too Large ({n})"),
                    Some(n) => format!("OK ({n})"),
                    None => "OK (not yet compared with the buddy)".into(),
                },
                counts_toward_led: true,
                failures: 0,
                last_success: None,
            },
        ]
    }

    /// Stores a batch of the buddy's own events; returns the highest number held for that
    /// origin (the acknowledgement). Idempotent; refuses gaps (events arrive in order).
    pub async fn receive(&self, origin: &str, events: Vec<Event>) -> Result<u64, String> {
        if origin != self.buddy {
            return Err(format!("events of {origin} from the buddy {}", self.buddy));
        }
        let Some(store) = self.store() else {
            return Err(format!(
                "{}'s database is not available: {}",
                self.origin,
                match self.database_check() {
                    Check::Failing(why) => why,
                    _ => "not connected".into(),
                }
            ));
        };
        let mut held = self.received.lock().await;
        let max = match held.get(origin) {
            Some(m) => *m,
            None => {
                let m = store
                    .max_seq(origin)
                    .await
                    .map_err(|e| format!("{}'s database failed: {e:#}", self.origin))?;
                held.insert(origin.to_string(), m);
                m
            }
        };
        let mut next = max + 1;
        let mut new = Vec::with_capacity(events.len());
        for e in events {
            if e.origin != origin {
                return Err(format!("event {} in a batch of {origin}", e.id));
            }
            e.verify()?;
            if e.seq < next && new.is_empty() {
                continue; // already held: a batch sent again
            }
            if e.seq != next {
                return Err(format!(
                    "events out of order: expected {} next, got {}",
                    event_id(origin, next),
                    e.id
                ));
            }
            next += 1;
            new.push(e);
        }
        if new.is_empty() {
            return Ok(max);
        }
        if let Some(delay) = self.receive_delay {
            tokio::time::sleep(delay).await;
        }
        if let Err(e) = store.insert(&new).await {
            // Unknown whether it committed: read the number again next time.
            held.remove(origin);
            return Err(format!("{}'s database failed: {e:#}", self.origin));
        }
        let upto = next - 1;
        held.insert(origin.to_string(), upto);
        let n = self.received_batches.fetch_add(1, Ordering::Relaxed) + 1;
        if self.abort_after_commit == Some(n) {
            eprintln!(
                "DUET_FAULT_ABORT_AFTER_COMMIT: aborting after committing batch {n} up to {upto}, before its acknowledgement"
            );
            std::process::abort();
        }
        Ok(upto)
    }

    /// Runs the writer, the store connection, the health check and retention until
    /// `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Some(queue) = lock(&self.queue_rx).take() else {
            anyhow::bail!("the event log runs once");
        };
        // Without its spool the event log cannot promise to lose nothing, so it does not
        // start; but the agent keeps running its failover (the Database row says why), and
        // the spool is tried again until it opens (a folder whose rights get fixed).
        let spool = loop {
            match Spool::open(&self.config.spool) {
                Ok(s) => break s,
                Err(e) => self.set_database(Check::Failing(format!(
                    "cannot open the event spool folder {} (database.spool): {e}; events are not recorded",
                    self.config.spool.display()
                ))),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.health_interval) => {}
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().writer(queue, spool, shutdown.clone()));
        tasks.spawn(self.clone().health(shutdown.clone()));
        tasks.spawn(self.clone().retention(shutdown.clone()));
        while tasks.join_next().await.is_some() {}
        if let Some(store) = self.store() {
            store.close().await;
        }
        Ok(())
    }

    fn set_database(&self, check: Check) {
        let mut db = lock(&self.database);
        if *db != check {
            match &check {
                Check::Failing(why) => tracing::warn!(reason = %why, "database failing"),
                _ => tracing::info!("database OK"),
            }
            *db = check;
        }
    }

    /// Connects the store (retrying), runs the health query every `health_interval`.
    async fn health(self: Arc<Self>, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.health_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let timeout = self.config.health_timeout;
            let store = match self.store() {
                Some(s) => s,
                None => {
                    // Opening may take the connection's time and, when it fails, as long
                    // again to find out why (store::connect_problem).
                    let within = timeout.max(Duration::from_secs(1));
                    let opened = match tokio::time::timeout(
                        within * 2 + Duration::from_secs(1),
                        Store::open(&self.config.url, within),
                    )
                    .await
                    {
                        Ok(opened) => opened,
                        Err(_) => Err(anyhow::anyhow!(
                            store::connect_problem(&self.config.url, within)
                                .await
                                .unwrap_or_else(|| format!(
                                    "{}: no answer within {}",
                                    store::endpoint(&self.config.url),
                                    humantime::format_duration(within * 2)
                                ))
                        )),
                    };
                    match opened {
                        Ok(s) => match s.max_seq(&self.origin).await {
                            Ok(max) => {
                                self.local_max.store(max, Ordering::Relaxed);
                                self.store.send_replace(Some(s.clone()));
                                self.committed.notify_one();
                                s
                            }
                            Err(e) => {
                                self.set_database(Check::Failing(format!("{e:#}")));
                                continue;
                            }
                        },
                        Err(e) => {
                            self.set_database(Check::Failing(format!("{e:#}")));
                            continue;
                        }
                    }
                }
            };
            let check = match store.health(&self.config.health_query, timeout).await {
                Ok(()) => Check::Ok,
                Err(why) => Check::Failing(why),
            };
            self.set_database(check);
        }
    }

    /// Deletes events older than the retention, hourly (and at start).
    async fn retention(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(keep) = self.config.retention else {
            return;
        };
        let mut interval = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let Some(store) = self.store() else { continue };
            let before = self.clock.now().saturating_sub(duet_base::millis(keep));
            match store.delete_before(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "event log retention: old events deleted"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "event log retention failed"),
            }
        }
    }

    /// The writer: commits queued events together; spools them while the store is down and
    /// writes the spool into the store once it is back.
    async fn writer(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Pending>,
        mut spool: Spool,
        shutdown: CancellationToken,
    ) {
        // Events spooled by an earlier run.
        let waiting: u64 = spool
            .files()
            .iter()
            .map(|f| Spool::read(f).map_or(0, |l| l.len() as u64))
            .sum();
        self.spooled.store(waiting, Ordering::Relaxed);
        let mut retry = tokio::time::interval(Duration::from_millis(500));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => None,
                p = queue.recv() => p,
                _ = retry.tick() => {
                    if !spool.is_empty() {
                        self.replay(&mut spool).await;
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                // Stopping: what is queued is still written.
                let mut rest = Vec::new();
                while let Ok(p) = queue.try_recv() {
                    rest.push(p);
                }
                if !rest.is_empty() {
                    self.write(rest, &mut spool).await;
                }
                return;
            };
            let mut batch = vec![first];
            let mut count = batch[0].events.len();
            while count < 20_000 {
                match queue.try_recv() {
                    Ok(p) => {
                        count += p.events.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            self.write(batch, &mut spool).await;
        }
    }

    /// Writes a group of pending appends: to the store, or to the spool.
    async fn write(&self, batch: Vec<Pending>, spool: &mut Spool) {
        if !spool.is_empty() {
            self.replay(spool).await;
        }
        let store = self.store().filter(|_| spool.is_empty());
        let outcome = match store {
            Some(store) => {
                let mut seq = self.local_max.load(Ordering::Relaxed);
                let mut events = Vec::new();
                let mut ids = Vec::with_capacity(batch.len());
                for p in &batch {
                    let mut mine = Vec::with_capacity(p.events.len());
                    for e in &p.events {
                        seq += 1;
                        let stored = e.clone().stored(&self.origin, seq);
                        mine.push(stored.id.clone());
                        events.push(stored);
                    }
                    ids.push(mine);
                }
                match store.insert(&events).await {
                    Ok(()) => {
                        self.local_max.store(seq, Ordering::Relaxed);
                        self.committed.notify_one();
                        Some(ids)
                    }
                    Err(e) => {
                        self.set_database(Check::Failing(format!("cannot write events: {e:#}")));
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(ids) = outcome {
            for (p, ids) in batch.into_iter().zip(ids) {
                if let Some(done) = p.done {
                    let _ = done.send(Ok(Appended::Stored(ids)));
                }
            }
            return;
        }
        let all: Vec<NewEvent> = batch.iter().flat_map(|p| p.events.clone()).collect();
        let result = spool.append(&all).map_err(|e| {
            format!(
                "the database is down and the spool ({}) cannot be written: {e}",
                self.config.spool.display()
            )
        });
        if result.is_ok() {
            self.spooled.fetch_add(all.len() as u64, Ordering::Relaxed);
        } else {
            tracing::error!(lost = all.len(), "events could not be stored nor spooled");
        }
        for p in batch {
            if let Some(done) = p.done {
                let _ = done.send(result.clone().map(|()| Appended::Spooled));
            }
        }
    }

    /// Writes the spool into the store, oldest file first; stops at the first failure.
    async fn replay(&self, spool: &mut Spool) {
        let Some(store) = self.store() else { return };
        spool.seal();
        for file in spool.files() {
            let key = Spool::key(&file);
            let lines = match Spool::read(&file) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "cannot read a spool file");
                    return;
                }
            };
            let done = match store.spool_done(&key).await {
                Ok(d) => d,
                Err(e) => {
                    self.set_database(Check::Failing(format!("{e:#}")));
                    return;
                }
            };
            let todo: Vec<_> = lines.into_iter().filter(|(n, _)| *n > done).collect();
            for chunk in todo.chunks(2_000) {
                let mut seq = self.local_max.load(Ordering::Relaxed);
                let events: Vec<Event> = chunk
                    .iter()
                    .map(|(_, e)| {
                        seq += 1;
                        e.clone().stored(&self.origin, seq)
                    })
                    .collect();
                let last = chunk.last().map_or(done, |(n, _)| *n);
                if let Err(e) = store.insert_spooled(&events, &key, last).await {
                    self.set_database(Check::Failing(format!("cannot write events: {e:#}")));
                    return;
                }
                self.local_max.store(seq, Ordering::Relaxed);
                self.spooled
                    .fetch_sub(chunk.len() as u64, Ordering::Relaxed);
                self.committed.notify_one();
            }
            if let Err(e) = std::fs::remove_file(&file) {
                tracing::error!(file = %file.display(), error = %e, "cannot remove a written spool file");
                return;
            }
            tracing::info!(file = %file.display(), events = todo.len(), "spooled events written to the database");
        }
    }
}
/// The kernel and the capabilities raise their alarms here.
impl duet_base::Alarms for EventLog {
    fn raise(&self, severity: Severity, code: &str, message: String) {
        EventLog::raise(self, severity, code, message);
    }
}

/// The buddy's batches arrive through the kernel's peer link, undecoded: the event log reads
/// them (a batch that is not events is an unreadable message, as it always was).
impl duet_kernel::Inbox for EventLog {
    fn receive(
        &self,
        origin: String,
        events: serde_json::Value,
    ) -> duet_kernel::net::BoxFuture<'_, Result<u64, duet_kernel::Refusal>> {
        use duet_kernel::Refusal;
        Box::pin(async move {
            let events: Vec<Event> =
                serde_json::from_value(events).map_err(|e| Refusal::Unreadable(e.to_string()))?;
            EventLog::receive(self, &origin, events)
                .await
                .map_err(Refusal::Refused)
        })
    }
}
