//! A deterministic simulation of the real host: two `duet_host::run` agents — their peer link
//! (hellos, HMAC frames, report exchange), heartbeat paths, ICMP heartbeats, request
//! bookkeeping, tick loop, state file and core.wasm — over an in-memory network
//! ([`duet_host::net::Network`]) on paused tokio time. Each seed draws the same random plan as
//! the core's model check (`model::Plan::random`: cuts of the agent-heartbeat LAN and of the
//! sync cable, gateway loss on one or both sides, loss, crashes (kill -9: the task is dropped),
//! restarts with the state file, operator switches, simultaneous starts) and the same five
//! invariants are checked every simulated 50 ms (`model::Invariants`).
//!
//! Time is virtual: a seed simulates about two minutes in a fraction of a second, and a
//! failing seed replays with `DUET_SIM_SEED=<n>`. Determinism holds up to the order in which
//! the blocking pool returns core calls, which paused time makes irrelevant to timing.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use duet_core::{Command, FailoverState, MachineState, Mode, OperatorCommand};
use duet_host::net::{BoxFuture, BoxStream, Listener, Network, PingError, Pinger};
use duet_host::{Clock, RunOptions};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{DT, Fault, Invariants, NAMES, Observed, Plan, Rng, Violation};

pub mod witness;

const LAN: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
const SYNC: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2)];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const PEER_PORT: u16 = 7201;

/// The two links between the agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The LAN: the agent heartbeats.
    Lan = 0,
    /// The direct cable: the sync connection.
    Sync = 1,
}

type Accepted = (BoxStream, SocketAddr);

struct NetState {
    /// Each agent's peer port, while it runs.
    listeners: [Option<mpsc::UnboundedSender<Accepted>>; 2],
    up: [bool; 2],
    /// Bumped at every cut: a connection made before a cut stays dead after the heal, as a
    /// TCP connection whose peer gave up would.
    generation: [u64; 2],
    gateway: [bool; 2],
    /// Percent of connection attempts and writes lost (a lost write stalls its connection).
    loss: u64,
    rng: Rng,
    /// Connection attempts refused (no agent listens): when, by whom, over which link.
    refused: Vec<(tokio::time::Instant, usize, Link)>,
}

/// The simulated network of one seed.
pub struct SimNet(Mutex<NetState>);

