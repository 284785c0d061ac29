//! The runtime-error watchdog behind the RTE Count row: the host's probe, plugin and core
//! calls (and its own tasks) run through [`Watchdog::call`] with a deadline. A component whose
//! call misses its deadline is in runtime error until one of its calls completes in time again;
//! the RTE Count is the number of distinct components in error (two hangs in one count once),
//! as the reference counts distinct processes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::lock;

/// The `[watchdog]` section, validated.
#[derive(Debug, Clone, Copy)]
pub struct WatchdogConfig {
    /// How long a probe call (NATS) may take before it is a runtime error.
    pub deadline: Duration,
    /// A runtime error hands over to the buddy (on the Online agent, like any switch trigger).
    pub switch_trigger: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            deadline: Duration::from_secs(5),
            switch_trigger: false,
        }
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWatchdog {
    deadline: Option<String>,
    switch_trigger: Option<bool>,
}

/// Validates `[watchdog]`, pushing every mistake onto `errors`.
pub fn validate(raw: RawWatchdog, errors: &mut crate::config::Errors) -> WatchdogConfig {
    let d = WatchdogConfig::default();
    let deadline = errors.duration(
        "watchdog.deadline",
        raw.deadline.as_deref(),
        d.deadline,
        (Duration::from_millis(10), Duration::from_secs(3600)),
    );
    WatchdogConfig {
        deadline,
        switch_trigger: raw.switch_trigger.unwrap_or(d.switch_trigger),
    }
}

/// Watches calls with deadlines; see the module documentation.
pub struct Watchdog {
    inner: Mutex<Inner>,
    /// The components in error, published on every change (for the event log and tests).
    in_error: watch::Sender<BTreeSet<String>>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Calls in flight: their component and deadline.
    calls: HashMap<u64, (String, Instant)>,
    /// Components in runtime error.
    failed: BTreeSet<String>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            inner: Mutex::new(Inner::default()),
            in_error: watch::Sender::new(BTreeSet::new()),
        }
    }
}

/// One call in flight; ends (and judges the call) when dropped, also when the caller is
/// cancelled.
pub struct Ticket<'a> {
    watchdog: &'a Watchdog,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.watchdog.end(self.id);
    }
}

impl Watchdog {
    /// Runs `f` as a call of `component` that must finish within `deadline`.
    pub async fn call<F: Future>(&self, component: &str, deadline: Duration, f: F) -> F::Output {
        let _ticket = self.begin(component, deadline);
        f.await
    }

    /// Starts a call of `component` that must end (the ticket dropped) within `deadline`.
    pub fn begin(&self, component: &str, deadline: Duration) -> Ticket<'_> {
        let mut inner = lock(&self.inner);
        inner.next += 1;
        let id = inner.next;
        inner
            .calls
            .insert(id, (component.to_string(), Instant::now() + deadline));
        Ticket { watchdog: self, id }
    }

    fn end(&self, id: u64) {
        let mut inner = lock(&self.inner);
        let Some((component, deadline)) = inner.calls.remove(&id) else {
            return;
        };
        let now = Instant::now();
        // Recovered: this call was in time and no other call of the component is overdue.
        let overdue = inner
            .calls
            .values()
            .any(|(c, d)| *c == component && *d <= now);
        if now < deadline && !overdue && inner.failed.remove(&component) {
            tracing::info!(%component, "runtime error cleared: a call completed in time");
            self.publish(&inner);
        }
    }

    /// Marks the components whose calls in flight are past their deadline; returns the
    /// components in error. Called every tick.
    pub fn check(&self) -> BTreeSet<String> {
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        let overdue: Vec<String> = inner
            .calls
            .values()
            .filter(|(_, d)| *d <= now)
            .map(|(c, _)| c.clone())
            .collect();
        let mut changed = false;
        for component in overdue {
            if inner.failed.insert(component.clone()) {
                tracing::warn!(%component, "runtime error: a call missed its deadline");
                changed = true;
            }
        }
        if changed {
            self.publish(&inner);
        }
        inner.failed.clone()
    }

    /// The components in runtime error, as of the last check.
    pub fn in_error(&self) -> BTreeSet<String> {
        lock(&self.inner).failed.clone()
    }

    /// Follows the components in error (the integrator hooks the event log here).
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<String>> {
        self.in_error.subscribe()
    }

    fn publish(&self, inner: &Inner) {
        self.in_error.send_replace(inner.failed.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    /// A TCP server that accepts and never answers: a read from it hangs.
    async fn silent_server() -> (tokio::net::TcpListener, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr)
    }

    async fn read_one(addr: std::net::SocketAddr) -> std::io::Result<usize> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut buf = [0u8; 1];
        s.read(&mut buf).await
    }

    #[tokio::test]
    async fn hangs_count_once_per_component_and_clear_when_a_call_is_in_time() {
        let dog = std::sync::Arc::new(Watchdog::default());
        let (listener, addr) = silent_server().await;
        let deadline = Duration::from_millis(100);
        let mut hangs = tokio::task::JoinSet::new();
        for component in ["probe:x", "probe:x", "probe:y"] {
            let dog = dog.clone();
            hangs.spawn(async move { dog.call(component, deadline, read_one(addr)).await });
        }
        // Accept the three connections and keep them open without a word.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(listener.accept().await.expect("accept").0);
        }
        assert!(dog.check().is_empty(), "not yet past the deadline");
        tokio::time::sleep(Duration::from_millis(150)).await;
        let failed = dog.check();
        assert_eq!(
            failed.into_iter().collect::<Vec<_>>(),
            ["probe:x", "probe:y"],
            "two hangs in probe:x count once"
        );
        // The server goes away: the hung calls end, late; the components stay in error.
        drop(held);
        drop(listener);
        while hangs.join_next().await.is_some() {}
        assert_eq!(dog.check().len(), 2, "a late answer is no recovery");
        // A call in time (connection refused at once) recovers probe:x only.
        let refused = dog.call("probe:x", deadline, read_one(addr)).await;
        assert!(refused.is_err());
        assert_eq!(
            dog.check().into_iter().collect::<Vec<_>>(),
            ["probe:y"],
            "probe:x recovered"
        );
        assert_eq!(dog.subscribe().borrow().len(), 1);
    }
}
