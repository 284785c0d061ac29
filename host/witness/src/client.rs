//! The witness client: one task over its own NATS connection that keeps the lease as
//! [`crate::lease`] says, and the snapshot others read ([`Client::view`], [`Client::row`]).
//! Every operation is bounded by `witness.timeout`; nothing here ever blocks a reader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use duet_base::lock;
use duet_core::Witness;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::WitnessConfig;
use crate::lease::{Lease, Op, Value};

/// The oldest nats-server the witness accepts: 2.9 before 2.9.21 could accept two concurrent
/// writes expecting the same last sequence in a replicated stream (nats-server #4320); a key
/// could be corrupted after a forced stop of the stream leader until 2.10.18 (#5644); 2.10.19
/// broke compare-and-swap on single-replica streams (#5841, fixed in 2.10.20).
pub const MIN_VERSION: (u64, u64, u64) = (2, 10, 20);

/// Whether the witness can be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Connected, and the last operation succeeded recently.
    Available,
    /// Not reachable (or not recently), with the reason.
    NotAvailable(String),
    /// Reachable but unusable: a server too old, a bucket that is not replicated, a refused
    /// permission. The reason says which.
    Invalid(String),
}

/// What the Witness row shows.
#[derive(Debug, Clone)]
pub struct Row {
    pub availability: Availability,
    /// Who holds the lease by the last read.
    pub holder: Option<String>,
    /// The key's revision last seen (0: never written).
    pub revision: Option<u64>,
    /// How long ago this agent's lease was last renewed (the send time of the acknowledged
    /// write), while it holds it.
    pub renewed_ago: Option<Duration>,
    /// The server version the connection reported.
    pub server_version: Option<String>,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Acknowledged writes that hold the lease (acquisitions and renewals).
    pub renewals: u64,
    /// Writes refused because the revision moved on.
    pub refused: u64,
    /// Operations that failed or timed out.
    pub failures: u64,
}

/// The witness client of one agent.
pub struct Client {
    config: WitnessConfig,
    me: String,
    lease: Mutex<Lease>,
    want: AtomicBool,
    /// Wakes the task when what the agent wants changes.
    wake: Notify,
    /// Notified when the lease changes hands for this agent (the tick loop decides at once).
    changed: Mutex<Option<Arc<Notify>>>,
    problem: Mutex<Option<Availability>>,
    version: Mutex<Option<String>>,
    counters: Mutex<Counters>,
    /// The server's last "Permissions Violation" (set by the connection's event callback).
    denied: Arc<Mutex<Option<String>>>,
}

impl Client {
    pub fn new(config: WitnessConfig, me: String) -> Arc<Client> {
        let lease = Lease::new(me.clone(), config.lease, config.renew, config.margin);
        Arc::new(Client {
            config,
            me,
            lease: Mutex::new(lease),
            want: AtomicBool::new(false),
            wake: Notify::new(),
            changed: Mutex::new(None),
            problem: Mutex::new(Some(Availability::NotAvailable("connecting".into()))),
            version: Mutex::new(None),
            counters: Mutex::new(Counters::default()),
            denied: Arc::new(Mutex::new(None)),
        })
    }

    /// Notified whenever this agent gains or loses the lease.
    pub fn notify(&self, changed: Arc<Notify>) {
        *lock(&self.changed) = Some(changed);
    }

    /// What the failover core sees now.
    pub fn view(&self) -> Witness {
        let mut view = lock(&self.lease).view(Instant::now());
        if matches!(*lock(&self.problem), Some(Availability::Invalid(_))) {
            view.reachable = false;
            view.free = false;
        }
        view
    }

    /// Whether the agent wants the lease (claiming, Online, or releasing its virtual IP).
    pub fn want(&self, hold: bool) {
        if self.want.swap(hold, Ordering::SeqCst) != hold {
            self.wake.notify_one();
        }
    }

    pub fn row(&self) -> Row {
        let now = Instant::now();
        let lease = lock(&self.lease);
        let view = lease.view(now);
        let availability = match lock(&self.problem).clone() {
            Some(p @ Availability::Invalid(_)) => p,
            _ if view.reachable => Availability::Available,
            Some(p) => p,
            None => Availability::NotAvailable("no answer recently".into()),
        };
        Row {
            availability,
            holder: view.holder,
            revision: lease.revision(),
            renewed_ago: lease
                .renewed()
                .filter(|_| view.held)
                .map(|t| now.duration_since(t)),
            server_version: lock(&self.version).clone(),
        }
    }

