//! The HTTP API (axum), `/metrics` and the web UI. The OpenAPI document
//! (`GET /api/v1/openapi.json`, `host/src/openapi.json`) describes every route and body.
//!
//! - `GET /api/v1/status`: both Status columns, the last decision and which core answered.
//! - `GET /api/v1/history?limit=N`: decisions that changed something, newest last.
//! - `GET /api/v1/stream`: server-sent events, one `status` event per change of the status.
//! - `POST /api/v1/commands/{switch,force-online,mode}`: named token with the right needed.
//! - `GET /api/v1/pair`: the pair as configured (names, addresses, mode, virtual IP), whether
//!   libpcap is usable here, and the web UI's refresh period.
//! - `GET /api/v1/session`: the name and rights of the presented token (the web UI's sign-in).
//! - `GET /api/v1/events`: the event log, paged and filtered; `POST /api/v1/events`: an
//!   application posts events (token with the right `events`). See `crate::events::api`.
//! - `GET /metrics`: Prometheus text format. `GET /healthz`: 200 while the agent runs.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use duet_core::api::{AgentInfo, ApiError, CommandAccepted, History, PairInfo, Session, Status};
use duet_core::{Command, Mode, OperatorCommand};
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::agent::Shared;
use crate::auth::{self, Denied};
use crate::config::Right;
use crate::lock;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/commands/switch", post(switch))
        .route("/api/v1/commands/force-online", post(force_online))
        .route("/api/v1/commands/mode", post(mode))
        .route("/api/v1/pair", get(pair))
        .route("/api/v1/session", get(session))
        .route(
            "/api/v1/events",
            get(crate::events::api::list).post(crate::events::api::post),
        )
        .route("/metrics", get(metrics))
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

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HistoryQuery>,
) -> Json<History> {
    let limit = q.limit.unwrap_or(100).min(1_000);
    let all = lock(&shared.history);
    let entries = all
        .iter()
        .skip(all.len().saturating_sub(limit))
        .cloned()
        .collect();
    Json(History { entries })
}

