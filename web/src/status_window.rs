//! The Status window: one column per agent, every row with its value, failure reason, failure
//! count and last success; rows that exist only on the Online agent (Sync Connection, ...) come
//! only in its column, since the core leaves them out of the other's report; an agent without
//! data shows "Agent Status: Unreachable"; under this agent's column, the reason of its last
//! decision.

use duet_core::Report;
use leptos::prelude::*;

use crate::Ctx;
use crate::components::{Ago, ErrorView, LedView};

/// The dialog: it takes the keyboard focus when it opens ([`crate::Ctx::open_status`]);
/// Escape, "Close" and a click outside it close it.
#[component]
pub fn StatusWindow() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let close = move || ctx.status_open.set(false);
    view! {
        <div
            class="overlay"
            id="status-overlay"
            on:click=move |ev| {
                // Only a click on the overlay itself, outside the window.
                if ev.target() == ev.current_target() {
                    close();
                }
            }
            // The window holds the focus, so its keys bubble up to here.
            on:keydown=move |ev| {
                if ev.key() == "Escape" {
                    close();
                }
            }
        >
            <section
                class="window status-window"
                id="status-window"
                role="dialog"
                aria-modal="true"
                aria-label="Status"
                tabindex="-1"
            >
                <div class="title">
                    <h2>"Status"</h2>
                    <button id="status-close" aria-label="Close the Status window" on:click=move |_| close()>
                        "Close"
                    </button>
                </div>
                {move || match ctx.shown().0 {
                    None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                    Some(Err(message)) => view! { <ErrorView message /> }.into_any(),
                    Some(Ok(overview)) => {
                        let why = overview.why();
                        let since = overview.status.decision.map(|d| d.state.since);
                        match overview.status.pair {
                            None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                            Some(pair) => view! {
                                <div class="columns">
                                    <Column id="status-local" report=pair.local why since />
                                    <Column id="status-buddy" report=pair.buddy why=None since=None />
                                </div>
                            }
                            .into_any(),
                        }
                    }
                }}
            </section>
        </div>
    }
}

#[component]
fn Column(
    id: &'static str,
    report: Report,
    why: Option<(String, String)>,
    since: Option<u64>,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
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
                <table class="rows">
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
                                let last = row.last_success;
                                view! {
                                    <tr data-key=row.key class:problem=row.turns_led_red>
                                        <th scope="row">{row.label}</th>
                                        <td class="value" data-label="Value">{row.value}</td>
                                        <td class="reason" data-label="Failure reason">{row.reason.unwrap_or_default()}</td>
                                        <td class="count" data-label="Failures">{row.failures.map(|f| f.to_string()).unwrap_or_default()}</td>
                                        <td class="time" data-label="Last success">
                                            {last.map(|at| view! { <Ago at age_ms=Signal::derive(move || ctx.age(at)) /> })}
                                        </td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
            {why.map(|(question, answer)| view! {
                <p class="reason why-state">
                    {question} " " <span>{answer}</span>
                    {since.map(|at| view! {
                        " (since " <Ago at age_ms=Signal::derive(move || ctx.age(at)) /> ")"
                    })}
                </p>
            })}
        </div>
    }
}
