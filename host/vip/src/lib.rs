//! Virtual IP mode: the Online agent holds each configured VIP on its NIC.
//!
//! Going online, per VIP: ARP probes through libpcap check that nobody answers for it (an
//! answer from the dead buddy's MAC is its lapsing lease, not an occupant); the address is
//! added as a kernel lease (`valid_lft`) that the Online agent keeps renewing, so a killed
//! agent's VIP expires by itself; a gratuitous-ARP burst spanning more than Linux's 1 s
//! locktime moves the neighbours; then a capture keeps watching for other claimants and
//! re-announces (lapsing lease: until it stops; anyone else: a conflict, shown and logged).
//! Going offline, on shutdown, and for a stale VIP found at start: the address is removed.
//! See docs/vip.md.

#![warn(clippy::too_many_lines)]

mod ahead;
pub mod arp;
pub mod config;
pub mod hooks;
pub mod netif;
pub mod netlink;
pub mod pcap;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet_core::api::PacketCapture;
use duet_core::{Check, Probe, TimestampMs, VipResult};
use tokio_util::sync::CancellationToken;

use crate::netlink::Netlink;
use crate::pcap::Pcap;
use arp::{Mac, format_mac};
use config::VipConfig;
use duet_base::lock;
use duet_base::pulse::Pulse;
use duet_base::{Alarms, Clock, Severity, Wake};

/// What the VIP rows show, per VIP.
#[derive(Debug, Clone, Default)]
struct RowState {
    held: bool,
    /// The dead buddy's MAC still answers: announcing until its lease lapses.
    lapsing: Option<Mac>,
    /// Someone else answers for the VIP.
    conflict: Option<String>,
    conflicts: u32,
    /// The last acquire or renew error.
    error: Option<String>,
    /// The VIP is outside its NIC's subnets (or the NIC is missing).
    subnet: Option<String>,
    since: Option<TimestampMs>,
}

/// What this agent knows of the buddy, for telling a lapsing lease from an occupant.
#[derive(Debug, Clone, Default)]
struct Buddy {
    macs: Vec<Mac>,
    dead: bool,
}

struct Ops {
    wanted: bool,
    /// Per VIP: the stop flag of its announcer while it runs.
    announcers: Vec<Option<Arc<AtomicBool>>>,
}

/// The VIPs of this agent.
pub struct Vips {
    specs: Vec<VipConfig>,
    rows: Mutex<Vec<RowState>>,
    result: Mutex<Option<VipResult>>,
    buddy: Mutex<Buddy>,
    ops: tokio::sync::Mutex<Ops>,
    wake: Wake,
    pcap: Result<&'static Pcap, PacketCapture>,
    clock: Clock,
    /// Where a conflict starting and ending is raised (the event log).
    alarms: Arc<dyn Alarms>,
    /// The rtnetlink socket every address change goes through, opened at start.
    netlink: Mutex<Result<Netlink, String>>,
    /// The decision loop's pulse: while it is late, no lease is renewed and nothing announced.
    pulse: Arc<Pulse>,
    /// Fenced: the VIPs were removed because the decision loop stalled; nothing is renewed or
    /// announced until the next acquire.
    fenced: AtomicBool,
    /// The ARP check run while the buddy is in doubt, ahead of a takeover.
    ahead: ahead::Ahead,
    /// The capabilities virtual IP mode needs and this process lacks, as the rows say it.
    missing_caps: Option<String>,
}

/// How the ARP check went.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    Free,
    /// Only the dead buddy's MAC answered.
    Lapsing(Mac),
}

