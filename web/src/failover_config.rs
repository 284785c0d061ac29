//! The Failover Config window: each agent's name, state and LED.

use std::time::Duration;

use duet_core::Report;
use leptos::prelude::*;

use crate::api;
use crate::components::LedView;

/// The periodic refresh (the reference refreshes once a minute); changes arrive at once
/// through the host's event stream.
const REFRESH: Duration = Duration::from_secs(60);

#[component]
pub fn FailoverConfig() -> impl IntoView {
    let (status, set_status) = signal(None::<Result<duet_core::api::Status, String>>);
    let fetch =
        move || leptos::task::spawn_local(async move { set_status.set(Some(api::status().await)) });
    fetch();
    set_interval(fetch, REFRESH);
    api::on_status_events(move |s| set_status.set(Some(Ok(s))));
    view! {
        <section class="window" aria-label="Failover Config">
            <h2>"Failover Config"</h2>
            {move || match status.get() {
                None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(s)) => match s.pair {
                    None => view! { <p class="muted">"Status information is being retrieved"</p> }.into_any(),
                    Some(pair) => {
                        let reason = s.decision.map(|d| d.reason.text).unwrap_or_default();
                        view! {
                            <div class="agents">
                                <AgentBox report=pair.local />
                                <AgentBox report=pair.buddy />
                            </div>
                            <p class="reason">"Last decision: " {reason}</p>
                        }
                        .into_any()
                    }
                },
            }}
        </section>
    }
}

#[component]
fn AgentBox(report: Report) -> impl IntoView {
    let state = report.state.map_or("Unknown", |s| s.label());
    let online = report.state == Some(duet_core::FailoverState::Online);
    view! {
        <div class="agent" class:online=online data-agent=report.agent.clone()>
            <LedView led=report.led />
            <span class="name">{report.agent.clone()}</span>
            <span class="state">{state}</span>
        </div>
    }
}
