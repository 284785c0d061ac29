//! The witness bench (`cargo xtask bench`, `cargo xtask bench witness`): a pair at duet's
//! defaults with the witness at its defaults (lease 6 s, renew 1 s, margin 1 s), in network
//! namespaces, the three-node cluster on the gateway host.
//!
//! - kill -9 of the Online agent, time until its buddy is Online (the price of the witness: the
//!   buddy takes the lease once its revision stood still for a whole lease); the killed agent is
//!   restarted and the next kill hits the other one.
//! - Rounds of a cut between the agents (every agent path and the sync cable; both keep the
//!   gateway and the witness) held past detection + a whole lease, then healed: per round,
//!   whether exactly one agent stayed Online throughout, whether two were ever Online, and
//!   whether the Online role moved.
//!
//! Writes `target/witness-bench.json`.

use std::time::{Duration, Instant};

use super::{cut_between, pair_with_witness, witness_row};
use crate::netns::{AGENTS, FAST, ONLINE, Topology, with};

/// Waits until agent `online` holds a renewed lease and its buddy is Offline and sees it.
fn settled(t: &Topology, online: usize) {
    t.until(Duration::from_secs(60), "settled", |s| s == with(online));
    crate::support::eventually(Duration::from_secs(30), "the lease renewed", || {
        witness_row(t, 1 - online).filter(|r| {
            r.value.starts_with("Available; held by") && r.value.contains(AGENTS[online])
        })
    });
}

#[test]
#[ignore = "a bench: cargo xtask bench runs it"]
fn witness_bench() {
    assert!(crate::support::is_root(), "the witness bench needs root");
    let env = |k: &str, default: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (kills, cuts) = (env("DUET_WITNESS_KILLS", 10), env("DUET_WITNESS_CUTS", 20));
    let mut t = Topology::new();
    // The witness at its defaults.
    let _cluster = pair_with_witness(&mut t, "");
    t.configure(FAST);
    let (mut p, _) = t.start_pair();
    settled(&t, p);

    // Cuts first, while nothing was restarted.
    let hold = duet_witness::config::LEASE + Duration::from_secs(3);
    let (mut one, mut two, mut moved, mut none_ms) = (0, 0, 0, 0u128);
    for round in 0..cuts {
        cut_between(&t, true);
        let start = Instant::now();
        let (mut saw_two, mut saw_move, mut none_since) = (false, false, None::<Instant>);
        while start.elapsed() < hold {
            let s = t.states();
            saw_two |= s == [ONLINE; 2];
            saw_move |= s[1 - p] == ONLINE;
            match (s.contains(&ONLINE), none_since) {
                (false, None) => none_since = Some(Instant::now()),
                (true, Some(at)) => {
                    none_ms += at.elapsed().as_millis();
                    none_since = None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(at) = none_since {
            none_ms += at.elapsed().as_millis();
        }
        cut_between(&t, false);
        one += usize::from(!saw_two && !saw_move && t.states()[p] == ONLINE);
        two += usize::from(saw_two);
        moved += usize::from(saw_move);
        // Healed: the pair settles (on whoever holds the lease).
        t.until(Duration::from_secs(30), "healed", |s| {
            s == with(0) || s == with(1)
        });
        if t.states()[1 - p] == ONLINE {
            p = 1 - p;
        }
        settled(&t, p);
        eprintln!("cut round {round} done");
    }

    let mut times = Vec::new();
    for run in 0..kills {
        let q = 1 - p;
        t.signal(p, "-KILL");
        let took = t.until(Duration::from_secs(60), "kill -9: the buddy Online", |s| {
            s[q] == ONLINE
        });
        times.push(took.as_secs_f64() * 1000.0);
        t.start(p);
        p = q;
        settled(&t, p);
        eprintln!("kill {run} done: {took:?}");
    }
    let out = serde_json::json!({
        "lease_ms": duet_witness::config::LEASE.as_millis() as u64,
        "renew_ms": duet_witness::config::RENEW.as_millis() as u64,
        "kill": crate::vip::stats(&mut times),
        "cuts": cuts,
        "cut_hold_ms": hold.as_millis() as u64,
        "one_online_throughout": one,
        "two_online": two,
        "moved": moved,
        "nobody_online_ms": none_ms,
    });
    let path = crate::support::workspace().join("target/witness-bench.json");
    std::fs::write(&path, out.to_string()).expect("write the bench's results");
    eprintln!("{out:#}");
    assert_eq!(two, 0, "two agents Online in a cut with a witness");
}