impl Vips {
    /// `wake` asks the tick loop for a step (a result is ready); `pulse` is the decision
    /// loop's.
    pub fn new(
        specs: Vec<VipConfig>,
        wake: Wake,
        clock: Clock,
        alarms: Arc<dyn Alarms>,
        pulse: Arc<Pulse>,
    ) -> Arc<Self> {
        let n = specs.len();
        // Loaded only in virtual IP mode.
        let pcap = if n == 0 {
            Err(PacketCapture {
                found: false,
                library: None,
                version: None,
                message: None,
                detail: None,
            })
        } else {
            crate::pcap::library()
        };
        if let Err(p) = &pcap
            && n > 0
        {
            let why = p.message.as_deref().unwrap_or(crate::pcap::NOT_DETECTED);
            let detail = p.detail.as_deref().unwrap_or_default();
            tracing::warn!(problem = %why, %detail, "virtual IP mode without libpcap: no ARP check and no gratuitous ARP");
        }
        let netlink = if n == 0 {
            Err("no virtual IP".into())
        } else {
            Netlink::open().map_err(|e| format!("cannot open an rtnetlink socket: {e}"))
        };
        if let Err(e) = &netlink
            && n > 0
        {
            tracing::error!(error = %e, "virtual IP mode cannot change addresses");
        }
        let missing_caps = (n > 0).then(missing_capabilities).flatten();
        if let Some(why) = &missing_caps {
            tracing::error!(problem = %why, "virtual IP mode lacks a capability");
        }
        Arc::new(Vips {
            missing_caps,
            specs,
            rows: Mutex::new(vec![RowState::default(); n]),
            result: Mutex::new(None),
            buddy: Mutex::new(Buddy::default()),
            ops: tokio::sync::Mutex::new(Ops {
                wanted: false,
                announcers: vec![None; n],
            }),
            wake,
            pcap,
            clock,
            alarms,
            netlink: Mutex::new(netlink),
            pulse,
            fenced: AtomicBool::new(false),
            ahead: ahead::Ahead::new(),
        })
    }

