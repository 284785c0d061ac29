//! The host simulation with a witness: two real `duet_host::run` agents (as in [`super`]) and
//! a witness actor — one lease key kept linearizably (as the replicated bucket's leader does),
//! reached by each agent's own [`Lease`] (the client's logic, `duet_witness::lease`) through a
//! path that fails and heals on its own. A request may be lost on the way there (nothing
//! written) or its answer on the way back (written, not acknowledged). The schedules are those
//! the plain simulation must exclude: every path between the agents cut while both see their
//! gateway, mixed with witness outages from either agent, crashes and restarts of either agent
//! (the state file kept) and operator switches. The invariant is strict: never two Online, at
//! every simulated 50 ms; once everything has healed, one agent is Online again.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duet_core::{Command, FailoverState, OperatorCommand};
use duet_host::Clock;
use duet_witness::lease::{Lease, Op};

use super::{Link, Moves, Running, SimNet, States, config, lock, start};
use crate::model::{DT, NAMES, Rng, Violation};

/// The witness's timings (the namespaces test's): lease 3 s, renewal 500 ms, margin 500 ms,
/// an operation's timeout 400 ms.
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_millis(500);
const MARGIN: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(400);
/// One way to the witness and back.
const LATENCY: Duration = Duration::from_millis(5);

/// The lease key as the bucket's leader keeps it: its revision (0: never written), its holder.
#[derive(Default)]
struct Key {
    revision: u64,
    holder: Option<String>,
}

/// One agent's witness client in the simulation: its lease logic and what the agent wants.
struct Client {
    lease: Mutex<Lease>,
    want: AtomicBool,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl duet_host::Witness for Client {
    fn view(&self) -> duet_core::Witness {
        lock(&self.lease).view(now())
    }

    fn want(&self, hold: bool) {
        self.want.store(hold, Ordering::SeqCst);
    }
}

/// Carries out what the lease logic says against the key, through a path that may be down.
async fn drive(client: Arc<Client>, me: String, key: Arc<Mutex<Key>>, reach: Arc<AtomicBool>) {
    loop {
        let at = now();
        let op = lock(&client.lease).next(client.want.load(Ordering::SeqCst), at);
        if let Op::Wait { until } = op {
            // What the agent wants may change meanwhile: look again every 50 ms.
            let until = until.min(at + Duration::from_millis(DT));
            tokio::time::sleep_until(until.into()).await;
            continue;
        }
        lock(&client.lease).sent(at);
        tokio::time::sleep(LATENCY).await;
        if !reach.load(Ordering::SeqCst) {
            // The request is lost: nothing happens at the witness; the client times out.
            tokio::time::sleep(TIMEOUT - LATENCY).await;
            lock(&client.lease).failed();
            continue;
        }
        enum Outcome {
            Read(u64, Option<String>),
            Written(u64, Option<String>),
            Refused,
        }
        let outcome = {
            let mut k = lock(&key);
            match op {
                Op::Read => Outcome::Read(k.revision, k.holder.clone()),
                Op::Create if k.revision == 0 => {
                    k.revision = 1;
                    k.holder = Some(me.clone());
                    Outcome::Written(1, k.holder.clone())
                }
                Op::Update { revision, holder } if k.revision == revision => {
                    k.revision += 1;
                    k.holder = holder;
                    Outcome::Written(k.revision, k.holder.clone())
                }
                Op::Create | Op::Update { .. } => Outcome::Refused,
                Op::Wait { .. } => unreachable!("waits are handled above"),
            }
        };
        tokio::time::sleep(LATENCY).await;
        let back = now();
        let mut lease = lock(&client.lease);
        if !reach.load(Ordering::SeqCst) {
            // The answer is lost: whatever was written, the client does not know it.
            drop(lease);
            tokio::time::sleep(TIMEOUT - 2 * LATENCY).await;
            lock(&client.lease).failed();
            continue;
        }
        match outcome {
            Outcome::Read(revision, holder) => lease.read(revision, holder, back),
            Outcome::Written(revision, holder) => lease.written(revision, holder, at, back),
            Outcome::Refused => lease.refused(back),
        }
    }
}

/// A faulty moment of a witness schedule.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// Every path between the agents cut (LAN and sync cable) or healed; gateways stay up.
    Cut(bool),
    /// The witness unreachable from agent i (or reachable again).
    Witness(usize, bool),
    Crash(usize),
    Restart(usize),
    /// An operator's planned switch asked of agent i.
    Switch(usize),
}

/// When chaos ends and everything heals; when the run ends.
const CHAOS_END: u64 = 70_000;
const END: u64 = 100_000;

fn schedule(rng: &mut Rng) -> Vec<(u64, Event)> {
    let mut events = Vec::new();
    for _ in 0..14 {
        let at = 10_000 + DT * rng.below((CHAOS_END - 10_000) / DT);
        let i = rng.below(2) as usize;
        let event = match rng.below(7) {
            0 | 1 => Event::Cut(true),
            2 => Event::Cut(false),
            3 => Event::Witness(i, false),
            4 => Event::Witness(i, true),
            5 => {
                let back = at + 2_000 + DT * rng.below(8_000 / DT);
                events.push((back.min(CHAOS_END), Event::Restart(i)));
                Event::Crash(i)
            }
            _ => Event::Switch(i),
        };
        events.push((at, event));
    }
    for event in [
        Event::Cut(false),
        Event::Witness(0, true),
        Event::Witness(1, true),
        Event::Restart(0),
        Event::Restart(1),
    ] {
        events.push((CHAOS_END, event));
    }
    events.sort_by_key(|(at, _)| *at);
    events
}

