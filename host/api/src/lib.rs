//! The HTTP API (axum), `/metrics` and the web UI. The OpenAPI document
//! (`GET /api/v1/openapi.json`, `host/api/src/openapi.json`) describes every route and body.
//!
//! - `GET /api/v1/status`: both Status columns, the last decision and which core answered.
//! - `GET /api/v1/history?limit=N`: decisions that changed something, newest last.
//! - `GET /api/v1/stream`: server-sent events, one `status` event per change of the status.
//! - `POST /api/v1/commands/{switch,force-online,mode}`: named token with the right needed.
//! - `GET /api/v1/pair`: the pair as configured (names, addresses, mode, virtual IP), whether
//!   libpcap is usable here, and the web UI's refresh period.
//! - `GET /api/v1/session`: the name and rights of the presented token (the web UI's sign-in).
//! - `GET /api/v1/events`: the event log, paged and filtered; `POST /api/v1/events`: an
//!   application posts events (token with the right `events`). See `events`.
//! - `GET /api/v1/reload`: the last configuration reload (taken or refused) and the last one
//!   taken; `POST /api/v1/reload`: reload the configuration file now, answering with the
//!   outcome. Both need a token with the right `reload`.
//! - `GET /metrics`: Prometheus text format. `GET /healthz`: 200 while the decision
//!   loop keeps its pulse, 503 when it is late or fenced.

#![warn(clippy::too_many_lines)]

pub mod auth;
pub mod config;
pub mod connections;
mod events;
pub mod tls;
pub use events::EventPage;
pub mod metrics;
mod web;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use duet_core::api::{
    AgentInfo, ApiError, CommandAccepted, History, Overview, PairInfo, Reload, Reloads, Session,
    Status,
};
use duet_core::{Command, Mode, OperatorCommand};
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use duet_events::EventLog;
use duet_kernel::Kernel;
use duet_vip::Vips;

use crate::auth::Denied;
use crate::config::{ApiConfig, Right, WebConfig};

/// What the API serves from: the kernel's status and commands, the event log, the virtual
/// IPs, and its own settings. Each handler takes only the part it needs (axum's `FromRef`).
#[derive(Clone)]
pub struct Api {
    pub kernel: Arc<Kernel>,
    pub events: Arc<EventLog>,
    pub vips: Arc<Vips>,
    pub config: Arc<ApiConfig>,
    pub web: WebConfig,
    /// The API's connection counters (`/metrics`).
    pub connections: Arc<connections::ConnectionStats>,
    /// More of `/metrics` from capabilities beside the kernel (the plugins'), in Prometheus
    /// text format, already labelled with the agent.
    pub more_metrics: Vec<Arc<dyn Fn() -> String + Send + Sync>>,
    /// Reloads the configuration file; none when the agent was not started from one.
    pub reloader: Option<Arc<dyn Reloader>>,
}

/// Reloads the agent's configuration file: its owner reads and validates the file, and hands
/// what changed to the capabilities that take it live.
pub trait Reloader: Send + Sync {
    /// Reloads now (`by`: who asked); the outcome.
    fn reload(
        &self,
        by: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reload> + Send + '_>>;
    /// The reloads so far.
    fn reloads(&self) -> Reloads;
}

impl FromRef<Api> for Arc<Kernel> {
    fn from_ref(api: &Api) -> Self {
        api.kernel.clone()
    }
}

impl FromRef<Api> for Arc<EventLog> {
    fn from_ref(api: &Api) -> Self {
        api.events.clone()
    }
}

impl FromRef<Api> for Arc<ApiConfig> {
    fn from_ref(api: &Api) -> Self {
        api.config.clone()
    }
}

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
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
        .route("/api/v1/reload", get(reloads).post(reload))
        .route(
            "/api/v1/events",
            get(crate::events::list).post(crate::events::post),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(crate::web::routes())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            api.config.limits.header_timeout,
        ))
        .layer(axum::middleware::map_response_with_state(
            api.web.buddy.map(|b| format!("http://{b}")),
            crate::web::allow_buddy,
        ))
        .with_state(api.clone());
    let addr = listener.local_addr().ok();
    // The certificate watcher ends with the API.
    let watch_stop = shutdown.child_token();
    let mut watcher = None;
    let tls = match &api.config.tls {
        None => {
            if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                tracing::warn!(
                    api = %addr,
                    "the API listens beyond loopback without TLS: tokens and the pair's status cross the network in clear; set [api.tls]"
                );
            }
            None
        }
        Some(files) => {
            let reloading = tls::Reloading::new(files.clone())?;
            let acceptor = reloading.acceptor()?;
            watcher = Some(tokio::spawn(reloading.watch(watch_stop.clone())));
            Some(acceptor)
        }
    };
    connections::serve(
        listener,
        app,
        api.config.limits,
        tls,
        api.connections.clone(),
        shutdown,
    )
    .await;
    watch_stop.cancel();
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    Ok(())
}