    /// Runs `f` on the rtnetlink socket.
    fn netlink<T>(&self, f: impl FnOnce(&mut Netlink) -> Result<T, String>) -> Result<T, String> {
        match &mut *lock(&self.netlink) {
            Ok(nl) => f(nl),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether an announcer must stop sending: told to, fenced, or the decision loop is late.
    fn quiet(&self, stop: &AtomicBool) -> bool {
        stop.load(Ordering::Relaxed) || self.fenced.load(Ordering::Acquire) || self.pulse.late()
    }

    /// The fence, from any thread and without the async runtime: stops renewing and
    /// announcing, and removes every VIP from its NIC at once. Returns the removal errors.
    pub fn fence(&self) -> Vec<String> {
        self.fenced.store(true, Ordering::Release);
        let mut errors = Vec::new();
        for (i, vip) in self.specs.iter().enumerate() {
            let removed = self.netlink(|nl| netif::remove(nl, vip));
            self.row(i, |r| {
                r.held = removed.is_err();
                r.lapsing = None;
                r.since = None;
            });
            if let Err(e) = removed {
                errors.push(format!("{}: {e}", vip.cidr()));
            }
        }
        errors
    }

    pub fn enabled(&self) -> bool {
        !self.specs.is_empty()
    }

    /// The result of the last acquire or release, once.
    pub fn take_result(&self) -> Option<VipResult> {
        lock(&self.result).take()
    }

    /// The buddy's MACs (from its peer report) and whether it is declared dead.
    pub fn set_buddy(&self, macs: &[String], dead: bool) {
        let macs = macs.iter().filter_map(|m| arp::parse_mac(m)).collect();
        *lock(&self.buddy) = Buddy { macs, dead };
    }

    fn buddy(&self) -> Buddy {
        lock(&self.buddy).clone()
    }

    /// While every path to the buddy fails, before it is declared dead: checks the VIPs by ARP
    /// in the background (at most once a second), so that a takeover only leases and
    /// announces. Nothing without libpcap (the claim has no check to make then).
    pub fn look_ahead(self: &Arc<Self>) {
        let Ok(pcap) = self.pcap else {
            return;
        };
        if self.specs.is_empty() || !self.ahead.begin() {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let found = me.specs.iter().map(|vip| me.sweep(vip, pcap)).collect();
            me.ahead.finish(found);
        });
    }

    /// The buddy is heard again: a check made ahead is dropped.
    pub fn forget_ahead(&self) {
        self.ahead.forget();
    }

    /// The check ahead for one VIP: `arp_tries` probes; any answer from a MAC not the buddy's
    /// is a stranger (the claim will check again and fail with it).
    fn sweep(&self, vip: &VipConfig, pcap: &'static Pcap) -> Result<ahead::Swept, String> {
        let ours = netif::mac(&vip.nic)?;
        let mut cap = pcap.open(&vip.nic, 10)?;
        let mut buddy = None;
        for _ in 0..vip.arp_tries {
            cap.send(&arp::probe(ours, vip.address))?;
            let answers = collect(&mut cap, vip.address, ours, vip.arp_wait, None, SWEEP_AFTER)?;
            let macs = self.buddy().macs;
            if let Some(m) = answers.iter().find(|m| !macs.contains(m)) {
                return Err(in_use(m));
            }
            buddy = buddy.or(answers.first().copied());
        }
        Ok(ahead::Swept { cap, ours, buddy })
    }

    /// The first VIP that cannot live on its NIC as configured (the Configuration row).
    pub fn configuration_problem(&self) -> Option<String> {
        lock(&self.rows).iter().find_map(|r| r.subnet.clone())
    }

    /// `10.0.0.10/24 on eth0, ...` for the Failover Config window; none without VIPs.
    pub fn describe(&self) -> Option<String> {
        (!self.specs.is_empty()).then(|| {
            self.specs
                .iter()
                .map(|v| format!("{} on {}", v.cidr(), v.nic))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// The VIP rows, as probe rows of the Status window.
    pub fn probes(&self) -> Vec<Probe> {
        let rows = lock(&self.rows).clone();
        self.specs
            .iter()
            .zip(rows)
            .map(|(vip, r)| {
                let value = match (&r.conflict, r.held, r.lapsing) {
                    (Some(_), _, _) => "Conflict".to_string(),
                    (None, true, Some(m)) => format!(
                        "Held; announcing until the buddy's lease lapses ({})",
                        format_mac(&m)
                    ),
                    (None, true, None) => "Held".to_string(),
                    (None, false, _) => "Not held".to_string(),
                };
                let no_pcap = self.pcap.as_ref().err().map(|p| {
                    format!(
                        "{}: no gratuitous ARP can be sent and the VIP cannot be checked by ARP",
                        p.message.clone().unwrap_or_default()
                    )
                });
                let why = r
                    .subnet
                    .clone()
                    .or(self.missing_caps.clone())
                    .or(r.conflict.clone())
                    .or(r.error.clone())
                    .or(no_pcap);
                Probe {
                    key: format!("vip:{}", vip.nic),
                    label: format!("Virtual IP {} ({})", vip.cidr(), vip.nic),
                    status: why.map_or(Check::Ok, Check::Failing),
                    value,
                    counts_toward_led: true,
                    failures: r.conflicts,
                    last_success: r.since,
                }
            })
            .collect()
    }

    fn row(&self, i: usize, f: impl FnOnce(&mut RowState)) {
        if let Some(r) = lock(&self.rows).get_mut(i) {
            f(r);
        }
    }

    fn finish(&self, result: VipResult) {
        *lock(&self.result) = Some(result);
        (self.wake)();
    }

    /// Takes every VIP (in the background); the result arrives through [`Vips::take_result`].
    pub fn acquire(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.acquire_all().await;
            me.finish(result);
        });
    }

    /// Gives every VIP back (in the background).
    pub fn release(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.release_all().await;
            me.finish(result);
        });
    }

    async fn acquire_all(self: &Arc<Self>) -> VipResult {
        let mut ops = self.ops.lock().await;
        ops.wanted = true;
        // A new claim is the decision of a loop that runs again.
        self.fenced.store(false, Ordering::Release);
        for (i, vip) in self.specs.iter().enumerate() {
            let me = self.clone();
            let spec = vip.clone();
            let taken = tokio::task::spawn_blocking(move || me.take(i, &spec))
                .await
                .unwrap_or_else(|e| Err(format!("the acquire task failed: {e}")));
            match taken {
                Ok(lapsing) => {
                    let now = self.clock.now();
                    self.row(i, |r| {
                        r.held = true;
                        r.error = None;
                        r.lapsing = lapsing;
                        r.since = Some(now);
                    });
                    if let Ok(pcap) = self.pcap {
                        let stop = Arc::new(AtomicBool::new(false));
                        ops.announcers[i] = Some(stop.clone());
                        let me = self.clone();
                        let spec = vip.clone();
                        std::thread::spawn(move || me.announce(i, &spec, pcap, &stop));
                    }
                }
                Err(why) => {
                    tracing::error!(vip = %vip.cidr(), nic = %vip.nic, error = %why, "cannot acquire the virtual IP");
                    self.row(i, |r| r.error = Some(why.clone()));
                    ops.wanted = false;
                    self.drop_all(&mut ops).await;
                    return VipResult::Failed(format!("{} on {}: {why}", vip.cidr(), vip.nic));
                }
            }
        }
        VipResult::Acquired
    }

