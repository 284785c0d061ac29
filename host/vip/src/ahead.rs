//! The ARP check run ahead of a takeover: while every path to the buddy fails but before it is
//! declared dead, each VIP is probed, so that the claim itself only leases the address and
//! announces it. A stranger answering is kept as the check's finding; the claim then checks
//! again as usual and fails with it. The result is used only while fresh ([`FRESH`]) and only
//! for a claim against a dead buddy.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::arp::Mac;
use crate::pcap::Capture;
use duet_base::lock;

/// How long a finished check stands for the address: longer than detection takes after the
/// first failure at the default timings (3 intervals of 200 ms).
pub(crate) const FRESH: Duration = Duration::from_secs(1);

/// One VIP's finding.
pub(crate) struct Swept {
    /// The capture the check used, kept open for the claim's first gratuitous ARP.
    pub(crate) cap: Capture,
    pub(crate) ours: Mac,
    /// The buddy's MAC answered (its lease, while it lapses).
    pub(crate) buddy: Option<Mac>,
}

enum State {
    Idle,
    Running,
    /// Per VIP: what was found, or why the VIP cannot be claimed (a stranger answers, the
    /// capture failed).
    Done {
        at: Instant,
        found: Vec<Option<Result<Swept, String>>>,
    },
}

/// The shared state of the check ahead.
pub(crate) struct Ahead {
    state: Mutex<State>,
    done: Condvar,
}

impl Ahead {
    pub(crate) fn new() -> Self {
        Ahead {
            state: Mutex::new(State::Idle),
            done: Condvar::new(),
        }
    }

    /// Whether a check should start now: none runs and none is fresh. Marks it running.
    pub(crate) fn begin(&self) -> bool {
        let mut state = lock(&self.state);
        let start = match &*state {
            State::Idle => true,
            State::Running => false,
            State::Done { at, .. } => at.elapsed() > FRESH,
        };
        if start {
            *state = State::Running;
        }
        start
    }

    pub(crate) fn finish(&self, found: Vec<Result<Swept, String>>) {
        *lock(&self.state) = State::Done {
            at: Instant::now(),
            found: found.into_iter().map(Some).collect(),
        };
        self.done.notify_all();
    }

    /// Drops a finished check (the doubt is over); a running one finishes and is dropped by the
    /// next call.
    pub(crate) fn forget(&self) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Done { .. }) {
            *state = State::Idle;
        }
    }

    /// VIP `i`'s fresh finding, waiting up to `wait` for a check still running; `None` when
    /// there is none to use (the claim checks by itself).
    pub(crate) fn take(&self, i: usize, wait: Duration) -> Option<Result<Swept, String>> {
        let until = Instant::now() + wait;
        let mut state = lock(&self.state);
        while matches!(*state, State::Running) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        match &mut *state {
            State::Done { at, found } if at.elapsed() <= FRESH => found.get_mut(i)?.take(),
            _ => None,
        }
    }
}
