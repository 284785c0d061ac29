//! The event log's HTTP routes.
//!
//! - `GET /api/v1/events?limit&offset&origin&severity&code&source&since&until&order`: a page
//!   of the event log (newest first unless `order=asc`) and how many events match in all.
//! - `POST /api/v1/events` (token with the right `events`): `{"events": [{"severity",
//!   "code", "message", "at"?}]}`, at most 10,000; answered once they are committed (201,
//!   with their ids) or, while the database is down, written to the durable spool (202).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::config::Right;
use crate::{Api, authorize, error};
use duet_events::{Appended, Event, MAX_CODE, MAX_MESSAGE, NewEvent, Severity, store};

/// Events one POST may carry.
pub const MAX_POST: usize = 10_000;
/// The largest page.
pub const MAX_PAGE: u64 = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<u64>,
    offset: Option<u64>,
    origin: Option<String>,
    severity: Option<String>,
    code: Option<String>,
    source: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    order: Option<String>,
}

/// A page of the event log.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Events matching the filters in all.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// What a POST stored.
#[derive(Debug, Serialize, Deserialize)]
pub struct Posted {
    pub accepted: usize,
    /// `stored` (committed; `ids` given) or `spooled` (the database is down).
    pub outcome: String,
    pub ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    events: Vec<PostEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostEvent {
    severity: Severity,
    code: String,
    message: String,
    at: Option<u64>,
}

pub(crate) async fn list(
    State(events): State<Arc<duet_events::EventLog>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("order: \"{other}\" is not asc or desc"),
            );
        }
    };
    if let Some(s) = &q.severity
        && let Err(why) = s.parse::<Severity>()
    {
        return error(StatusCode::BAD_REQUEST, format!("severity: {why}"));
    }
    let Some(store) = events.store() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the event log's database is not available: {}",
                database_reason(&events)
            ),
        );
    };
    let limit = q.limit.unwrap_or(100).min(MAX_PAGE);
    let offset = q.offset.unwrap_or(0);
    let query = store::Query {
        origin: q.origin,
        severity: q.severity,
        code: q.code,
        source: q.source,
        since: q.since,
        until: q.until,
        limit,
        offset,
        ascending,
    };
    match store.query(&query).await {
        Ok((events, total)) => Json(EventPage {
            events,
            total,
            limit,
            offset,
        })
        .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the event log's database failed: {e:#}"),
        ),
    }
}

fn database_reason(events: &duet_events::EventLog) -> String {
    match events.database_check() {
        duet_core::Check::Failing(why) => why,
        _ => "not connected".into(),
    }
}

pub(crate) async fn post(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let by = match authorize(&api, &headers, Right::Events, "post events") {
        Ok(by) => by,
        Err(response) => return *response,
    };
    let body: PostBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"events\": [{{\"severity\": \"info\"|\"warning\"|\"error\"|\"critical\", \"code\": \"...\", \"message\": \"...\", \"at\"?: ms}}]}}: {e}"
                ),
            );
        }
    };
    if body.events.is_empty() || body.events.len() > MAX_POST {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "events: {} given; post 1 to {MAX_POST} at once",
                body.events.len()
            ),
        );
    }
    let now = api.kernel.clock().now();
    let mut events = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.into_iter().enumerate() {
        if e.code.is_empty() || e.code.len() > MAX_CODE {
            return error(
                StatusCode::BAD_REQUEST,
                format!("events[{i}].code: 1 to {MAX_CODE} bytes"),
            );
        }
        if e.message.len() > MAX_MESSAGE {
            return error(
                StatusCode::BAD_REQUEST,
                format!("events[{i}].message: at most {MAX_MESSAGE} bytes"),
            );
        }
        let at = e.at.unwrap_or(now);
        if let Some(why) = duet_events::time_problem(at, now) {
            return error(StatusCode::BAD_REQUEST, format!("events[{i}].at: {why}"));
        }
        events.push(NewEvent {
            at,
            severity: e.severity,
            source: by.clone(),
            code: e.code,
            message: e.message,
        });
    }
    let accepted = events.len();
    match api.events.append(events).await {
        Ok(Appended::Stored(ids)) => (
            StatusCode::CREATED,
            Json(Posted {
                accepted,
                outcome: "stored".into(),
                ids,
            }),
        )
            .into_response(),
        Ok(Appended::Spooled) => (
            StatusCode::ACCEPTED,
            Json(Posted {
                accepted,
                outcome: "spooled".into(),
                ids: Vec::new(),
            }),
        )
            .into_response(),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// A manual switch on the Online agent first waits (at most `database.switch_drain_timeout`)
/// for the outbox to drain, so the buddy holds every event when it takes over. Only for a
/// token that may switch; the command itself is then checked as usual.
pub(crate) async fn drain_before_switch(api: &Api, headers: &HeaderMap) {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth::authorize(&api.config.tokens, token, Right::Switch).is_err() {
        return;
    }
    let online = api
        .kernel
        .status()
        .decision
        .as_ref()
        .is_some_and(|d| d.state.state == duet_core::FailoverState::Online);
    if !online {
        return;
    }
    let limit = api.events.switch_drain_timeout();
    let left = api.events.drained(limit).await;
    if left > 0 {
        tracing::warn!(
            waiting = left,
            "switch: the event outbox did not drain within {}; switching anyway",
            humantime::format_duration(limit)
        );
    }
}
