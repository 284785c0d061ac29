//! The witness gate: the kernel's side of the pair's witness lease. The client (NATS
//! JetStream KV, in `duet-witness`, composed by `duet-host`) keeps a snapshot the tick loop reads
//! once per tick and hands to the core (`input.witness`); the loop tells it after each decision
//! whether the agent wants the lease: in every state but Offline (claiming, Online, or still
//! releasing its virtual IP), so the lease is let go only once the address is gone.

use duet_core::FailoverState;

/// The witness client as the kernel sees it: two calls, neither of which may wait.
pub trait Witness: Send + Sync {
    /// The lease as the client sees it now.
    fn view(&self) -> duet_core::Witness;
    /// Whether the agent wants the lease (take and renew it) or lets it go.
    fn want(&self, hold: bool);
}

/// Whether an agent in `state` wants the lease.
pub fn wants(state: FailoverState) -> bool {
    state != FailoverState::Offline
}
