//! The event history: transitions, alarms and operators' commands (who switched), newest first.

use duet_core::ReasonCode;
use duet_core::api::HistoryEntry;
use leptos::prelude::*;

use crate::Ctx;
use crate::components::{ErrorView, utc};

/// What an entry is, for the Kind column: a command names its operator; an alarm is a decision
/// taken because something failed; the rest are transitions or changes of reason.
fn kind(entry: &HistoryEntry, previous: Option<&HistoryEntry>) -> &'static str {
    if entry.by.is_some() {
        return "command";
    }
    match entry.decision.reason.code {
        ReasonCode::BuddyDead
        | ReasonCode::Isolated
        | ReasonCode::Timeout
        | ReasonCode::PingPongGuard
        | ReasonCode::SwitchTrigger
        | ReasonCode::Vip
        | ReasonCode::Fenced => "alarm",
        ReasonCode::Steady
        | ReasonCode::StartupTieBreak
        | ReasonCode::LostTieBreak
        | ReasonCode::BuddyAlive
        | ReasonCode::Operator
        | ReasonCode::BuddyRequest
        | ReasonCode::BuddyAnswer
        | ReasonCode::ManualMode
        | ReasonCode::StartingUp => {
            if previous.is_none_or(|p| p.decision.state.state != entry.decision.state.state) {
                "transition"
            } else {
                "change"
            }
        }
    }
}

#[component]
pub fn HistoryView() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <section class="window" id="history" aria-label="History">
            <h2>"History"</h2>
            {move || match ctx.history.get() {
                None => view! { <p class="muted">"Loading the history"</p> }.into_any(),
                Some(Err(message)) => view! { <ErrorView message /> }.into_any(),
                Some(Ok(history)) => {
                    let entries = history.entries;
                    let rows: Vec<_> = (0..entries.len())
                        .rev()
                        .map(|i| {
                            let entry = &entries[i];
                            let kind = kind(entry, i.checked_sub(1).map(|p| &entries[p]));
                            view! {
                                <tr class=kind data-kind=kind>
                                    <td class="time">{utc(entry.decision.at)}</td>
                                    <td>{kind}</td>
                                    <td>{entry.decision.state.state.label()}</td>
                                    <td>{entry.decision.reason.text.clone()}</td>
                                    <td class="by">{entry.by.clone().unwrap_or_default()}</td>
                                </tr>
                            }
                        })
                        .collect();
                    view! {
                        <div class="table-scroll">
                            <table>
                                <thead>
                                    <tr>
                                        <th scope="col">"Time"</th>
                                        <th scope="col">"Kind"</th>
                                        <th scope="col">"State"</th>
                                        <th scope="col">"Reason"</th>
                                        <th scope="col">"By"</th>
                                    </tr>
                                </thead>
                                <tbody>{rows}</tbody>
                            </table>
                        </div>
                    }
                    .into_any()
                }
            }}
        </section>
    }
}
