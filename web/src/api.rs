//! All HTTP of the web UI.

use duet_core::api::Status;

/// `GET /api/v1/status` of the agent that served this page.
pub async fn status() -> Result<Status, String> {
    let response = gloo_net::http::Request::get("/api/v1/status")
        .send()
        .await
        .map_err(|e| format!("the agent did not answer: {e}"))?;
    if !response.ok() {
        return Err(format!("the agent answered HTTP {}", response.status()));
    }
    response
        .json::<Status>()
        .await
        .map_err(|e| format!("unreadable status: {e}"))
}

/// Calls `on_status` with every `status` event the host pushes (`GET /api/v1/stream`). The
/// browser's EventSource reconnects by itself after a lost connection.
pub fn on_status_events(on_status: impl Fn(Status) + 'static) {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new("/api/v1/stream") else {
        return;
    };
    let listener =
        Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            if let Some(status) = event
                .data()
                .as_string()
                .and_then(|text| serde_json::from_str::<Status>(&text).ok())
            {
                on_status(status);
            }
        });
    if source
        .add_event_listener_with_callback("status", listener.as_ref().unchecked_ref())
        .is_ok()
    {
        // The page lives as long as the stream: keep both.
        listener.forget();
        std::mem::forget(source);
    }
}
