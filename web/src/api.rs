//! All HTTP of the web UI: the agent that served the page answers every call, except the
//! buddy's status while that agent does not answer (the buddy allows this page's origin).

use duet_core::api::{ApiError, CommandAccepted, Overview, PairInfo, Session};
use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;

/// `GET /api/v1/status`: both Status columns and the last decision.
pub async fn status() -> Result<Overview, String> {
    status_at("").await
}

/// `GET <base>/api/v1/status`: the status of the agent at `base` (`http://10.0.0.2:7101`; empty
/// for the agent that served the page).
pub async fn status_at(base: &str) -> Result<Overview, String> {
    parse(get(&format!("{base}/api/v1/status"), None).await)
}

/// `GET /api/v1/pair`: the pair as configured, libpcap's presence, the refresh period.
pub async fn pair() -> Result<PairInfo, String> {
    pair_at("").await
}

/// `GET <base>/api/v1/pair` of the agent at `base` (empty: the one that served the page).
pub async fn pair_at(base: &str) -> Result<PairInfo, String> {
    parse(get(&format!("{base}/api/v1/pair"), None).await)
}

/// One event of the pair's event log (`GET /api/v1/events`), as the timeline shows it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct LoggedEvent {
    pub id: String,
    /// The agent that stored it first.
    pub origin: String,
    pub at: duet_core::TimestampMs,
    pub severity: String,
    /// `duet`, or the token that posted it.
    pub source: String,
    pub code: String,
    pub message: String,
}

/// A page of the event log and how many events match in all.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct EventPage {
    pub events: Vec<LoggedEvent>,
    pub total: u64,
}

/// `GET /api/v1/events?<query>`: a page of the pair's event log (`query` is already encoded).
pub async fn events(query: &str) -> Result<EventPage, String> {
    parse(get(&format!("/api/v1/events?{query}"), None).await)
}

/// `GET /api/v1/session`: who `token` is and what it may do.
pub async fn session(token: &str) -> Result<Session, String> {
    parse(get("/api/v1/session", Some(token)).await)
}

/// `POST /api/v1/commands/<path>` with `token`; `body` is JSON (`{}` when the command has
/// nothing to say).
pub async fn command(token: &str, path: &str, body: String) -> Result<CommandAccepted, String> {
    let request = Request::post(&format!("/api/v1/commands/{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body)
        .map_err(|e| format!("could not build the request: {e}"))?;
    parse(answer(request.send().await).await)
}

/// `GET url`, with a token when given: the answer's body. One function (not one per answer's
/// type) keeps the bundle small.
async fn get(url: &str, token: Option<&str>) -> Result<String, String> {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send().await).await
}

/// The body of a successful answer, or the agent's own error message.
async fn answer(sent: Result<Response, gloo_net::Error>) -> Result<String, String> {
    // The browser's own words ("TypeError: Failed to fetch") tell an operator nothing.
    let response = sent.map_err(|_| {
        "the agent did not answer: it may be down, or cut off from this browser".to_string()
    })?;
    let text = response.text().await.unwrap_or_default();
    if !response.ok() {
        return Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => e.error,
            Err(_) => format!("the agent answered HTTP {}", response.status()),
        });
    }
    Ok(text)
}

/// An answer's body as `T`.
fn parse<T: DeserializeOwned>(text: Result<String, String>) -> Result<T, String> {
    serde_json::from_str(&text?).map_err(|e| format!("unreadable answer: {e}"))
}

/// Calls `on_status` with every `status` event the host pushes (`GET /api/v1/stream`), and
/// `on_lost` when the stream breaks. The browser's EventSource reconnects by itself after a
/// lost connection (and reports an error at each failed try). The stream is closed when
/// the page is hidden (navigation, back-forward cache) and opened again when it shows: an open
/// stream holds one of the browser's few HTTP/1.1 connections to the agent, and streams left
/// open by hidden pages made later page loads wait for a free one.
pub fn on_status_events(on_status: impl Fn(Overview) + 'static, on_lost: impl Fn() + 'static) {
    use std::cell::RefCell;
    use std::rc::Rc;

    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;

    let listener =
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            if let Some(status) = event
                .data()
                .as_string()
                .and_then(|text| serde_json::from_str::<Overview>(&text).ok())
            {
                on_status(status);
            }
        });
    let lost = Closure::<dyn Fn()>::new(on_lost);
    let open = move || {
        let source = web_sys::EventSource::new("/api/v1/stream").ok()?;
        source
            .add_event_listener_with_callback("status", listener.as_ref().unchecked_ref())
            .ok()?;
        source
            .add_event_listener_with_callback("error", lost.as_ref().unchecked_ref())
            .ok()?;
        Some(source)
    };
    let current = Rc::new(RefCell::new(open()));
    let Some(window) = web_sys::window() else {
        std::mem::forget(current);
        return;
    };
    let hidden = current.clone();
    let on_hide = Closure::<dyn Fn()>::new(move || {
        if let Some(source) = hidden.borrow_mut().take() {
            source.close();
        }
    });
    let shown = current;
    let on_show = Closure::<dyn Fn()>::new(move || {
        let mut slot = shown.borrow_mut();
        if slot.is_none() {
            *slot = open();
        }
    });
    // The page lives as long as these listeners: keep them.
    let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
    let _ = window.add_event_listener_with_callback("pageshow", on_show.as_ref().unchecked_ref());
    on_hide.forget();
    on_show.forget();
}
