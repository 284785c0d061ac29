//! The web UI's files, built from `web/` by the build script and embedded: the host serves its
//! own UI, with nothing fetched from the internet.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Api;

macro_rules! asset {
    ($name:literal) => {
        include_bytes!(concat!(env!("DUET_WEB_DIR"), "/", $name)) as &[u8]
    };
}

/// Every file of the UI: (path, content type, bytes).
const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("/", "text/html; charset=utf-8", asset!("index.html")),
    ("/style.css", "text/css; charset=utf-8", asset!("style.css")),
    (
        "/duet-web.js",
        "text/javascript; charset=utf-8",
        asset!("duet-web.js"),
    ),
    (
        "/duet-web_bg.wasm",
        "application/wasm",
        asset!("duet-web_bg.wasm"),
    ),
];

pub(crate) fn routes() -> axum::Router<Api> {
    let mut router = axum::Router::new();
    for (path, content_type, bytes) in ASSETS {
        router = router.route(path, get(move || async move { file(content_type, bytes) }));
    }
    router
}

fn file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
