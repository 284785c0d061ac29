//! What the capabilities show the kernel ([`HostSurroundings`]), and the built-in probes'
//! tasks with the alarms they raise.

use std::collections::BTreeSet;
use std::sync::Arc;

use duet_base::watchdog::Watchdog;
use duet_base::{Severity, Wake};
use duet_core::{Check, Nic, Probe};
use duet_events::EventLog;
use duet_kernel::Surroundings;
use duet_plugins::PluginTable;
use duet_probes::nats::NatsState;
use duet_probes::nic::NicWatcher;
use duet_vip::Vips;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Config;

/// The kernel's view of the plugins, the NICs, NATS, the virtual IPs and the event log: every
/// answer from the snapshot each keeps.
pub(crate) struct HostSurroundings {
    pub plugins: PluginTable,
    pub nics: Arc<NicWatcher>,
    /// `None` when `[nats]` is not configured.
    pub nats: Option<Arc<NatsState>>,
    pub vips: Arc<Vips>,
    pub events: Arc<EventLog>,
    /// The NICs that carry a virtual IP.
    pub vip_nics: BTreeSet<String>,
    /// The witness client: none when `[witness]` is not configured.
    pub witness: Option<Arc<duet_witness::client::Client>>,
}

impl Surroundings for HostSurroundings {
    fn plugin_triggers(&self) -> Vec<String> {
        self.plugins.triggers()
    }

    fn event_log_trigger(&self) -> Option<String> {
        self.events.trigger()
    }

    fn faults(&self) -> u32 {
        self.plugins.faults()
    }

    fn nics(&self) -> Vec<Nic> {
        self.nics.nics(|nic| self.vip_nics.contains(nic))
    }

    fn database(&self) -> Check {
        self.events.database_check()
    }

    fn nats(&self) -> Check {
        self.nats
            .as_ref()
            .map_or(Check::NotConfigured, |n| n.check())
    }

    fn rows(&self, online: bool) -> Vec<Probe> {
        let mut rows = [self.plugins.probes(), self.vips.probes()].concat();
        rows.extend(self.witness.as_deref().map(crate::witness::row));
        // Rule (reference §4): DB Sync and DB Sync Stack are shown on the Online agent.
        if online {
            rows.extend(self.events.rows());
        }
        rows
    }
}

/// The built-in probes' shared state.
pub(crate) struct Builtin {
    pub watchdog: Arc<Watchdog>,
    pub nics: Arc<NicWatcher>,
    pub nats: Arc<NatsState>,
}

impl Builtin {
    /// The built-in probes' tasks: the NIC watcher, the NATS probe, and their alarms. (The
    /// watchdog is checked every tick.)
    pub fn spawn(
        &self,
        config: &Config,
        events: &Arc<EventLog>,
        wake: &Wake,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        stop: &CancellationToken,
    ) {
        tasks.spawn(self.nics.clone().run(stop.clone(), wake.clone()));
        tasks.spawn(probe_events(
            self.nics.clone(),
            self.watchdog.clone(),
            events.clone(),
            stop.clone(),
        ));
        if let Some(nats) = config.nats.clone() {
            tasks.spawn(duet_probes::nats::run(
                nats,
                config.kernel.agent.name.clone(),
                config.kernel.buddy.name.clone(),
                self.nats.clone(),
                self.watchdog.clone(),
                config.watchdog.deadline,
                wake.clone(),
                stop.clone(),
            ));
        }
    }
}

/// Raises the built-in probes' changes in the event log: a NIC unplugged or back, a component
/// entering or leaving runtime error.
async fn probe_events(
    nics: Arc<NicWatcher>,
    watchdog: Arc<Watchdog>,
    events: Arc<EventLog>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut rte = watchdog.subscribe();
    let mut nics = nics.subscribe();
    let mut links = nics.borrow_and_update().clone();
    let mut failed = rte.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            changed = nics.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = nics.borrow_and_update().clone();
                for (name, link) in &now {
                    match links.get(name).map(|l| l.up) {
                        // A NIC down since start is no news: only a change is.
                        Some(true) | None if !link.up && link.changed => events.raise(
                            Severity::Warning,
                            "nic_unplugged",
                            format!("NIC {name} is unavailable (down or unplugged)"),
                        ),
                        Some(false) if link.up => events.raise(
                            Severity::Info,
                            "nic_available",
                            format!("NIC {name} is available again"),
                        ),
                        _ => {}
                    }
                }
                links = now;
            }
            changed = rte.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = rte.borrow_and_update().clone();
                for component in now.difference(&failed) {
                    events.raise(
                        Severity::Error,
                        "runtime_error",
                        format!("runtime error: {component} missed its deadline"),
                    );
                }
                for component in failed.difference(&now) {
                    events.raise(
                        Severity::Info,
                        "runtime_error_cleared",
                        format!("{component} answers in time again"),
                    );
                }
                failed = now;
            }
        }
    }
}
