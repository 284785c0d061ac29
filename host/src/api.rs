//! The HTTP API (axum) and the web UI's files.
//!
//! - `GET /api/v1/status`: both Status columns, the last decision and which core answered.
//! - `GET /api/v1/peer`: what this agent tells its buddy (the first cut of the peer link).
//! - `GET /healthz`: 200 while the agent runs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use duet_core::api::Status;

use crate::agent::{PeerReport, Shared};

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/peer", get(peer))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::web::routes())
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(shared.status.borrow().clone())
}

async fn peer(State(shared): State<Arc<Shared>>) -> Json<PeerReport> {
    Json(shared.peer.borrow().clone())
}