    async fn release_all(self: &Arc<Self>) -> VipResult {
        let mut ops = self.ops.lock().await;
        ops.wanted = false;
        match self.drop_all(&mut ops).await {
            None => VipResult::Released,
            // Still on the NIC: the renew loop keeps trying, and the lease lapses anyway.
            Some(why) => VipResult::Failed(why),
        }
    }

    /// Stops the announcers and removes every VIP; the first error, if any.
    async fn drop_all(self: &Arc<Self>, ops: &mut Ops) -> Option<String> {
        for stop in ops.announcers.iter_mut().filter_map(Option::take) {
            stop.store(true, Ordering::Relaxed);
        }
        let me = self.clone();
        let removed = tokio::task::spawn_blocking(move || {
            me.specs
                .iter()
                .map(|vip| me.netlink(|nl| netif::remove(nl, vip)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut first = None;
        for (i, r) in removed.into_iter().enumerate() {
            let why = r.err();
            if let Some(why) = &why {
                tracing::error!(vip = %self.specs[i].cidr(), error = %why, "cannot remove the virtual IP");
                first.get_or_insert_with(|| why.clone());
            }
            self.row(i, |row| {
                row.held = why.is_some();
                row.lapsing = None;
                row.conflict = None;
                row.error = why;
                row.since = None;
            });
        }
        first
    }

    /// ARP check, then the kernel lease and the first gratuitous ARP at once (blocking; the
    /// announcer sends the rest of the burst). `Some(mac)`: the dead buddy's lease lapses.
    /// Against a dead buddy the check made ahead stands for the ARP check when it found no
    /// stranger (it is waited for while it still runs).
    fn take(&self, i: usize, vip: &VipConfig) -> Result<Option<Mac>, String> {
        let Ok(pcap) = self.pcap else {
            self.netlink(|nl| netif::lease(nl, vip))?;
            return Ok(None);
        };
        let ahead = if self.buddy().dead {
            self.ahead
                .take(i, vip.arp_wait * vip.arp_tries + Duration::from_millis(50))
        } else {
            None
        };
        let (mut cap, ours, lapsing) = match ahead {
            Some(Ok(swept)) => (swept.cap, swept.ours, swept.buddy),
            // Nothing ahead, or a stranger then: check now (it may have gone).
            Some(Err(_)) | None => {
                let ours = netif::mac(&vip.nic)?;
                let mut cap = pcap.open(&vip.nic, 10)?;
                let lapsing = match self.check_free(vip, &mut cap, ours)? {
                    Claim::Free => None,
                    Claim::Lapsing(mac) => Some(mac),
                };
                (cap, ours, lapsing)
            }
        };
        if let Some(mac) = lapsing {
            tracing::info!(vip = %vip.address, mac = %format_mac(&mac), "the dead buddy's lease still answers: claiming");
        }
        if self.fenced.load(Ordering::Acquire) {
            return Err("fenced: the decision loop stalled".into());
        }
        self.netlink(|nl| netif::lease(nl, vip))?;
        cap.send(&arp::gratuitous(ours, vip.address))?;
        Ok(lapsing)
    }

    /// Sends `arp_tries` ARP probes, `arp_wait` apart; the VIP is free when none is answered.
    fn check_free(
        &self,
        vip: &VipConfig,
        cap: &mut crate::pcap::Capture,
        ours: Mac,
    ) -> Result<Claim, String> {
        for round in 1..=vip.arp_tries {
            cap.send(&arp::probe(ours, vip.address))?;
            let answers = collect(
                cap,
                vip.address,
                ours,
                vip.arp_wait,
                None,
                AFTER_FIRST_ANSWER,
            )?;
            if answers.is_empty() {
                continue;
            }
            let buddy = self.buddy();
            let strangers: Vec<_> = answers.iter().filter(|m| !buddy.macs.contains(m)).collect();
            if let Some(m) = strangers.first() {
                return Err(in_use(m));
            }
            if buddy.dead {
                return Ok(Claim::Lapsing(answers[0]));
            }
            if round == vip.arp_tries {
                return Err(format!(
                    "the buddy ({}) is alive and still answers for the address",
                    format_mac(&answers[0])
                ));
            }
        }
        Ok(Claim::Free)
    }

    /// While the VIP is held: the gratuitous-ARP burst, then watching by capture for anyone
    /// else answering for it, re-announcing when someone does.
    fn announce(&self, i: usize, vip: &VipConfig, pcap: &'static Pcap, stop: &AtomicBool) {
        let run = || -> Result<(), String> {
            let ours = netif::mac(&vip.nic)?;
            let mut cap = pcap.open(&vip.nic, 10)?;
            let garp = arp::gratuitous(ours, vip.address);
            for n in 0..vip.garp_count {
                if self.quiet(stop) {
                    return Ok(());
                }
                cap.send(&garp)?;
                if n + 1 < vip.garp_count {
                    // Claims seen during the burst are judged by the first check below.
                    sleep(vip.garp_interval, stop);
                }
            }
            let mut lapsing_since: Option<Instant> = None;
            let mut wait = vip.arp_wait;
            loop {
                if self.quiet(stop) {
                    return Ok(());
                }
                cap.send(&arp::probe(ours, vip.address))?;
                let answers = collect(
                    &mut cap,
                    vip.address,
                    ours,
                    wait.max(vip.arp_wait),
                    Some(stop),
                    AFTER_FIRST_ANSWER,
                )?;
                if self.quiet(stop) {
                    return Ok(());
                }
                let buddy = self.buddy();
                let lapsing = !answers.is_empty()
                    && buddy.dead
                    && answers.iter().all(|m| buddy.macs.contains(m))
                    && lapsing_since.is_none_or(|t| t.elapsed() < vip.lease * 3);
                if answers.is_empty() {
                    if lapsing_since.take().is_some() {
                        tracing::info!(vip = %vip.address, "the buddy's lease has lapsed");
                    }
                    let mut ended = None;
                    self.row(i, |r| {
                        r.lapsing = None;
                        ended = r.conflict.take();
                    });
                    if ended.is_some() {
                        self.alarms.raise(
                            Severity::Info,
                            "vip_conflict_cleared",
                            format!("VIP {}: no other host answers for it any more", vip.cidr()),
                        );
                    }
                    wait = vip.verify_interval;
                    continue;
                }
                if lapsing {
                    lapsing_since.get_or_insert_with(Instant::now);
                    self.row(i, |r| r.lapsing = Some(answers[0]));
                } else {
                    let who = answers
                        .iter()
                        .map(format_mac)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let whose = if answers.iter().all(|m| buddy.macs.contains(m)) {
                        "the buddy"
                    } else {
                        "another host"
                    };
                    let text = format!(
                        "VIP conflict: {whose} ({who}) also answers for {}; re-announcing",
                        vip.address
                    );
                    tracing::warn!(vip = %vip.address, nic = %vip.nic, claimant = %who, "VIP conflict");
                    let mut new = false;
                    self.row(i, |r| {
                        new = r.conflict.is_none();
                        r.conflicts += u32::from(new);
                        r.conflict = Some(text.clone());
                    });
                    if new {
                        self.alarms.raise(Severity::Warning, "vip_conflict", text);
                    }
                }
                if self.quiet(stop) {
                    return Ok(());
                }
                cap.send(&garp)?;
                wait = vip.garp_interval;
            }
        };
        if let Err(why) = run() {
            tracing::error!(vip = %vip.address, error = %why, "gratuitous ARP failed");
            self.row(i, |r| {
                r.error = Some(format!("gratuitous ARP failed: {why}"))
            });
        }
    }

    /// Renews held leases, removes a VIP that is on the NIC while not wanted (a stale one at
    /// start), checks each VIP against its NIC's subnets; at the end, releases.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> anyhow::Result<()> {
        let Some(every) = self.specs.iter().map(|v| v.renew).min() else {
            return Ok(());
        };
        loop {
            self.maintain().await;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => {}
            }
        }
        let mut ops = self.ops.lock().await;
        if ops.wanted {
            tracing::info!("shutting down: releasing the virtual IPs");
        }
        ops.wanted = false;
        self.drop_all(&mut ops).await;
        Ok(())
    }

    async fn maintain(self: &Arc<Self>) {
        let ops = self.ops.lock().await;
        let wanted = ops.wanted;
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // A late decision loop renews nothing: its VIP must lapse (the fence removes it).
            let renew = !me.fenced.load(Ordering::Acquire) && !me.pulse.late();
            for (i, vip) in me.specs.iter().enumerate() {
                let subnet = me.netlink(|nl| Ok(netif::subnet_problem(nl, i, vip))).unwrap_or_else(Some);
                let held = lock(&me.rows)[i].held;
                let outcome = if wanted && held {
                    if renew {
                        me.netlink(|nl| netif::lease(nl, vip)).map(|()| None)
                    } else {
                        Ok(None)
                    }
                } else {
                    match me.netlink(|nl| netif::holds(nl, vip)) {
                        Ok(true) => {
                            tracing::info!(vip = %vip.cidr(), nic = %vip.nic, "removing a virtual IP this agent does not hold (stale)");
                            me.netlink(|nl| netif::remove(nl, vip)).map(|()| None)
                        }
                        Ok(false) => Ok(None),
                        Err(e) => Ok(Some(e)),
                    }
                };
                me.row(i, |r| {
                    r.subnet = subnet;
                    match outcome {
                        Ok(_) if r.error.as_deref().is_some_and(|e| e.starts_with("renew")) => {
                            r.error = None;
                        }
                        Ok(_) => {}
                        Err(e) => r.error = Some(format!("renewing or removing failed: {e}")),
                    }
                });
            }
        })
        .await;
        drop(ops);
    }
}

