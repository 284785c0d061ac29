//! Who gets a slot on the peer port: the buddy's addresses always (slots of their own that
//! no stranger can take), strangers only from a small shared pool, and only briefly until
//! they prove the pair key.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duet_base::lock;

/// Slots reserved for connections from the buddy's addresses: every path needs one, the
/// event forwarding one more, and a restarted buddy's new connections must fit beside the
/// old ones still closing.
pub(crate) const BUDDY_SLOTS: usize = 32;
/// Slots all other addresses share: the buddy reaching us through an address we do not
/// target (NAT), or strangers. A flood of strangers fills only these.
pub(crate) const STRANGER_SLOTS: usize = 16;
/// Stranger slots one address may hold: a stranger cannot take the whole pool alone.
pub(crate) const STRANGER_SLOTS_PER_HOST: usize = 4;
/// How long a connection from the buddy's addresses may take for each step of the handshake
/// (its hello, then its first authenticated frame).
pub(crate) const BUDDY_HANDSHAKE: Duration = Duration::from_secs(5);
/// The same for a stranger: a peer port on the same site answers in milliseconds, so a
/// stranger that cannot prove the pair key within this long loses its slot.
pub(crate) const STRANGER_HANDSHAKE: Duration = Duration::from_secs(1);

/// The peer port's slots.
pub(crate) struct Admission {
    /// The buddy's addresses (the hosts of the agent heartbeats' and the sync targets).
    buddy: HashSet<IpAddr>,
    open: Mutex<Open>,
}

/// The slots taken now.
#[derive(Default)]
struct Open {
    buddy: usize,
    strangers: usize,
    per_stranger: HashMap<IpAddr, usize>,
}

/// A taken slot; dropping it frees it.
pub(crate) struct Slot {
    admission: Arc<Admission>,
    from: IpAddr,
    buddy: bool,
}

impl Admission {
    /// Slots for a buddy reached at `buddy` (addresses, ports ignored).
    pub(crate) fn new(buddy: impl IntoIterator<Item = IpAddr>) -> Arc<Self> {
        Arc::new(Admission {
            buddy: buddy.into_iter().map(canonical).collect(),
            open: Mutex::default(),
        })
    }

    /// A slot for a connection from `from`, or `None` when its pool is full.
    pub(crate) fn admit(self: &Arc<Self>, from: IpAddr) -> Option<Slot> {
        let from = canonical(from);
        let buddy = self.buddy.contains(&from);
        let mut open = lock(&self.open);
        if buddy {
            if open.buddy >= BUDDY_SLOTS {
                return None;
            }
            open.buddy += 1;
        } else {
            let mine = open.per_stranger.get(&from).copied().unwrap_or(0);
            if open.strangers >= STRANGER_SLOTS || mine >= STRANGER_SLOTS_PER_HOST {
                return None;
            }
            open.strangers += 1;
            open.per_stranger.insert(from, mine + 1);
        }
        Some(Slot {
            admission: self.clone(),
            from,
            buddy,
        })
    }
}

impl Slot {
    /// How long each step of this connection's handshake may take.
    pub(crate) fn handshake(&self) -> Duration {
        if self.buddy {
            BUDDY_HANDSHAKE
        } else {
            STRANGER_HANDSHAKE
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.admission.open);
        if self.buddy {
            open.buddy -= 1;
            return;
        }
        open.strangers -= 1;
        if let Some(n) = open.per_stranger.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                open.per_stranger.remove(&self.from);
            }
        }
    }
}

/// An IPv4 address the same whether it came as `10.0.0.2` or `::ffff:10.0.0.2`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn strangers_fill_only_their_pool_and_the_buddy_still_gets_in() {
        let admission = Admission::new([ip(2)]);
        let mut held = Vec::new();
        for host in 10..30 {
            while let Some(slot) = admission.admit(ip(host)) {
                assert_eq!(slot.handshake(), STRANGER_HANDSHAKE);
                held.push(slot);
            }
        }
        assert_eq!(held.len(), STRANGER_SLOTS, "the strangers' pool, no more");
        let buddy: Vec<_> = (0..BUDDY_SLOTS)
            .map(|_| admission.admit(ip(2)).expect("the buddy's slot"))
            .collect();
        assert_eq!(buddy[0].handshake(), BUDDY_HANDSHAKE);
        assert!(
            admission.admit(ip(2)).is_none(),
            "the buddy's pool is bounded too"
        );
        drop(buddy);
        assert!(
            admission.admit(ip(2)).is_some(),
            "freed slots are given again"
        );
    }

    #[test]
    fn one_stranger_cannot_take_the_whole_pool_and_freed_slots_return() {
        let admission = Admission::new([ip(2)]);
        let one: Vec<_> = std::iter::from_fn(|| admission.admit(ip(9))).collect();
        assert_eq!(one.len(), STRANGER_SLOTS_PER_HOST);
        assert!(
            admission.admit(ip(10)).is_some(),
            "another address has room"
        );
        drop(one);
        let again: Vec<_> = std::iter::from_fn(|| admission.admit(ip(9))).collect();
        assert_eq!(again.len(), STRANGER_SLOTS_PER_HOST);
    }

    #[test]
    fn a_mapped_ipv4_address_is_the_same_address() {
        let admission = Admission::new(["10.0.0.2".parse().expect("ip")]);
        let slot = admission
            .admit("::ffff:10.0.0.2".parse().expect("ip"))
            .expect("slot");
        assert_eq!(slot.handshake(), BUDDY_HANDSHAKE);
    }
}
