//! duet-web: the web UI of a duet pair, a Leptos client-side app that the host serves itself.
//! Its model is duet-core's (`duet_core::api::Status`, `PairInfo`, `History`), so host,
//! terminal and browser share one definition of a report.
//!
//! - [`failover_config`]: the Failover Config window: the pair, one LED per agent, the
//!   packet-capture icon, the operator's commands.
//! - [`status_window`]: the Status window: one column per agent, every row.
//! - [`timeline`]: the pair's event log: transitions of both agents and who switched, LED
//!   changes, alarms; filters, pages, fetched incrementally.
//! - [`session`]: signing in with a named API token.
//!
//! Data arrives by a periodic refresh (`web.refresh`, a minute by default) and at once through
//! the host's event stream.

mod api;
mod components;
mod failover_config;
mod session;
mod status_window;
mod timeline;

use std::time::Duration;

use duet_core::TimestampMs;
use duet_core::api::{Overview, PairInfo, Session};
use leptos::prelude::*;

use crate::components::{led_name, led_sign, severity};

/// The refresh period until the agent says its own (`web.refresh`).
const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// What every window reads: the latest answers of the agent that served the page.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// `None` until the first answer; `Err` when the agent did not answer.
    pub status: RwSignal<Option<Result<Overview, String>>>,
    /// When the last status arrived, by the browser's clock (ms).
    pub received: RwSignal<f64>,
    /// The browser's clock (ms), ticking every second: ages and relative times follow it.
    pub now: RwSignal<f64>,
    pub pair: RwSignal<Option<Result<PairInfo, String>>>,
    /// The signed-in token and who it is.
    pub session: RwSignal<Option<(String, Session)>>,
    /// The Status window is open.
    pub status_open: RwSignal<bool>,
    /// Since when (the browser's clock, ms) the agent that served the page has not answered.
    pub down: RwSignal<Option<f64>>,
    /// The buddy's own answer to `GET /api/v1/pair` (`web.buddy`): its packet-capture library.
    pub buddy_pair: RwSignal<Option<PairInfo>>,
    /// While it does not: the pair as its buddy sees it (`web.buddy`).
    pub from_buddy: RwSignal<Option<Result<Overview, String>>>,
}

impl Ctx {
    /// Fetches everything again (the periodic refresh, and after a command).
    pub fn refresh(self) {
        leptos::task::spawn_local(async move {
            if !self.set_status(api::status().await) {
                return;
            }
            let pair = api::pair().await;
            let buddy = pair.as_ref().ok().and_then(|p| p.buddy_url.clone());
            self.pair.set(Some(pair));
            if let Some(url) = buddy {
                self.buddy_pair.set(api::pair_at(&url).await.ok());
            }
        });
    }

    /// Shows an answer of the agent; a failure marks it down (the last status it gave stays,
    /// for what it last said). Whether it answered.
    fn set_status(self, status: Result<Overview, String>) -> bool {
        let Ok(status) = status else {
            if self.down.get_untracked().is_none() {
                self.down.set(Some(js_sys::Date::now()));
            }
            if self.status.get_untracked().is_none() {
                self.status.set(Some(status));
            }
            return false;
        };
        if self.down.get_untracked().is_some() {
            self.down.set(None);
            self.from_buddy.set(None);
        }
        self.received.set(js_sys::Date::now());
        self.status.set(Some(Ok(status)));
        true
    }

    /// Opens the Status window and gives it the keyboard focus once it is drawn.
    pub fn open_status(self) {
        self.status_open.set(true);
        request_animation_frame(|| {
            let window = web_sys::window().and_then(|w| w.document()).and_then(|d| {
                use wasm_bindgen::JsCast as _;
                d.get_element_by_id("status-window")?
                    .dyn_into::<web_sys::HtmlElement>()
                    .ok()
            });
            if let Some(window) = window {
                let _ = window.focus();
            }
        });
    }

    /// The stream broke: is the agent still there?
    fn lost(self) {
        leptos::task::spawn_local(async move {
            self.set_status(api::status().await);
            self.ask_buddy().await;
        });
    }

    /// Every second while the agent is down: the pair as the buddy sees it, and whether the
    /// agent is back.
    fn while_down(self) {
        if self.down.get_untracked().is_none() {
            return;
        }
        leptos::task::spawn_local(async move {
            if self.set_status(api::status().await) {
                self.refresh();
            } else {
                self.ask_buddy().await;
            }
        });
    }

    async fn ask_buddy(self) {
        let buddy = self
            .pair
            .get_untracked()
            .and_then(Result::ok)
            .and_then(|p| p.buddy_url);
        if let (Some(_), Some(url)) = (self.down.get_untracked(), buddy) {
            let answer = api::status_at(&url).await;
            if answer.is_ok() {
                // Ages now count from the buddy's answer.
                self.received.set(js_sys::Date::now());
            }
            self.from_buddy.set(Some(answer));
        }
    }

    /// What the windows show, and whether it comes from the buddy: this agent's last status,
    /// or while it does not answer the pair as the buddy sees it, its columns swapped so this
    /// agent stays first (the buddy's decision is not this agent's: left out).
    pub fn shown(self) -> (Option<Result<Overview, String>>, bool) {
        if self.down.get().is_some()
            && let Some(Ok(mut theirs)) = self.from_buddy.get()
        {
            if let Some(pair) = theirs.status.pair.as_mut() {
                std::mem::swap(&mut pair.local, &mut pair.buddy);
            }
            theirs.status.decision = None;
            theirs.cause = None;
            return (Some(Ok(theirs)), true);
        }
        (self.status.get(), false)
    }

