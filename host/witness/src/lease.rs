//! The lease's logic, pure: the client feeds it what it read and what was acknowledged, with
//! the monotonic instant of each, and asks what to do next and what the core should see.
//!
//! Safety rests on two clocks measuring the same span, never on a shared clock: the holder's
//! deadline is the send time of its last acknowledged write + lease − margin; a waiter may
//! write at a revision only once it has seen that revision unchanged for a whole lease, and a
//! revision is committed after it was sent and seen after it was committed. Only a
//! compare-and-swap at the revision decides: a stale read (a follower behind) delays a waiter,
//! it never lets two agents hold the lease.

use std::time::{Duration, Instant};

use duet_core::Witness;

/// The value stored at the pair's key: who holds the lease (none: released).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Value {
    pub holder: Option<String>,
}

/// What the client should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read the key (its newest revision).
    Read,
    /// Create the key (it has never been written): holder this agent.
    Create,
    /// Write `holder` at `revision` (compare-and-swap).
    Update {
        revision: u64,
        holder: Option<String>,
    },
    /// Nothing until `until` (or a change of what the agent wants).
    Wait { until: Instant },
}

/// The newest revision this agent has seen, its holder, and when it first saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// 0: the key does not exist.
    revision: u64,
    holder: Option<String>,
    since: Instant,
}

/// One agent's view of the pair's lease.
#[derive(Debug, Clone)]
pub struct Lease {
    me: String,
    lease: Duration,
    renew: Duration,
    margin: Duration,
    seen: Option<Seen>,
    /// This agent's last acknowledged write that holds the lease: its revision, its send time.
    held: Option<(u64, Instant)>,
    /// When an operation last succeeded (a read, or a write acknowledged or refused).
    last_ok: Option<Instant>,
    /// When the last operation was sent (the pace of polling and renewing).
    last_sent: Option<Instant>,
}

impl Lease {
    pub fn new(me: String, lease: Duration, renew: Duration, margin: Duration) -> Lease {
        Lease {
            me,
            lease,
            renew,
            margin,
            seen: None,
            held: None,
            last_ok: None,
            last_sent: None,
        }
    }

