//! The pair's timeline: the event log both agents keep and forward to each other, so it
//! survives restarts and tells the story of the pair — every transition and decision of either
//! agent and who gave the command, LED changes, the buddy lost and found, alarms and
//! notices — newest first,
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

    /// A filter changed: its first page.
    fn first_page(self) {
        self.turn(0);
    }

    /// The page at `offset`.
    fn turn(self, offset: u64) {
        self.offset.set(offset);
        self.load();
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
    t.load();
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
                {move || {
                    let mut agents: Vec<(String, String)> = agents().into_iter().map(|a| (a.clone(), a)).collect();
                    agents.insert(0, (String::new(), "both".into()));
                    filter("timeline-origin", "Agent ", agents, t.origin, t)
                }}
                {filter("timeline-severity", "Severity ", options(SEVERITIES), t.severity, t)}
                {filter("timeline-code", "Kind ", options(KINDS), t.code, t)}
            </div>
            // New events as pushes arrive, on the first page, at most every 2 s.
            {move || {
                ctx.received.track();
                let due = js_sys::Date::now() - t.looked.get_untracked() >= LOOK_EVERY_MS;
                if due && t.offset.get_untracked() == 0 && ctx.down.get_untracked().is_none() {
                    t.look_for_new();
                }
            }}
            {move || rows(ctx, t)}
        </section>
    }
}

/// The severity filter's choices: (value, label).
const SEVERITIES: &[(&str, &str)] = &[
    ("", "all"),
    ("info", "info"),
    ("warning", "warning"),
    ("error", "error"),
    ("critical", "critical"),
];

/// The kind filter's choices: (event code, label).
const KINDS: &[(&str, &str)] = &[
    ("", "all"),
    ("switch", "switches"),
    ("decision", "decisions"),
    ("led", "LED changes"),
    ("buddy_unreachable", "buddy lost"),
    ("buddy_reachable", "buddy back"),
    ("heartbeat_failing", "heartbeats failing"),
];

fn options(choices: &[(&str, &str)]) -> Vec<(String, String)> {
    choices
        .iter()
        .map(|(v, l)| ((*v).to_string(), (*l).to_string()))
        .collect()
}

/// One filter: a labelled choice; choosing shows the first page.
fn filter(
    id: &'static str,
    label: &'static str,
    choices: Vec<(String, String)>,
    value: RwSignal<String>,
    t: Timeline,
) -> impl IntoView + use<> {
    let chosen = value.get_untracked();
    view! {
        <label>
            {label}
            <select id=id on:change=move |ev| { value.set(event_target_value(&ev)); t.first_page(); }>
                {choices
                    .into_iter()
                    .map(|(v, l)| {
                        let selected = v == chosen;
                        view! { <option value=v selected=selected>{l}</option> }
                    })
                    .collect_view()}
            </select>
        </label>
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
            <button id="timeline-newer" disabled=offset == 0 on:click=move |_| t.turn(offset.saturating_sub(PAGE))>
                "Newer"
            </button>
            <span id="timeline-range">
                {format!("{}–{} of {total}", (offset + 1).min(total), offset + shown)}
            </span>
            <button id="timeline-older" disabled=offset + shown >= total on:click=move |_| t.turn(offset + PAGE)>
                "Older"
            </button>
        </div>
    }
    .into_any()
}