/// A running agent with its witness client's task.
struct Agent {
    running: Running,
    client: tokio::task::JoinHandle<()>,
}

/// Runs one seed's witness schedule through two real host agents (`witness` false: the same
/// schedule without it, which must show two Online somewhere: the schedules matter).
pub async fn simulate(seed: u64, witness: bool) -> Result<(), Violation> {
    let mut rng = Rng::new(seed);
    let events = schedule(&mut rng);
    let dir = tempfile::tempdir().expect("tempdir");
    let net = SimNet::new(seed, true, true);
    let clock = Clock::starting_at(0);
    let configs = [0, 1].map(|i| config(i, [200, 100][i], dir.path(), 500));
    let states: States = Arc::new(Mutex::new([None, None]));
    let trace = Arc::new(Mutex::new(String::new()));
    let moves: Moves = Arc::default();
    let key = Arc::new(Mutex::new(Key::default()));
    let reach = [0, 1].map(|_| Arc::new(AtomicBool::new(true)));
    let mut agents: [Option<Agent>; 2] = [None, None];
    let launch = |i: usize| {
        let client = Arc::new(Client {
            lease: Mutex::new(Lease::new(NAMES[i].into(), LEASE, RENEW, MARGIN)),
            want: AtomicBool::new(false),
        });
        let task = tokio::spawn(drive(
            client.clone(),
            NAMES[i].into(),
            key.clone(),
            reach[i].clone(),
        ));
        let (config, net, states, trace, moves) = (
            configs[i].clone(),
            net.clone(),
            states.clone(),
            trace.clone(),
            moves.clone(),
        );
        async move {
            let gate = witness.then_some(client as Arc<dyn duet_host::Witness>);
            let running = start(i, config, &net, clock, &states, &trace, &moves, gate).await;
            Agent {
                running,
                client: task,
            }
        }
    };
    for (i, agent) in agents.iter_mut().enumerate() {
        *agent = Some(launch(i).await);
    }
    let fail = |at: u64, what: String| Violation {
        seed,
        at,
        what,
        trace: lock(&trace).clone(),
    };
    let start_at = tokio::time::Instant::now();
    let mut next = 0;
    let mut now = 0;
    let result = loop {
        if now > END {
            break Ok(());
        }
        while next < events.len() && events[next].0 <= now {
            let (_, event) = events[next];
            next += 1;
            let _ = writeln!(lock(&trace), "{now:>6} ms  {event:?}");
            match event {
                Event::Cut(cut) => {
                    net.set_link(Link::Lan, !cut);
                    net.set_link(Link::Sync, !cut);
                }
                Event::Witness(i, up) => reach[i].store(up, Ordering::SeqCst),
                Event::Crash(i) => {
                    if let Some(a) = agents[i].take() {
                        a.running.kill();
                        a.client.abort();
                    }
                    lock(&states)[i] = None;
                }
                Event::Restart(i) => {
                    if agents[i].is_none() {
                        agents[i] = Some(launch(i).await);
                    }
                }
                Event::Switch(i) => {
                    if let Some(a) = &agents[i] {
                        let _ = a.running.commands.try_send(OperatorCommand {
                            by: "operator".into(),
                            command: Command::Switch,
                        });
                    }
                }
            }
        }
        let online: Vec<usize> = (0..2)
            .filter(|i| lock(&states)[*i].is_some_and(|m| m.state == FailoverState::Online))
            .collect();
        if online.len() == 2 {
            break Err(fail(now, "two agents Online with a witness".into()));
        }
        // Healed for half a minute: somebody serves again.
        if now == END && online.len() != 1 {
            break Err(fail(
                now,
                "nobody Online 30 s after everything healed".into(),
            ));
        }
        if let Some(i) = (0..2).find(|i| {
            agents[*i]
                .as_ref()
                .is_some_and(|a| a.running.task.is_finished())
        }) {
            break Err(fail(now, format!("{} stopped by itself", NAMES[i])));
        }
        now += DT;
        tokio::time::sleep_until(start_at + Duration::from_millis(now)).await;
    };
    for a in agents.into_iter().flatten() {
        a.running.kill();
        a.client.abort();
    }
    result
}

/// Runs `seed` on a fresh paused runtime.
pub fn run(seed: u64, witness: bool) -> Result<(), Violation> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(simulate(seed, witness))
}

#[cfg(test)]
mod tests {
    /// Seeds per test run (each simulates 100 s).
    const SEEDS: u64 = 40;

    #[test]
    fn host_simulation_with_a_witness_never_has_two_online() {
        let var = std::env::var("DUET_SIM_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        let seeds = var.map_or(0..SEEDS, |s| s..s + 1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2u64)
                .map(|t| {
                    let seeds = seeds.clone();
                    scope.spawn(move || {
                        for seed in seeds.skip(t as usize).step_by(2) {
                            super::run(seed, true)?;
                        }
                        Ok::<(), crate::model::Violation>(())
                    })
                })
                .collect();
            for w in workers {
                if let Err(v) = w.join().expect("simulation thread") {
                    panic!("{v}");
                }
            }
        });
        if var.is_some() {
            return;
        }
        // The same schedules without the witness: two Online in some (the cut while both see
        // their gateway), so the test above proves the witness matters.
        let split = (0..SEEDS)
            .filter_map(|seed| super::run(seed, false).err())
            .find(|v| v.what.contains("two agents Online"));
        assert!(
            split.is_some(),
            "without the witness no schedule made two Online: the schedules do not test it"
        );
    }
}