    /// A pushed status; the pair is asked again when the agent did not answer at first (the
    /// page was opened while it started). Nothing else is fetched per push: a healthy pair
    /// pushes at every heartbeat.
    fn pushed(self, status: Overview) {
        let _ = self.set_status(Ok(status));
        if !matches!(self.pair.get_untracked(), Some(Ok(_))) {
            leptos::task::spawn_local(async move {
                self.pair.set(Some(api::pair().await));
            });
        }
    }

    /// The agent's clock now, as far as the page knows: when it made its last status, plus
    /// the time since that arrived (the browser's clock may differ from the agent's; only its
    /// passing time is used). Tracks `now`.
    pub fn agent_now(self) -> Option<TimestampMs> {
        let (shown, via_buddy) = self.shown();
        let pair = shown?.ok()?.status.pair?;
        let made = if via_buddy { pair.buddy } else { pair.local }.generated_at;
        Some(made + self.since_received())
    }

    /// Milliseconds since the last status arrived. Tracks `now`.
    pub fn since_received(self) -> u64 {
        self.since(self.received.get())
    }

    /// Whole milliseconds from `then` to `now` (browser clock readings). Tracks `now`.
    pub fn since(self, then: f64) -> u64 {
        // Never formatted as a float: float formatting costs the bundle 11 KB.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = (self.now.get() - then).max(0.0) as u64;
        ms
    }

    /// How long ago `at` (by the agent's clock) was. Tracks `now`.
    pub fn age(self, at: TimestampMs) -> u64 {
        self.agent_now().unwrap_or(at).saturating_sub(at)
    }
}

/// The app: the Failover Config window, the Status window on demand, the timeline.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        status: RwSignal::new(None),
        received: RwSignal::new(js_sys::Date::now()),
        now: RwSignal::new(js_sys::Date::now()),
        pair: RwSignal::new(None),
        session: RwSignal::new(None),
        status_open: RwSignal::new(false),
        down: RwSignal::new(None),
        from_buddy: RwSignal::new(None),
        buddy_pair: RwSignal::new(None),
    };
    provide_context(ctx);
    set_interval(
        move || {
            ctx.now.set(js_sys::Date::now());
            ctx.while_down();
        },
        Duration::from_secs(1),
    );
    leptos::task::spawn_local(async move {
        let pair = api::pair().await;
        let refresh = pair
            .as_ref()
            .map_or(DEFAULT_REFRESH, |p| Duration::from_millis(p.refresh_ms));
        ctx.pair.set(Some(pair));
        ctx.refresh();
        set_interval(move || ctx.refresh(), refresh);
    });
    api::on_status_events(move |s| ctx.pushed(s), move || ctx.lost());

    view! {
        // Not an element: keeps the tab's title and icon in step with the status.
        {move || show_in_tab(ctx)}
        <header class="top">
            <h1>"duet"</h1>
            <session::SignIn />
        </header>
        <main>
            <failover_config::AgentDown />
            <failover_config::FailoverConfig />
            <Show when=move || ctx.status_open.get()>
                <status_window::StatusWindow />
            </Show>
            <timeline::TimelineView />
        </main>
    }
}

/// The worst LED of the pair in the tab's title and its favicon, so a tab in the background
/// still says how the pair is: "Problem — agent-b Online — duet".
fn show_in_tab(ctx: Ctx) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let retrieving = ("Retrieving — duet".to_string(), duet_core::Led::Transparent);
    let (title, led) = match ctx.status.get() {
        _ if ctx.down.get().is_some() => ("Agent down — duet".to_string(), duet_core::Led::Red),
        None => retrieving,
        Some(Err(_)) => ("Agent down — duet".to_string(), duet_core::Led::Red),
        Some(Ok(overview)) => match overview.status.pair {
            None => retrieving,
            Some(pair) => {
                let worst = [pair.local.led, pair.buddy.led]
                    .into_iter()
                    .max_by_key(|l| severity(*l))
                    .unwrap_or(duet_core::Led::Transparent);
                let online = [&pair.local, &pair.buddy]
                    .into_iter()
                    .find(|r| r.state == Some(duet_core::FailoverState::Online))
                    .map_or_else(
                        || "none Online".to_string(),
                        |r| format!("{} Online", r.agent),
                    );
                (format!("{} — {online} — duet", led_sign(worst).1), worst)
            }
        },
    };
    document.set_title(&title);
    if let Ok(Some(icon)) = document.query_selector("link[rel=icon]") {
        let _ = icon.set_attribute("href", &favicon(led));
        let _ = icon.set_attribute("data-led", led_name(led));
    }
}

/// A favicon drawing the LED: its colour and the shape that reads without it.
fn favicon(led: duet_core::Led) -> String {
    let (fill, stroke) = match led {
        duet_core::Led::Green => ("%2322a33a", "%23165e24"),
        duet_core::Led::Red => ("%23d62828", "%237a1010"),
        duet_core::Led::Transparent => ("none", "%236b7280"),
    };
    let shape = match led {
        duet_core::Led::Green => {
            "<path d='M9 17l5 5 9-11' stroke='white' stroke-width='4' fill='none'/>"
        }
        duet_core::Led::Red => "<path d='M16 7v11M16 22v3' stroke='white' stroke-width='4'/>",
        duet_core::Led::Transparent => "",
    };
    format!(
        "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>\
         <circle cx='16' cy='16' r='14' fill='{fill}' stroke='{stroke}' stroke-width='2' \
         stroke-dasharray='{}'/>{shape}</svg>",
        if led == duet_core::Led::Transparent {
            "4 3"
        } else {
            "none"
        }
    )
}
