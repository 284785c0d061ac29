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

/// An operator's force online without the witness: asked (waiting for the next tick), then in
/// force from the tick that took it until the agent holds the lease or is Offline again.
/// While in force the core decides as if no witness were configured (the operator vouches that
/// the buddy is not Online); the client still takes the lease as soon as it can.
#[derive(Debug, Default)]
pub struct Override {
    /// Asked by this operator; taken by the next tick.
    pub asked: Option<String>,
    /// In force, given by this operator.
    pub by: Option<String>,
}

/// Whether an agent in `state` can take an operator's force online without the witness: it is
/// Offline, or preparing (waiting for the lease). Online or in a transition it cannot.
pub fn overridable(state: FailoverState) -> bool {
    matches!(
        state,
        FailoverState::Offline | FailoverState::PreparingToGoOnline
    )
}

/// Whether an override in force ends after a decision: the lease is held (the witness's rules
/// apply again) or the agent is Offline (the attempt is over).
pub fn override_ends(state: FailoverState, held: bool) -> bool {
    held || state == FailoverState::Offline
}