    pub fn counters(&self) -> Counters {
        *lock(&self.counters)
    }

    /// Keeps the lease until `stop`: connects (again and again while it fails), then carries
    /// out what [`Lease::next`] says.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let store = tokio::select! {
                () = stop.cancelled() => return,
                r = self.connect() => r,
            };
            match store {
                Ok(store) => {
                    *lock(&self.problem) = None;
                    self.serve(&store, &stop).await;
                    return;
                }
                Err(problem) => {
                    tracing::warn!(?problem, "witness unusable");
                    // An outage is retried at the renewal pace; a configuration fault (a server
                    // too old, a bucket not replicated) rarely heals by itself.
                    let pause = match problem {
                        Availability::Invalid(_) => self.config.renew * 10,
                        _ => self.config.renew,
                    };
                    *lock(&self.problem) = Some(problem);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<kv::Store, Availability> {
        let c = &self.config;
        let not = |what: &str, e: &dyn std::fmt::Display| {
            Availability::NotAvailable(format!("{what}: {e}"))
        };
        let options = c
            .connection
            .options()
            .map_err(Availability::Invalid)?
            .connection_timeout(c.timeout)
            .request_timeout(Some(c.timeout))
            .name(format!("duet-witness {}", self.me))
            .event_callback({
                let denied = self.denied.clone();
                move |event| {
                    if let async_nats::Event::ServerError(async_nats::ServerError::Other(e)) =
                        &event
                        && e.to_lowercase().contains("permissions violation")
                    {
                        *lock(&denied) = Some(e.clone());
                    }
                    std::future::ready(())
                }
            });
        let servers = c.connection.addresses();
        let client = tokio::time::timeout(c.timeout * 2, options.connect(servers))
            .await
            .map_err(|_| Availability::NotAvailable("no server answered in time".into()))?
            .map_err(|e| not("cannot connect", &e))?;
        let version = client.server_info().version;
        *lock(&self.version) = Some(version.clone());
        if !version_ok(&version) {
            let (a, b, p) = MIN_VERSION;
            return Err(Availability::Invalid(format!(
                "nats-server {version} is too old for a witness: {a}.{b}.{p} or newer"
            )));
        }
        let js = async_nats::jetstream::new(client);
        let store = match tokio::time::timeout(c.timeout, js.get_key_value(&c.bucket)).await {
            Ok(Ok(store)) => store,
            Ok(Err(_)) => tokio::time::timeout(
                c.timeout * 4,
                js.create_key_value(kv::Config {
                    bucket: c.bucket.clone(),
                    history: 1,
                    num_replicas: 3,
                    description: "duet witness leases".into(),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|_| Availability::NotAvailable("creating the bucket timed out".into()))?
            .map_err(|e| {
                Availability::Invalid(format!(
                    "bucket {} is missing and cannot be created (three nodes, replicas 3): {e}",
                    c.bucket
                ))
            })?,
            Err(_) => {
                return Err(Availability::NotAvailable(
                    "no bucket answer in time".into(),
                ));
            }
        };
        let replicas = tokio::time::timeout(c.timeout, store.status())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| s.info.config.num_replicas);
        if let Some(r) = replicas
            && r < 3
        {
            return Err(Availability::Invalid(format!(
                "bucket {} has {r} replica(s): a witness needs 3",
                c.bucket
            )));
        }
        Ok(store)
    }

    /// Carries out the lease's operations until `stop`.
    async fn serve(&self, store: &kv::Store, stop: &CancellationToken) {
        let key = self.config.key.as_str();
        let timeout = self.config.timeout;
        loop {
            let want = self.want.load(Ordering::SeqCst);
            let now = Instant::now();
            let held_before = lock(&self.lease).view(now).held;
            let op = lock(&self.lease).next(want, now);
            if let Op::Wait { until } = op {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = self.wake.notified() => {}
                }
                continue;
            }
            lock(&self.lease).sent(now);
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                r = tokio::time::timeout(timeout, self.carry_out(store, key, &op)) => r,
            };
            let at = Instant::now();
            let mut lease = lock(&self.lease);
            match outcome {
                Ok(Outcome::Read(revision, holder)) => lease.read(revision, holder, at),
                Ok(Outcome::Written(revision, holder)) => {
                    if holder.is_some() {
                        lock(&self.counters).renewals += 1;
                    }
                    lease.written(revision, holder, now, at);
                }
                Ok(Outcome::Refused) => {
                    lock(&self.counters).refused += 1;
                    lease.refused(at);
                }
                Ok(Outcome::Failed(why)) => {
                    lock(&self.counters).failures += 1;
                    tracing::debug!(?why, ?op, "witness operation failed");
                    *lock(&self.problem) = Some(why);
                    lease.failed();
                }
                Err(_) => {
                    lock(&self.counters).failures += 1;
                    *lock(&self.problem) = Some(Availability::NotAvailable(format!(
                        "no answer within witness.timeout ({})",
                        duet_base::config::fmt(timeout)
                    )));
                    lease.failed();
                }
            }
            // A refused permission drops the message: the operation times out, and the server
            // says why on the connection.
            if let Some(why) = lock(&self.denied).take() {
                *lock(&self.problem) = Some(Availability::Invalid(format!(
                    "the server refused this pair's user: {why}"
                )));
            }
            if matches!(
                lock(&self.problem).as_ref(),
                Some(Availability::NotAvailable(_))
            ) && lease.view(at).reachable
            {
                *lock(&self.problem) = None;
            }
            let held_after = lease.view(at).held;
            drop(lease);
            if held_before != held_after
                && let Some(changed) = lock(&self.changed).as_ref()
            {
                changed.notify_one();
            }
        }
    }

    async fn carry_out(&self, store: &kv::Store, key: &str, op: &Op) -> Outcome {
        let value = |holder: &Option<String>| {
            serde_json::to_vec(&Value {
                holder: holder.clone(),
            })
            .expect("a lease value serialises")
            .into()
        };
        match op {
            Op::Read => match store.entry(key).await {
                Ok(None) => Outcome::Read(0, None),
                Ok(Some(e)) => {
                    let holder = match e.operation {
                        kv::Operation::Put => serde_json::from_slice::<Value>(&e.value)
                            .ok()
                            .and_then(|v| v.holder),
                        kv::Operation::Delete | kv::Operation::Purge => None,
                    };
                    Outcome::Read(e.revision, holder)
                }
                Err(e) => Outcome::Failed(Availability::NotAvailable(format!("read failed: {e}"))),
            },
            Op::Create => {
                let holder = Some(self.me.clone());
                match store.create(key, value(&holder)).await {
                    Ok(revision) => Outcome::Written(revision, holder),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists || refused(&e) => {
                        Outcome::Refused
                    }
                    Err(e) => Outcome::Failed(write_failed(&e)),
                }
            }
            Op::Update { revision, holder } => {
                match store.update(key, value(holder), *revision).await {
                    Ok(revision) => Outcome::Written(revision, holder.clone()),
                    Err(e) if refused(&e) => Outcome::Refused,
                    Err(e) => Outcome::Failed(write_failed(&e)),
                }
            }
            Op::Wait { .. } => unreachable!("waits are not carried out"),
        }
    }
}