/// 200 while the decision loop keeps its pulse; 503 once it is late (silent past the fence
/// bound) or the agent is fenced.
async fn healthz(State(kernel): State<Arc<Kernel>>) -> Response {
    let pulse = kernel.pulse();
    if pulse.late() {
        let text = format!(
            "late: the decision loop completed no tick for {} ms\n",
            pulse.silence().as_millis()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    if let Some(stall) = kernel.fenced() {
        let text = format!("fenced: the decision loop stalled for {stall} ms\n");
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    "ok".into_response()
}

async fn status(State(kernel): State<Arc<Kernel>>) -> Json<Overview> {
    Json(overview(&kernel, kernel.status()))
}

/// `status` with its story: the age of the buddy's report when it was made, and the decision
/// that set this agent on its way to its state (from the kernel's history).
fn overview(kernel: &Kernel, status: Status) -> Overview {
    let made = status.pair.as_ref().map(|p| p.local.generated_at);
    let buddy_report_age_ms = kernel
        .buddy_report()
        .zip(made)
        .map(|((_, received_at), made)| made.saturating_sub(received_at));
    let history = kernel.history(HISTORY_KEPT);
    Overview {
        cause: Overview::cause(&history).cloned(),
        status,
        buddy_report_age_ms,
        witness: kernel.witness_lease(),
    }
}

/// The most history entries the kernel keeps and the API hands out.
const HISTORY_KEPT: usize = 1_000;

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(kernel): State<Arc<Kernel>>,
    Query(q): Query<HistoryQuery>,
) -> Json<History> {
    let limit = q.limit.unwrap_or(100).min(HISTORY_KEPT);
    Json(History {
        entries: kernel.history(limit),
    })
}

/// One `status` event now, then one per change; timestamps alone are not a change.
async fn stream(
    State(kernel): State<Arc<Kernel>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = kernel.subscribe();
    let shutdown = kernel.stop().clone();
    let events = futures_util::stream::unfold(
        (rx, None::<String>, shutdown),
        move |(mut rx, last, shutdown)| {
            let kernel = kernel.clone();
            async move {
                loop {
                    // The `Arc` only, under the channel's lock; the copy after.
                    let status = rx.borrow_and_update().clone();
                    let status = Status::clone(&status);
                    let key = fingerprint(&status);
                    if last.as_ref() != Some(&key) {
                        let data =
                            serde_json::to_string(&overview(&kernel, status)).unwrap_or_default();
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

async fn pair(State(api): State<Api>) -> Json<PairInfo> {
    let config = api.kernel.config();
    let mode = api
        .kernel
        .status()
        .decision
        .as_ref()
        .map_or(config.agent.mode, |d| d.state.mode);
    // The first call loads libpcap once; later calls read the remembered answer.
    let packet_capture = tokio::task::spawn_blocking(duet_vip::pcap::detected)
        .await
        .unwrap_or_else(|e| duet_core::api::PacketCapture {
            found: false,
            library: None,
            version: None,
            message: Some(duet_vip::pcap::NOT_DETECTED.to_string()),
            detail: Some(format!("the detection failed: {e}")),
        });
    let buddy_addresses = config.buddy_addresses();
    Json(PairInfo {
        local: AgentInfo {
            name: config.agent.name.clone(),
            addresses: vec![api.config.listen.to_string()],
            mode: Some(mode),
        },
        buddy: AgentInfo {
            name: config.buddy.name.clone(),
            addresses: buddy_addresses,
            // As the buddy last reported it.
            mode: api.kernel.buddy_report().map(|(report, _)| report.mode),
        },
        virtual_ip: api.vips.describe(),
        packet_capture,
        refresh_ms: duet_base::millis(api.web.refresh),
        buddy_url: api.web.buddy.map(|b| format!("http://{b}")),
    })
}

/// Who the presented token is: the web UI signs in with it before offering commands.
async fn session(State(config): State<Arc<ApiConfig>>, headers: HeaderMap) -> Response {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth::identify(&config.tokens, header) {
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
                        Right::Reload => "reload",
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

/// The reloads so far, for a token with the right `reload`: a refusal quotes the file (a
/// syntax error its line, which may hold a secret).
async fn reloads(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(response) = authorize(&api, &headers, Right::Reload, "reloads") {
        return *response;
    }
    match &api.reloader {
        Some(reloader) => Json(reloader.reloads()).into_response(),
        None => not_reloadable(),
    }
}

/// Reloads the configuration file: 200 with what changed, 422 with the error when the file
/// was refused (the running configuration is kept).
async fn reload(State(api): State<Api>, headers: HeaderMap) -> Response {
    let by = match authorize(&api, &headers, Right::Reload, "reload") {
        Ok(by) => by,
        Err(response) => return *response,
    };
    let Some(reloader) = api.reloader.clone() else {
        return not_reloadable();
    };
    // A task of its own: a client that hangs up does not cut a reload short.
    let outcome = match tokio::spawn(async move { reloader.reload(by).await }).await {
        Ok(outcome) => outcome,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the reload failed: {e}"),
            );
        }
    };
    let status = if outcome.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (status, Json(outcome)).into_response()
}

fn not_reloadable() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this agent was not started from a configuration file: nothing to reload".into(),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&api.kernel, &api.connections)
            + &api.more_metrics.iter().map(|m| m()).collect::<String>(),
    )
        .into_response()
}

async fn switch(State(api): State<Api>, headers: HeaderMap) -> Response {
    crate::events::drain_before_switch(&api, &headers).await;
    command(&api, &headers, Right::Switch, "switch", |_| {
        Ok(Order::Command(Command::Switch))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForceOnlineBody {
    /// Go online without the witness lease (the operator vouches that the buddy is not Online).
    #[serde(default)]
    without_witness: bool,
}

async fn force_online(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    command(
        &api,
        &headers,
        Right::ForceOnline,
        "force_online",
        move |()| {
            // No body (or `{}`): the plain force online, which needs the witness lease.
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Order::Command(Command::ForceOnline));
            }
            match serde_json::from_slice::<ForceOnlineBody>(&body) {
                Ok(ForceOnlineBody {
                    without_witness: true,
                }) => Ok(Order::WithoutWitness),
                Ok(_) => Ok(Order::Command(Command::ForceOnline)),
                Err(e) => Err(format!(
                    "expected no body or {{\"without_witness\": true | false}}: {e}"
                )),
            }
        },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: Mode,
}

async fn mode(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    command(&api, &headers, Right::Mode, "mode", move |()| {
        serde_json::from_slice::<ModeBody>(&body)
            .map(|b| Order::Command(Command::SetMode(b.mode)))
            .map_err(|e| format!("expected {{\"mode\": \"automatic\" | \"manual\"}}: {e}"))
    })
    .await
}

/// What an operator asks of the next tick.
enum Order {
    Command(Command),
    /// Force online without the witness lease.
    WithoutWitness,
}

/// Authorizes first (so nothing about the body is looked at without a valid token), then
/// queues the command for the next tick.
async fn command(
    api: &Api,
    headers: &HeaderMap,
    right: Right,
    name: &str,
    parse: impl FnOnce(()) -> Result<Order, String>,
) -> Response {
    let by = match authorize(api, headers, right, name) {
        Ok(by) => by,
        Err(response) => return *response,
    };
    let (name, queued) = match parse(()) {
        Ok(Order::Command(command)) => (
            name,
            api.kernel
                .command(OperatorCommand {
                    by: by.clone(),
                    command,
                })
                .map_err(|_| {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many commands waiting for the next tick; try again",
                    )
                }),
        ),
        Ok(Order::WithoutWitness) => (
            "force_online_without_witness",
            api.kernel
                .force_online_without_witness(by.clone())
                .map_err(|why| (StatusCode::CONFLICT, why)),
        ),
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match queued {
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
        Err((status, why)) => error(status, why.into()),
    }
}

/// Authorizes `right` for a request (`what`, for the log): the token's name, or the refusal
/// to send: 401 with `WWW-Authenticate: Bearer` without a valid token, 403 when the token lacks
/// the right.
pub(crate) fn authorize(
    api: &Api,
    headers: &HeaderMap,
    right: Right,
    what: &str,
) -> Result<String, Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth::authorize(&api.config.tokens, header, right).map_err(|denied| {
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
