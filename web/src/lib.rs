//! duet-web: the web UI of a duet pair, a Leptos client-side app that the host serves itself.
//! Its model is duet-core's (`duet_core::api::Status`), so host, terminal and browser share one
//! definition of a report. This first page is the Failover Config overview: both agents, which
//! one is Online, one LED each (in colour and in words), refreshed periodically.

mod api;
mod components;
mod failover_config;

use leptos::prelude::*;

/// The app: one window for now.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main>
            <h1>"duet"</h1>
            <failover_config::FailoverConfig />
        </main>
    }
}
