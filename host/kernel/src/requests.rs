//! The go-offline requests between the agents and their answers.

use duet_core::{Action, Answer, Decision, FailoverState, RequestReason, TimestampMs};

/// Bookkeeping of the go-offline requests between the agents. Requests and answers are state
/// in each agent's peer report, tagged with the request's id: asynchronous, idempotent, and
/// nothing waits on the buddy. Shared with the model check, which drives it in simulation.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    /// Our pending request that the buddy go offline.
    outgoing: Option<(u64, RequestReason)>,
    /// The buddy's request we last answered, and the answer.
    answered: Option<(u64, Answer)>,
}

/// What the buddy's report says about requests this tick.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The buddy's request this agent has not answered yet.
    pub incoming: Option<(u64, RequestReason)>,
    /// The buddy's answer to our pending request.
    pub answer: Option<Answer>,
}

impl Requests {
    /// Reads the buddy's request and answer (from its last report, if fresh).
    pub fn exchange(
        &self,
        buddy_request: Option<(u64, RequestReason)>,
        buddy_answer: Option<&(u64, Answer)>,
    ) -> Exchange {
        let incoming =
            buddy_request.filter(|(id, _)| self.answered.as_ref().is_none_or(|(a, _)| a != id));
        let answer = match (self.outgoing, buddy_answer) {
            (Some((ours, _)), Some((id, a))) if *id == ours => Some(a.clone()),
            _ => None,
        };
        Exchange { incoming, answer }
    }

    /// Carries out a decision's request actions: a new request, an answer to the buddy's.
    pub fn apply(&mut self, exchange: &Exchange, decision: &Decision, now: TimestampMs) {
        for action in &decision.actions {
            match action {
                Action::AskBuddyOffline(reason) => self.outgoing = Some((now, *reason)),
                Action::AnswerBuddy(a) => {
                    if let Some((id, _)) = exchange.incoming {
                        self.answered = Some((id, a.clone()));
                    }
                }
                _ => {}
            }
        }
        // A request lives while we prepare: an accepted answer is used once the agent claims,
        // which with a witness waits for the lease while still preparing.
        if decision.state.state != FailoverState::PreparingToGoOnline {
            self.outgoing = None;
        }
    }

    /// Our pending request, for our peer report.
    pub fn outgoing(&self) -> Option<(u64, RequestReason)> {
        self.outgoing
    }

    /// Our answer to the buddy's last request, for our peer report.
    pub fn answered(&self) -> Option<(u64, Answer)> {
        self.answered.clone()
    }
}
