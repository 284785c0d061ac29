//! The pair's timeline: the event log both agents keep and forward to each other, so it
//! survives restarts and tells the story of the pair — every transition of either agent and
//! who switched, LED changes, the buddy lost and found, alarms and notices — newest first,
//! with filters and pages. New events are fetched incrementally (only those after the newest
//! shown, at most every 2 s while pushes arrive), never the whole log per push.

use leptos::prelude::*;

use crate::Ctx;
use crate::api::{self, EventPage, LoggedEvent};
use crate::components::{Ago, ErrorView};

/// Events per page.
const PAGE: u64 = 20;
/// The least time between two looks for new events (ms).
const LOOK_EVERY_MS: f64 = 2_000.0;

/// What the timeline shows: filters, page, and what was fetched.
#[derive(Clone, Copy)]
struct Timeline {
    origin: RwSignal<String>,
    severity: RwSignal<String>,
    code: RwSignal<String>,
    offset: RwSignal<u64>,
    page: RwSignal<Option<Result<EventPage, String>>>,
    looked: RwSignal<f64>,
}

impl Timeline {
    /// The filters as a query string, without paging.
    fn filters(self) -> String {
        let mut q = String::new();
        for (key, value) in [
            ("origin", self.origin.get_untracked()),
            ("severity", self.severity.get_untracked()),
            ("code", self.code.get_untracked()),
        ] {
            if !value.is_empty() {
                q.push_str(&format!("&{key}={}", js_sys::encode_uri_component(&value)));
            }
        }
        q
    }

    /// The page at the current offset, fetched whole (filters or page changed).
    fn load(self) {
        let query = format!(
            "limit={PAGE}&offset={}{}",
            self.offset.get_untracked(),
            self.filters()
        );
        self.looked.set(js_sys::Date::now());
        leptos::task::spawn_local(async move {
            self.page.set(Some(api::events(&query).await));
        });
    }

    /// Only the events after the newest shown, prepended (on the first page).
    fn look_for_new(self) {
        let Some(Ok(page)) = self.page.get_untracked() else {
            return self.load();
        };
        let since = page.events.first().map_or(0, |e| e.at);
        let query = format!("limit=100&order=asc&since={since}{}", self.filters());
        self.looked.set(js_sys::Date::now());
        leptos::task::spawn_local(async move {
            let Ok(new) = api::events(&query).await else {
                return;
            };
            self.page.update(|page| {
                if let Some(Ok(page)) = page {
                    let fresh: Vec<LoggedEvent> = new
                        .events
                        .into_iter()
                        .rev()
                        .filter(|e| page.events.iter().all(|o| o.id != e.id))
                        .collect();
                    page.total += fresh.len() as u64;
                    page.events.splice(0..0, fresh);
                    page.events.truncate(PAGE as usize);
                }
            });
        });
    }
}

#[component]
pub fn TimelineView() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let t = Timeline {
        origin: RwSignal::new(String::new()),
        severity: RwSignal::new(String::new()),
        code: RwSignal::new(String::new()),
        offset: RwSignal::new(0),
        page: RwSignal::new(None),
        looked: RwSignal::new(0.0),
    };
    // A whole page when a filter or the page changes.
    Effect::new(move || {
        t.origin.track();
        t.severity.track();
        t.code.track();
        t.offset.track();
        t.load();
    });
    // New events as pushes arrive, on the first page, at most every 2 s.
    Effect::new(move || {
        ctx.received.get();
        let due = js_sys::Date::now() - t.looked.get_untracked() >= LOOK_EVERY_MS;
        if due && t.offset.get_untracked() == 0 && ctx.down.get_untracked().is_none() {
            t.look_for_new();
        }
    });
    let agents = move || {
        ctx.pair
            .get()
            .and_then(Result::ok)
            .map(|p| vec![p.local.name, p.buddy.name])
            .unwrap_or_default()
    };
    view! {
        <section class="window" id="timeline" aria-label="Timeline">
            <h2>"Timeline of the pair"</h2>
            <div class="filters">
                <label>"Agent "
                    <select id="timeline-origin" on:change=move |ev| { t.offset.set(0); t.origin.set(event_target_value(&ev)); }>
                        <option value="">"both"</option>
                        {move || agents().into_iter().map(|a| view! { <option value=a.clone()>{a.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label>"Severity "
                    <select id="timeline-severity" on:change=move |ev| { t.offset.set(0); t.severity.set(event_target_value(&ev)); }>
                        <option value="">"all"</option>
                        <option value="info">"info"</option>
                        <option value="warning">"warning"</option>
                        <option value="error">"error"</option>
                        <option value="critical">"critical"</option>
                    </select>
                </label>
                <label>"Kind "
                    <select id="timeline-code" on:change=move |ev| { t.offset.set(0); t.code.set(event_target_value(&ev)); }>
                        <option value="">"all"</option>
                        <option value="switch">"switches"</option>
                        <option value="led">"LED changes"</option>
                        <option value="buddy_unreachable">"buddy lost"</option>
                        <option value="buddy_reachable">"buddy back"</option>
                        <option value="heartbeat_failing">"heartbeats failing"</option>
                    </select>
                </label>
            </div>
            {move || rows(ctx, t)}
        </section>
    }
}

/// The page's rows and the paging buttons.
fn rows(ctx: Ctx, t: Timeline) -> AnyView {
    let page = match t.page.get() {
        None => return view! { <p class="muted">"Loading the timeline"</p> }.into_any(),
        Some(Err(message)) => return view! { <ErrorView message /> }.into_any(),
        Some(Ok(page)) => page,
    };
    let offset = t.offset.get();
    let shown = page.events.len() as u64;
    let total = page.total;
    let rows = page
        .events
        .into_iter()
        .map(|e| {
            let at = e.at;
            let (class, code, origin) = (
                format!("event {}", e.severity),
                e.code.clone(),
                e.origin.clone(),
            );
            view! {
                <tr class=class data-code=code data-origin=origin>
                    <td class="time"><Ago at age_ms=Signal::derive(move || ctx.age(at)) /></td>
                    <td class="origin">{e.origin}</td>
                    <td class="severity">{e.severity}</td>
                    <td class="code">{e.code}</td>
                    <td class="message">{e.message}</td>
                    <td class="source">{(e.source != "duet").then_some(e.source)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table class="rows">
                <thead>
                    <tr>
                        <th scope="col">"When"</th>
                        <th scope="col">"Agent"</th>
                        <th scope="col">"Severity"</th>
                        <th scope="col">"Kind"</th>
                        <th scope="col">"What"</th>
                        <th scope="col">"Posted by"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <div class="paging">
            <button id="timeline-newer" disabled=offset == 0 on:click=move |_| t.offset.set(offset.saturating_sub(PAGE))>
                "Newer"
            </button>
            <span id="timeline-range">
                {format!("{}–{} of {total}", (offset + 1).min(total), offset + shown)}
            </span>
            <button id="timeline-older" disabled=offset + shown >= total on:click=move |_| t.offset.set(offset + PAGE)>
                "Older"
            </button>
        </div>
    }
    .into_any()
}
