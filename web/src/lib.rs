//! duet-web: the web UI of a duet pair, a Leptos client-side app that the host serves itself.
//! Its model is duet-core's (`duet_core::api::Status`, `PairInfo`, `History`), so host,
//! terminal and browser share one definition of a report.
//!
//! - [`failover_config`]: the Failover Config window: the pair, one LED per agent, the
//!   packet-capture icon, the operator's commands.
//! - [`status_window`]: the Status window: one column per agent, every row.
//! - [`history`]: transitions, alarms and who switched.
//! - [`session`]: signing in with a named API token.
//!
//! Data arrives by a periodic refresh (`web.refresh`, a minute by default) and at once through
//! the host's event stream.

mod api;
mod components;
mod failover_config;
mod history;
mod session;
mod status_window;

use std::time::Duration;

use duet_core::api::{History, PairInfo, Session, Status};
use leptos::prelude::*;

/// The refresh period until the agent says its own (`web.refresh`).
const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// What every window reads: the latest answers of the agent that served the page.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// `None` until the first answer; `Err` when the agent did not answer.
    pub status: RwSignal<Option<Result<Status, String>>>,
    pub pair: RwSignal<Option<Result<PairInfo, String>>>,
    pub history: RwSignal<Option<Result<History, String>>>,
    /// The signed-in token and who it is.
    pub session: RwSignal<Option<(String, Session)>>,
    /// The Status window is open.
    pub status_open: RwSignal<bool>,
}

impl Ctx {
    /// Fetches everything again (the periodic refresh, and after a command).
    pub fn refresh(self) {
        leptos::task::spawn_local(async move {
            self.status.set(Some(api::status().await));
            self.pair.set(Some(api::pair().await));
            self.history.set(Some(api::history().await));
        });
    }

    /// A pushed status; the history may have grown with it, and the pair is asked again when
    /// the agent did not answer at first (the page was opened while it started).
    fn pushed(self, status: Status) {
        self.status.set(Some(Ok(status)));
        let pair_missing = !matches!(self.pair.get_untracked(), Some(Ok(_)));
        leptos::task::spawn_local(async move {
            if pair_missing {
                self.pair.set(Some(api::pair().await));
            }
            self.history.set(Some(api::history().await));
        });
    }
}

/// The app: the Failover Config window, the Status window on demand, the history.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        status: RwSignal::new(None),
        pair: RwSignal::new(None),
        history: RwSignal::new(None),
        session: RwSignal::new(None),
        status_open: RwSignal::new(false),
    };
    provide_context(ctx);
    leptos::task::spawn_local(async move {
        let pair = api::pair().await;
        let refresh = pair
            .as_ref()
            .map_or(DEFAULT_REFRESH, |p| Duration::from_millis(p.refresh_ms));
        ctx.pair.set(Some(pair));
        ctx.refresh();
        set_interval(move || ctx.refresh(), refresh);
    });
    api::on_status_events(move |s| ctx.pushed(s));
    view! {
        <header class="top">
            <h1>"duet"</h1>
            <session::SignIn />
        </header>
        <main>
            <failover_config::FailoverConfig />
            <Show when=move || ctx.status_open.get()>
                <status_window::StatusWindow />
            </Show>
            <history::HistoryView />
        </main>
    }
}