/// The ARP check's finding when a stranger answers for the VIP.
fn in_use(m: &Mac) -> String {
    format!("the address is in use: {} answers for it", format_mac(m))
}

/// How long [`collect`] still listens after the first answer.
const AFTER_FIRST_ANSWER: Duration = Duration::from_millis(10);

/// The same for the check ahead of a takeover, which must end within detection: answers to
/// one probe come within a millisecond on a LAN.
const SWEEP_AFTER: Duration = Duration::from_millis(2);
/// What the VIP rows say when this process lacks CAP_NET_ADMIN (the address) or CAP_NET_RAW
/// (ARP): a fault of the agent's setup, named, never taken for a problem of the network.
fn missing_capabilities() -> Option<String> {
    use duet_base::caps::{Capability, missing, names};
    let lacking = missing(&[Capability::NetAdmin, Capability::NetRaw]);
    if lacking.is_empty() {
        return None;
    }
    let what: Vec<&str> = lacking
        .iter()
        .map(|c| match c {
            Capability::NetAdmin => "the address cannot be added or removed",
            Capability::NetRaw => "no ARP check and no gratuitous ARP",
        })
        .collect();
    Some(format!(
        "missing {} {}: {} (run duet as root or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)",
        if lacking.len() == 1 {
            "capability"
        } else {
            "capabilities"
        },
        names(&lacking),
        what.join("; ")
    ))
}

/// Reads frames for `wait`: the MACs other than `ours` that claim `vip`.
fn collect(
    cap: &mut crate::pcap::Capture,
    vip: Ipv4Addr,
    ours: Mac,
    wait: Duration,
    stop: Option<&AtomicBool>,
    after_first: Duration,
) -> Result<Vec<Mac>, String> {
    let mut until = Instant::now() + wait;
    let mut seen = Vec::new();
    while Instant::now() < until && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        if let Some(frame) = cap.next_frame()?
            && let Some(mac) = arp::claimant(&frame, vip)
            && mac != ours
            && !seen.contains(&mac)
        {
            if seen.is_empty() {
                // Answers to one probe arrive together: a little longer for others, then done.
                until = until.min(Instant::now() + after_first);
            }
            seen.push(mac);
        }
    }
    Ok(seen)
}

fn sleep(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
