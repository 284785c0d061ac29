//! The Status window: one column per agent, every row with its value, failure reason, failure
//! count and last success; rows that exist only on the Online agent (Sync Connection, ...) come
//! only in its column, since the core leaves them out of the other's report; an agent without
//! data shows "Agent Status: Unreachable"; under this agent's column, the reason of its last
//! decision.

use duet_core::Report;
use duet_core::api::DecisionSummary;
use leptos::prelude::*;

use crate::Ctx;
use crate::components::{ErrorView, LedView, utc};

#[component]
pub fn StatusWindow() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let close = move |_| ctx.status_open.set(false);
    view! {
        <div class="overlay">
            <section class="window status-window" id="status-window" role="dialog" aria-label="Status">
                <div class="title">
                    <h2>"Status"</h2>
                    <button id="status-close" aria-label="Close the Status window" on:click=close>
                        "Close"
                    </button>
                </div>
                {move || match ctx.status.get() {
                    None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                    Some(Err(message)) => view! { <ErrorView message /> }.into_any(),
                    Some(Ok(status)) => match status.pair {
                        None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                        Some(pair) => view! {
                            <div class="columns">
                                <Column id="status-local" report=pair.local decision=status.decision />
                                <Column id="status-buddy" report=pair.buddy decision=None />
                            </div>
                        }
                        .into_any(),
                    },
                }}
            </section>
        </div>
    }
}

#[component]
fn Column(id: &'static str, report: Report, decision: Option<DecisionSummary>) -> impl IntoView {
    let open = Callback::new(|()| {});
    let rows = report.rows.clone();
    let empty = rows.is_empty();
    view! {
        <div class="column" id=id data-agent=report.agent.clone()>
            <h3>
                <LedView agent=report.agent.clone() led=report.led on_open=open />
                " " {report.agent.clone()}
            </h3>
            {empty.then(|| view! { <p class="muted">{report.led.meaning()}</p> })}
            <div class="table-scroll">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Parameter"</th>
                            <th scope="col">"Value"</th>
                            <th scope="col">"Failure reason"</th>
                            <th scope="col">"Failures"</th>
                            <th scope="col">"Last success"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {rows
                            .into_iter()
                            .map(|row| {
                                view! {
                                    <tr data-key=row.key class:problem=row.turns_led_red>
                                        <th scope="row">{row.label}</th>
                                        <td class="value">{row.value}</td>
                                        <td class="reason">{row.reason.unwrap_or_default()}</td>
                                        <td class="count">{row.failures.map(|f| f.to_string()).unwrap_or_default()}</td>
                                        <td class="time">{row.last_success.map(utc).unwrap_or_default()}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
            {decision.map(|d| view! {
                <p class="reason why-state">
                    {format!("Why is {} {}? ", report.agent, d.state.state.label())}
                    <span>{d.reason.text}</span>
                    {format!(" (since {})", utc(d.state.since))}
                </p>
            })}
        </div>
    }
}