/// One `status` event now, then one per change; timestamps alone are not a change.
async fn stream(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = shared.status.subscribe();
    let shutdown = shared.shutdown.clone();
    let events = futures_util::stream::unfold(
        (rx, None::<String>, shutdown),
        |(mut rx, last, shutdown)| async move {
            loop {
                let status = rx.borrow_and_update().clone();
                let key = fingerprint(&status);
                if last.as_ref() != Some(&key) {
                    let data = serde_json::to_string(&status).unwrap_or_default();
                    return Some((
                        Ok(Event::default().event("status").data(data)),
                        (rx, Some(key), shutdown),
                    ));
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return None },
                    () = shutdown.cancelled() => return None,
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The status without what changes on every tick (times, tick numbers).
fn fingerprint(status: &Status) -> String {
    let mut s = status.clone();
    if let Some(pair) = &mut s.pair {
        pair.local.generated_at = 0;
        pair.buddy.generated_at = 0;
    }
    if let Some(d) = &mut s.decision {
        d.tick = 0;
        d.at = 0;
    }
    serde_json::to_string(&s).unwrap_or_default()
}

async fn pair(State(shared): State<Arc<Shared>>) -> Json<PairInfo> {
    let config = &shared.config;
    let mode = shared
        .status
        .borrow()
        .decision
        .as_ref()
        .map_or(config.agent.mode, |d| d.state.mode);
    // The first call loads libpcap once; later calls read the remembered answer.
    let packet_capture = tokio::task::spawn_blocking(crate::pcap::detected)
        .await
        .unwrap_or_else(|e| duet_core::api::PacketCapture {
            found: false,
            library: None,
            version: None,
            message: Some(crate::pcap::NOT_DETECTED.to_string()),
            detail: Some(format!("the detection failed: {e}")),
        });
    let buddy_addresses = buddy_addresses(config);
    Json(PairInfo {
        local: AgentInfo {
            name: config.agent.name.clone(),
            addresses: vec![config.api.listen.to_string()],
            mode: Some(mode),
        },
        buddy: AgentInfo {
            name: config.buddy.name.clone(),
            addresses: buddy_addresses,
            // As the buddy last reported it.
            mode: shared.buddy_report().map(|(report, _)| report.mode),
        },
        virtual_ip: shared.vips.describe(),
        packet_capture,
        refresh_ms: u64::try_from(config.web.refresh.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The buddy's addresses: where this agent reaches its duet, the agent heartbeats' targets
/// and the sync connection's, each once. Ping and inverted heartbeats point at other hosts
/// (the gateway, a router), never at the buddy's duet, so they are not its addresses.
fn buddy_addresses(config: &crate::config::Config) -> Vec<String> {
    let agent_paths = config
        .heartbeats
        .iter()
        .filter(|h| h.kind == duet_core::HeartbeatKind::Agent)
        .map(|h| h.target.clone());
    let sync = config.sync.iter().map(|s| s.target.to_string());
    agent_paths.chain(sync).fold(Vec::new(), |mut all, t| {
        if !all.contains(&t) {
            all.push(t);
        }
        all
    })
}

/// Who the presented token is: the web UI signs in with it before offering commands.
async fn session(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth::identify(&shared.config.api.tokens, header) {
        Ok(token) => Json(Session {
            name: token.name.clone(),
            rights: token
                .rights
                .iter()
                .map(|r| {
                    match r {
                        Right::Switch => "switch",
                        Right::ForceOnline => "force_online",
                        Right::Mode => "mode",
                        Right::Events => "events",
                    }
                    .to_string()
                })
                .collect(),
        })
        .into_response(),
        Err(denied) => {
            let mut response = error(StatusCode::UNAUTHORIZED, denied.to_string());
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&shared),
    )
        .into_response()
}

async fn switch(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    crate::events::api::drain_before_switch(&shared, &headers).await;
    command(&shared, &headers, Right::Switch, "switch", |_| {
        Ok(Command::Switch)
    })
    .await
}

async fn force_online(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    command(
        &shared,
        &headers,
        Right::ForceOnline,
        "force_online",
        |_| Ok(Command::ForceOnline),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: Mode,
}

async fn mode(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    command(&shared, &headers, Right::Mode, "mode", move |()| {
        serde_json::from_slice::<ModeBody>(&body)
            .map(|b| Command::SetMode(b.mode))
            .map_err(|e| format!("expected {{\"mode\": \"automatic\" | \"manual\"}}: {e}"))
    })
    .await
}

/// Authorizes first (so nothing about the body is looked at without a valid token), then
/// queues the command for the next tick.
async fn command(
    shared: &Shared,
    headers: &HeaderMap,
    right: Right,
    name: &str,
    parse: impl FnOnce(()) -> Result<Command, String>,
) -> Response {
    let by = match authorize(shared, headers, right, name) {
        Ok(by) => by,
        Err(response) => return *response,
    };
    let command = match parse(()) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match shared.commands.try_send(OperatorCommand {
        by: by.clone(),
        command,
    }) {
        Ok(()) => {
            tracing::info!(command = name, by = %by, "command accepted");
            (
                StatusCode::ACCEPTED,
                Json(CommandAccepted {
                    command: name.to_string(),
                    by,
                }),
            )
                .into_response()
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many commands waiting for the next tick; try again".into(),
        ),
    }
}

/// Authorizes `right` for a request (`what`, for the log): the token's name, or the refusal
/// to send: 401 with `WWW-Authenticate: Bearer` without a valid token, 403 when the token lacks
/// the right.
pub(crate) fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    right: Right,
    what: &str,
) -> Result<String, Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth::authorize(&shared.config.api.tokens, header, right).map_err(|denied| {
        tracing::warn!(request = what, reason = %denied, "request refused");
        let status = if matches!(denied, Denied::Lacks { .. }) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut response = error(status, denied.to_string());
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Box::new(response)
    })
}

pub(crate) fn error(status: StatusCode, error: String) -> Response {
    (status, Json(ApiError { error })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buddys_addresses_are_its_agent_paths_and_sync_target_not_pinged_hosts() {
        let text = r#"
            [agent]
            name = "a"
            [buddy]
            name = "b"
            [api]
            listen = "127.0.0.1:7101"
            [peer]
            listen = "10.0.0.1:7201"
            pair_key = "0123456789abcdef0123"
            [sync]
            target = "10.0.1.2:7201"
            [[heartbeat]]
            kind = "agent"
            target = "10.0.0.2:7201"
            [[heartbeat]]
            kind = "inverted"
            target = "10.0.0.254"
            [[heartbeat]]
            kind = "ping"
            target = "10.0.2.2"
            [[heartbeat]]
            kind = "agent"
            target = "10.0.0.2:7201"
            source = "10.0.0.1"
        "#;
        let config = crate::config::parse(text, std::path::Path::new(".")).expect("valid");
        assert_eq!(
            buddy_addresses(&config),
            ["10.0.0.2:7201", "10.0.1.2:7201"],
            "agent heartbeat targets (once each), then the sync target"
        );
    }
}
