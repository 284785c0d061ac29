//! The Failover Config window: each agent's name, state and LED.

use std::time::Duration;

use duet_core::Report;
use leptos::prelude::*;

use crate::api;
use crate::components::LedView;

/// How often the window refreshes.
const REFRESH: Duration = Duration::from_secs(5);

#[component]
pub fn FailoverConfig() -> impl IntoView {
    let (refresh, set_refresh) = signal(0u32);
    set_interval(
        move || set_refresh.update(|n| *n = n.wrapping_add(1)),
        REFRESH,
    );
    let status = LocalResource::new(move || {
        refresh.track();
        api::status()
    });
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