    /// The holder's deadline: past it the agent must be Offline (its VIP released).
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .map(|(_, sent)| sent + self.lease.saturating_sub(self.margin))
    }

    /// The next operation, given whether the agent wants the lease (claiming, Online, or still
    /// releasing its virtual IP) and the time now.
    pub fn next(&self, want: bool, now: Instant) -> Op {
        // While acquiring, poll briskly; otherwise at the renewal period.
        let pace = if want && self.held.is_none() {
            self.renew.min(Duration::from_millis(200))
        } else {
            self.renew
        };
        let due = self.last_sent.is_none_or(|t| now >= t + pace);
        let wait = Op::Wait {
            until: self.last_sent.map_or(now, |t| t + pace),
        };
        if let Some((revision, _)) = self.held {
            // Released as soon as it is no longer wanted; renewed at the renewal period.
            return match (want, due) {
                (false, _) => Op::Update {
                    revision,
                    holder: None,
                },
                (true, true) => Op::Update {
                    revision,
                    holder: Some(self.me.clone()),
                },
                (true, false) => wait,
            };
        }
        if !due {
            return wait;
        }
        match &self.seen {
            Some(s) if want && s.revision == 0 => Op::Create,
            Some(s) if want && self.may_take(s, now) => Op::Update {
                revision: s.revision,
                holder: Some(self.me.clone()),
            },
            _ => Op::Read,
        }
    }

    /// Whether this agent may write at the revision it has seen: nobody holds it, it holds it
    /// itself (from before a restart, or a write whose acknowledgement was lost), or the
    /// revision stayed unchanged for a whole lease on this agent's clock.
    fn may_take(&self, s: &Seen, now: Instant) -> bool {
        s.revision == 0
            || s.holder.as_deref().is_none_or(|h| h == self.me)
            || now.duration_since(s.since) >= self.lease
    }

    /// An operation is being sent now.
    pub fn sent(&mut self, at: Instant) {
        self.last_sent = Some(at);
    }

    /// A read answered: the key's newest revision (0: absent) and its holder, received at `at`.
    /// An older revision than one already seen (a follower behind) is ignored.
    pub fn read(&mut self, revision: u64, holder: Option<String>, at: Instant) {
        self.last_ok = Some(at);
        self.observe(revision, holder, at);
        // Someone else wrote after our last acknowledged write: the lease is no longer ours.
        if let Some((ours, _)) = self.held
            && revision > ours
            && self
                .seen
                .as_ref()
                .is_some_and(|s| s.holder.as_deref() != Some(&self.me))
        {
            self.held = None;
        }
    }

    fn observe(&mut self, revision: u64, holder: Option<String>, at: Instant) {
        match &self.seen {
            Some(s) if s.revision > revision => {}
            Some(s) if s.revision == revision => {}
            _ => {
                self.seen = Some(Seen {
                    revision,
                    holder,
                    since: at,
                })
            }
        }
    }

    /// A write sent at `sent` was acknowledged at `at` with `revision`.
    pub fn written(&mut self, revision: u64, holder: Option<String>, sent: Instant, at: Instant) {
        self.last_ok = Some(at);
        self.held = holder
            .as_deref()
            .is_some_and(|h| h == self.me)
            .then_some((revision, sent));
        self.observe(revision, holder, at);
    }

    /// A write was refused because the revision moved on (someone else wrote): the lease is not
    /// ours; the next step reads what is there.
    pub fn refused(&mut self, at: Instant) {
        self.last_ok = Some(at);
        self.held = None;
        // Forget the seen revision's age: what is there now is read afresh.
        self.seen = None;
    }

    /// An operation failed or timed out: nothing is known of its outcome. The holder keeps
    /// its deadline (from its last acknowledged write), which runs out by itself.
    pub fn failed(&mut self) {}

    /// Whether the last success is recent: within two renewals and an operation's time.
    fn reachable(&self, now: Instant) -> bool {
        self.last_ok
            .is_some_and(|t| now.duration_since(t) <= self.renew * 2 + self.margin)
    }

    /// What the failover core sees now.
    pub fn view(&self, now: Instant) -> Witness {
        let reachable = self.reachable(now);
        Witness {
            reachable,
            held: self.deadline().is_some_and(|d| now < d),
            free: reachable && self.seen.as_ref().is_some_and(|s| self.may_take(s, now)),
            holder: self.seen.as_ref().and_then(|s| s.holder.clone()),
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The revision last seen (0: the key does not exist), for the Witness row.
    pub fn revision(&self) -> Option<u64> {
        self.seen.as_ref().map(|s| s.revision)
    }

    /// When this agent's lease was last renewed (the send time of the acknowledged write).
    pub fn renewed(&self) -> Option<Instant> {
        self.held.map(|(_, sent)| sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn lease(me: &str) -> Lease {
        Lease::new(me.into(), 6 * S, S, S)
    }

    #[test]
    fn a_holder_renews_at_its_revision_and_its_deadline_counts_from_the_send_time() {
        let t0 = Instant::now();
        let mut a = lease("a");
        assert_eq!(a.next(true, t0), Op::Read);
        a.sent(t0);
        a.read(0, None, t0 + S / 10);
        assert_eq!(a.next(true, t0 + S / 2), Op::Create);
        a.sent(t0 + S / 2);
        a.written(1, Some("a".into()), t0 + S / 2, t0 + S);
        assert!(a.view(t0 + S).held);
        // The deadline is the send time + lease - margin, not the acknowledgement's time.
        assert!(a.view(t0 + S / 2 + 5 * S - Duration::from_millis(1)).held);
        assert!(!a.view(t0 + S / 2 + 5 * S).held);
        assert_eq!(
            a.next(true, t0 + 2 * S),
            Op::Update {
                revision: 1,
                holder: Some("a".into())
            }
        );
        // Released when no longer wanted.
        assert_eq!(
            a.next(false, t0 + 2 * S),
            Op::Update {
                revision: 1,
                holder: None
            }
        );
    }

    #[test]
    fn a_waiter_takes_the_lease_only_after_the_revision_stood_still_for_a_whole_lease() {
        let t0 = Instant::now();
        let mut b = lease("b");
        b.read(7, Some("a".into()), t0);
        assert!(!b.view(t0 + S).free);
        assert_eq!(b.next(true, t0 + S), Op::Read);
        // A stale follower's older revision changes nothing; a newer one restarts the wait.
        b.read(6, Some("a".into()), t0 + 3 * S);
        b.read(8, Some("a".into()), t0 + 4 * S);
        assert!(!b.view(t0 + 9 * S).free);
        b.read(8, Some("a".into()), t0 + 10 * S);
        assert!(b.view(t0 + 10 * S).free);
        assert_eq!(
            b.next(true, t0 + 10 * S),
            Op::Update {
                revision: 8,
                holder: Some("b".into())
            }
        );
        // Refused: someone wrote meanwhile; read afresh.
        b.refused(t0 + 10 * S);
        assert_eq!(b.next(true, t0 + 11 * S), Op::Read);
        assert!(!b.view(t0 + 11 * S).held);
    }

    #[test]
    fn a_released_lease_or_ones_own_is_free_at_once() {
        let t0 = Instant::now();
        let mut b = lease("b");
        b.read(3, None, t0);
        assert!(b.view(t0).free);
        let mut a = lease("a");
        a.read(4, Some("a".into()), t0);
        assert!(a.view(t0).free);
        // Unreachable: nothing is free.
        assert!(!a.view(t0 + 10 * S).free);
    }

    #[test]
    fn a_holder_that_sees_another_holder_at_a_newer_revision_lost_the_lease() {
        let t0 = Instant::now();
        let mut a = lease("a");
        a.written(5, Some("a".into()), t0, t0);
        a.read(6, Some("b".into()), t0 + S);
        assert!(!a.view(t0 + S).held);
        assert_eq!(a.view(t0 + S).holder.as_deref(), Some("b"));
    }
}