impl SimNet {
    fn new(seed: u64, lan: bool, sync: bool) -> Arc<Self> {
        Arc::new(SimNet(Mutex::new(NetState {
            listeners: [None, None],
            up: [lan, sync],
            generation: [0, 0],
            gateway: [true, true],
            loss: 0,
            rng: Rng::new(seed.rotate_left(29)),
            refused: Vec::new(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_link(&self, link: Link, up: bool) {
        let mut s = self.state();
        if s.up[link as usize] && !up {
            s.generation[link as usize] += 1;
        }
        s.up[link as usize] = up;
    }
}

/// One agent's view of the network.
struct Host {
    net: Arc<SimNet>,
    id: usize,
}

impl Host {
    /// A connection over `link` to agent `other`: `None` when the SYN goes unanswered.
    fn handshake(&self, link: Link, other: usize) -> Option<std::io::Result<BoxStream>> {
        let mut s = self.net.state();
        let loss = s.loss;
        if !s.up[link as usize] || s.rng.chance(loss) {
            return None;
        }
        let Some(listener) = s.listeners[other].as_ref().filter(|l| !l.is_closed()) else {
            s.refused.push((tokio::time::Instant::now(), self.id, link));
            return Some(Err(std::io::ErrorKind::ConnectionRefused.into()));
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let generation = s.generation[link as usize];
        let wrap = |inner| SimStream {
            inner,
            net: self.net.clone(),
            link,
            generation,
            lost: false,
        };
        let theirs: BoxStream = Box::new(wrap(b));
        if listener
            .send((theirs, SocketAddr::new(IpAddr::V4(LAN[self.id]), 40000)))
            .is_err()
        {
            return Some(Err(std::io::ErrorKind::ConnectionRefused.into()));
        }
        Some(Ok(Box::new(wrap(a)) as BoxStream))
    }
}

impl Network for Host {
    fn connect(
        &self,
        _source: Option<IpAddr>,
        target: SocketAddr,
    ) -> BoxFuture<'_, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let other = 1 - self.id;
            let link = match target.ip() {
                IpAddr::V4(ip) if ip == LAN[other] => Link::Lan,
                IpAddr::V4(ip) if ip == SYNC[other] => Link::Sync,
                _ => return Err(std::io::ErrorKind::HostUnreachable.into()),
            };
            let connected = self.handshake(link, other);
            match connected {
                // No answer at all: the caller's timeout ends the attempt.
                None => std::future::pending().await,
                Some(result) => result,
            }
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            if addr.port() != PEER_PORT {
                return Err(std::io::ErrorKind::AddrNotAvailable.into());
            }
            let (tx, rx) = mpsc::unbounded_channel();
            self.net.state().listeners[self.id] = Some(tx);
            Ok(Box::new(SimListener(rx)) as Box<dyn Listener>)
        })
    }

    fn pinger(
        &self,
        _source: Option<IpAddr>,
        target: IpAddr,
        _ident: u16,
        timeout: Duration,
    ) -> BoxFuture<'_, std::io::Result<Box<dyn Pinger>>> {
        Box::pin(async move {
            Ok(Box::new(SimPinger {
                net: self.net.clone(),
                id: self.id,
                target,
                timeout,
            }) as Box<dyn Pinger>)
        })
    }
}

struct SimListener(mpsc::UnboundedReceiver<Accepted>);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<Accepted>> {
        Box::pin(async move {
            match self.0.recv().await {
                Some(accepted) => Ok(accepted),
                None => std::future::pending().await,
            }
        })
    }
}

struct SimPinger {
    net: Arc<SimNet>,
    id: usize,
    target: IpAddr,
    timeout: Duration,
}

impl Pinger for SimPinger {
    fn ping(&mut self, _seq: u16) -> BoxFuture<'_, Result<Duration, PingError>> {
        Box::pin(async move {
            let answers = self.target == IpAddr::V4(GATEWAY) && self.net.state().gateway[self.id];
            if answers {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(Duration::from_millis(1))
            } else {
                tokio::time::sleep(self.timeout).await;
                Err(PingError::Timeout)
            }
        })
    }
}

/// One end of a simulated TCP connection. Once its link is cut (or a write of it is lost) it
/// goes silent: reads never complete and writes vanish, until the caller's timeout drops it.
struct SimStream {
    inner: tokio::io::DuplexStream,
    net: Arc<SimNet>,
    link: Link,
    generation: u64,
    lost: bool,
}

impl SimStream {
    fn silent(&mut self, writing: bool) -> bool {
        let mut s = self.net.state();
        let link = self.link as usize;
        if !s.up[link] || s.generation[link] != self.generation {
            return true;
        }
        let loss = s.loss;
        if writing && !self.lost && s.rng.chance(loss) {
            self.lost = true;
        }
        self.lost
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.silent(false) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.silent(true) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The configuration of agent `i`: the model check's timings, on the simulated addresses.
/// Agent i's configuration; its paths attempt every `interval_ms` (the tick is 250 ms).
fn config(
    i: usize,
    priority: u32,
    dir: &std::path::Path,
    interval_ms: u64,
) -> duet_host::config::Config {
    let j = 1 - i;
    let timeout_ms = interval_ms * 4 / 5;
    let text = format!(
        r#"
        [agent]
        name = "{name}"
        priority = {priority}
        [buddy]
        name = "{buddy}"
        [api]
        listen = "127.0.0.1:9" # not served (no_api)
        [peer]
        listen = "0.0.0.0:{PEER_PORT}"
        pair_key = "{key}"
        [sync]
        target = "{sync_buddy}:{PEER_PORT}"
        source = "{sync_own}"
        interval = "{interval_ms}ms"
        timeout = "{timeout_ms}ms"
        max_failures = 2
        [core]
        tick = "250ms"
        [status]
        buddy_timeout = "2s"
        startup_grace = "1s"
        [failover]
        prepare_timeout = "3s"
        going_online_timeout = "3s"
        going_offline_timeout = "3s"
        min_switch_interval = "20s"
        startup_wait = "3s"
        [state]
        file = "{name}.state"
        [[heartbeat]]
        kind = "agent"
        target = "{lan_buddy}:{PEER_PORT}"
        source = "{lan_own}"
        interval = "{interval_ms}ms"
        timeout = "{timeout_ms}ms"
        max_failures = 2
        [[heartbeat]]
        kind = "inverted"
        target = "{GATEWAY}"
        interval = "{interval_ms}ms"
        timeout = "{timeout_ms}ms"
        max_failures = 2
        "#,
        name = NAMES[i],
        buddy = NAMES[j],
        key = crate::support::PAIR_KEY,
        sync_buddy = SYNC[j],
        sync_own = SYNC[i],
        lan_buddy = LAN[j],
        lan_own = LAN[i],
    );
    duet_host::config::parse(&text, dir).expect("simulation config")
}

/// A running simulated agent.
struct Running {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    observer: tokio::task::JoinHandle<()>,
    commands: mpsc::Sender<OperatorCommand>,
}

impl Running {
    fn kill(self) {
        self.task.abort();
        self.observer.abort();
    }
}

type States = Arc<Mutex<[Option<MachineState>; 2]>>;

/// Each agent's state changes: when (virtual time), whose, to what.
type Moves = Arc<Mutex<Vec<(tokio::time::Instant, usize, FailoverState)>>>;

/// One core runtime per simulation thread: the two threads do not queue on one core instance.
fn core_runtime() -> Arc<duet_host::runtime::CoreRuntime> {
    thread_local! {
        static RT: Arc<duet_host::runtime::CoreRuntime> = Arc::new(
            duet_host::runtime::CoreRuntime::new(duet_host::runtime::Limits {
                deadline: Duration::from_millis(200),
                memory_bytes: 64 << 20,
            })
            .expect("core runtime"),
        );
    }
    RT.with(Arc::clone)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(clippy::too_many_arguments)]
async fn start(
    i: usize,
    config: duet_host::config::Config,
    net: &Arc<SimNet>,
    clock: Clock,
    states: &States,
    trace: &Arc<Mutex<String>>,
    moves: &Moves,
    witness: Option<Arc<dyn duet_host::Witness>>,
) -> Running {
    let (ticks, mut tick_rx) = mpsc::unbounded_channel();
    let (commands, commands_rx) = tokio::sync::oneshot::channel();
    let options = RunOptions {
        ticks: Some(ticks),
        runtime: Some(core_runtime()),
        network: Some(Arc::new(Host {
            net: net.clone(),
            id: i,
        })),
        no_api: true,
        no_events: true,
        clock: Some(clock),
        commands: Some(commands),
        // Paused time: the agents' decision paths run on this runtime, unfenced.
        shared_runtime: true,
        witness,
        ..RunOptions::default()
    };
    lock(states)[i] = Some(MachineState::new(
        FailoverState::Offline,
        Mode::Automatic,
        clock.now(),
    ));
    let task = tokio::spawn(duet_host::run(config, options, CancellationToken::new()));
    let (states, trace, moves) = (states.clone(), trace.clone(), moves.clone());
    let observer = tokio::spawn(async move {
        let mut last = None;
        while let Some(t) = tick_rx.recv().await {
            let before = lock(&states)[i].map(|m| m.state);
            if before != Some(t.decision.state.state) {
                lock(&moves).push((tokio::time::Instant::now(), i, t.decision.state.state));
            }
            lock(&states)[i] = Some(t.decision.state);
            let reason = format!("{:?}", t.decision.reason.code);
            if last.as_ref() != Some(&reason) {
                last = Some(reason);
                let _ = writeln!(
                    lock(&trace),
                    "{:>6} ms  {} {:?}: {:?} {}",
                    clock.now(),
                    NAMES[i],
                    t.decision.state.state,
                    t.decision.reason.code,
                    t.decision.reason.text
                );
            }
        }
    });
    let commands = commands_rx
        .await
        .expect("the agent hands out its command sender");
    Running {
        task,
        observer,
        commands,
    }
}

/// Runs one plan through two real host agents; `Err` carries the first violation.
pub async fn simulate(plan: &Plan, seed: u64) -> Result<(), Violation> {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = SimNet::new(seed, plan.link, plan.sync);
    let clock = Clock::starting_at(0);
    let configs = [0, 1].map(|i| config(i, plan.priorities[i], dir.path(), 500));
    for (config, file) in configs.iter().zip(plan.files) {
        if let Some(state) = file {
            let remembered = duet_host::state_file::Remembered { state, at: 0 };
            duet_host::state_file::write(&config.kernel.state.file, remembered)
                .expect("the plan's state file");
        }
    }
    let states: States = Arc::new(Mutex::new([None, None]));
    let trace = Arc::new(Mutex::new(String::new()));
    let moves: Moves = Arc::default();
    let mut agents: [Option<Running>; 2] = [None, None];
    let timeline = plan.timeline();
    let mut invariants = Invariants::new(&timeline);
    let mut next = 0;
    let start_at = tokio::time::Instant::now();
    let fail = |at: u64, what: String, trace: &Mutex<String>| Violation {
        seed,
        at,
        what,
        trace: lock(trace).clone(),
    };
    let switch = |agent: &Option<Running>, by: &str| {
        if let Some(a) = agent {
            let _ = a.commands.try_send(OperatorCommand {
                by: by.into(),
                command: Command::Switch,
            });
        }
    };

    let mut now = 0;
    let result = loop {
        if now > timeline.end {
            break Ok(());
        }
        while next < timeline.schedule.len() && timeline.schedule[next].0 <= now {
            let (_, fault) = timeline.schedule[next];
            next += 1;
            let _ = writeln!(lock(&trace), "{now:>6} ms  {fault:?}");
            invariants.fault(now, fault);
            match fault {
                Fault::CutLink => net.set_link(Link::Lan, false),
                Fault::HealLink => net.set_link(Link::Lan, true),
                Fault::CutSync => net.set_link(Link::Sync, false),
                Fault::HealSync => net.set_link(Link::Sync, true),
                Fault::GatewayDown(i) => net.state().gateway[i] = false,
                Fault::GatewayUp(i) => net.state().gateway[i] = true,
                Fault::Loss(p) => net.state().loss = p,
                Fault::Crash(i) => {
                    if let Some(a) = agents[i].take() {
                        a.kill();
                    }
                    lock(&states)[i] = None;
                }
                Fault::Restart(i) => {
                    if agents[i].is_none() {
                        let config = configs[i].clone();
                        agents[i] = Some(
                            start(i, config, &net, clock, &states, &trace, &moves, None).await,
                        );
                    }
                }
                Fault::Switch(i) => switch(&agents[i], "model"),
            }
        }
        let observed = {
            let s = net.state();
            let states = *lock(&states);
            Observed {
                states,
                contact: states.iter().all(Option::is_some)
                    && s.loss == 0
                    && (s.up[Link::Lan as usize] || s.up[Link::Sync as usize]),
                healthy: (0..2).any(|i| states[i].is_some() && s.gateway[i]),
                gateways: s.gateway,
            }
        };
        if timeline.switches.contains(&now) {
            let online = (0..2)
                .find(|i| observed.states[*i].is_some_and(|m| m.state == FailoverState::Online));
            match online {
                Some(i) => {
                    switch(&agents[i], "operator");
                    invariants.switch_asked(1 - i);
                    let _ = writeln!(
                        lock(&trace),
                        "{now:>6} ms  planned switch asked of {}",
                        NAMES[i]
                    );
                }
                None => {
                    break Err(fail(
                        now,
                        "nobody Online when the planned switch was due".into(),
                        &trace,
                    ));
                }
            }
        }
        if let Err(what) = invariants.check(now, &observed) {
            break Err(fail(now, what, &trace));
        }
        if let Some(i) = (0..2).find(|i| agents[*i].as_ref().is_some_and(|a| a.task.is_finished()))
        {
            break Err(fail(now, format!("{} stopped by itself", NAMES[i]), &trace));
        }
        now += DT;
        tokio::time::sleep_until(start_at + Duration::from_millis(now)).await;
    };
    for a in agents.into_iter().flatten() {
        a.kill();
    }
    result
}

/// Runs `seed` on a fresh paused runtime, with this thread's core runtime.
pub fn run(seed: u64) -> Result<(), Violation> {
    let plan = Plan::random(&mut Rng::new(seed));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(simulate(&plan, seed))
}

/// Runs `seeds` (or only `DUET_SIM_SEED`) on `threads` threads; returns how many ran.
pub fn check(seeds: std::ops::Range<u64>, threads: u64) -> Result<u64, Violation> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    if let Some(seed) = var("DUET_SIM_SEED") {
        return run(seed).map(|()| 1);
    }
    // More seeds for a longer search: DUET_SIM_SEEDS=100000.
    let seeds = match var("DUET_SIM_SEEDS") {
        Some(n) => seeds.start..seeds.start + n,
        None => seeds,
    };
    let n = seeds.end - seeds.start;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = seeds.clone();
                scope.spawn(move || {
                    for seed in seeds.skip(t as usize).step_by(threads as usize) {
                        run(seed)?;
                    }
                    Ok::<(), Violation>(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("simulation thread")?;
        }
        Ok(n)
    })
}

/// Virtual times of one takeover after kill -9 of the Online agent.
#[derive(Debug)]
pub struct Takeover {
    /// From the kill to the survivor's claim (Preparing, then Online: no VIP here).
    pub since_kill: Duration,
    /// From the refused attempt that declared the last path dead (the third failure in a row
    /// on each path: `max_failures = 2`) to the claim.
    pub since_dead: Duration,
}

/// The takeover is driven by events: kill -9 of the Online agent, then the survivor's claim
/// (see [`Takeover`]); panics when the claim came before the last path died.
pub async fn takeover() -> Takeover {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = SimNet::new(7, true, true);
    let clock = Clock::starting_at(0);
    let states: States = Arc::new(Mutex::new([None, None]));
    let trace = Arc::new(Mutex::new(String::new()));
    let moves: Moves = Arc::default();
    let mut agents = Vec::new();
    for (i, priority) in [(0, 200), (1, 100)] {
        // Out of step with the tick (250 ms): a failure waiting for the next tick would show.
        let config = config(i, priority, dir.path(), 370);
        agents.push(Some(
            start(i, config, &net, clock, &states, &trace, &moves, None).await,
        ));
    }
    let online = loop {
        let now = *lock(&states);
        if let Some(i) = (0..2).find(|i| now[*i].is_some_and(|m| m.state == FailoverState::Online))
        {
            break i;
        }
        assert!(clock.now() < 30_000, "nobody Online\n{}", lock(&trace));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Settled: a few intervals of both paths working.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let survivor = 1 - online;
    let killed = tokio::time::Instant::now();
    if let Some(a) = agents[online].take() {
        a.kill();
    }
    let claimed = loop {
        let claim = lock(&moves).iter().find_map(|(at, i, state)| {
            (*at >= killed && *i == survivor && *state == FailoverState::Online).then_some(*at)
        });
        if let Some(at) = claim {
            break at;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no takeover\n{}",
            lock(&trace)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let dead = [Link::Lan, Link::Sync].map(|link| {
        let refused: Vec<_> = net
            .state()
            .refused
            .iter()
            .filter(|(at, by, l)| *at >= killed && *by == survivor && *l == link)
            .map(|(at, _, _)| *at)
            .collect();
        *refused
            .get(2)
            .unwrap_or_else(|| panic!("fewer than 3 refused attempts on {link:?}: {refused:?}"))
    });
    let last_dead = dead.into_iter().max().expect("two links");
    for a in agents.into_iter().flatten() {
        a.kill();
    }
    assert!(
        claimed >= last_dead,
        "claimed before the last path was declared dead\n{}",
        lock(&trace)
    );
    Takeover {
        since_kill: claimed - killed,
        since_dead: claimed - last_dead,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_claim_starts_the_moment_the_last_path_is_declared_dead() {
        let takeover = takeover();
        // Virtual time: no tick period (250 ms here) in between, only the steps themselves.
        assert!(
            takeover.since_dead <= Duration::from_millis(1),
            "the claim came {:?} after the last path was declared dead",
            takeover.since_dead
        );
    }

    /// The killed agent's end closes the kept connections: the survivor's first failed
    /// attempt follows at once, not at its next interval, and the claim comes `max_failures`
    /// intervals (2 x 370 ms) after the kill, whatever the paths' phase.
    #[test]
    fn a_closed_connection_starts_the_count_at_once() {
        let since_kill = takeover().since_kill;
        let bound = Duration::from_millis(2 * 370 + 5);
        assert!(
            since_kill <= bound,
            "the claim came {since_kill:?} after the kill, more than {bound:?}"
        );
    }

    fn takeover() -> super::Takeover {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(super::takeover())
    }

    /// Seeds per test run.
    const SEEDS: u64 = 1_000;

    #[test]
    fn host_simulation_holds_on_1_000_schedules() {
        match super::check(0..SEEDS, 2) {
            Ok(n) => assert!(n >= 1),
            Err(v) => panic!("{v}"),
        }
    }
}