/// The server refused a compare-and-swap because the key's revision moved on. async-nats
/// names only error 10071 so; a replicated stream may answer 10164 ("wrong last sequence",
/// a concurrent write to the same subject in flight), which is the same refusal.
pub fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if e.to_string().contains("wrong last sequence") {
            return true;
        }
        at = e.source();
    }
    false
}

/// A refused permission is a configuration fault, anything else an outage.
fn write_failed(e: &dyn std::fmt::Display) -> Availability {
    let text = e.to_string();
    if text.to_lowercase().contains("permission") {
        Availability::Invalid(format!("write refused: {text}"))
    } else {
        Availability::NotAvailable(format!("write failed: {text}"))
    }
}

enum Outcome {
    Read(u64, Option<String>),
    Written(u64, Option<String>),
    Refused,
    Failed(Availability),
}

/// Whether a server's version ("2.11.11", "2.12.0-RC.1") is at least [`MIN_VERSION`].
pub fn version_ok(version: &str) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= MIN_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_the_fixes_are_refused() {
        assert!(!version_ok("2.9.10"));
        assert!(!version_ok("2.9.25"));
        assert!(!version_ok("2.10.19"));
        assert!(version_ok("2.10.20"));
        assert!(version_ok("2.11.11"));
        assert!(!version_ok("garbage"));
    }
}
