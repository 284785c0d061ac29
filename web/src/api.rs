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
