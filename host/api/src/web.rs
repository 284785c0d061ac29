//! The web UI's files, built from `web/` by the build script and embedded: the host serves its
//! own UI, with nothing fetched from the internet. Each file is embedded three times, plain,
//! gzip and brotli (compressed at build time), and served in the best encoding the browser
//! accepts, with an ETag. The page names the other files with their content's hash (`?v=`):
//! those are cached for a year, the page itself is revalidated, so a repeat load transfers
//! only the page's `304 Not Modified`.

use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Api;

/// One file of the UI, as the build script made it.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    /// The start of the content's SHA-256: its ETag, and the `?v=` the page names it by.
    version: &'static str,
    identity: &'static [u8],
    gzip: &'static [u8],
    brotli: &'static [u8],
}

/// Every file of the UI (`$OUT_DIR/assets.rs`, written by the build script).
static ASSETS: [Asset; 4] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// How long a browser keeps a file named by its content's hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub(crate) fn routes() -> axum::Router<Api> {
    let mut router = axum::Router::new();
    for asset in &ASSETS {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap, query: RawQuery| async move {
                file(asset, &headers, query.0.as_deref())
            }),
        );
    }
    router
}

/// The file in the best encoding `headers` accept; `304` when the browser holds it already.
fn file(asset: &'static Asset, headers: &HeaderMap, query: Option<&str>) -> Response {
    let accepts = |coding: &str| {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| {
                let mut parts = c.split(';');
                parts.next().is_some_and(|name| name.trim() == coding)
                    && parts.all(|p| p.trim().replace(' ', "") != "q=0")
            })
    };
    let (bytes, encoding) = if accepts("br") {
        (asset.brotli, Some("br"))
    } else if accepts("gzip") {
        (asset.gzip, Some("gzip"))
    } else {
        (asset.identity, None)
    };
    let etag = format!("\"{}{}\"", asset.version, encoding.map_or("", |e| &e[..1]));
    let cache = if query == Some(&format!("v={}", asset.version)) {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim().trim_start_matches("W/") == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(tag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, tag);
    }
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

/// Lets the buddy's page (its origin, `http://<web.buddy>`, and no other) read this API from
/// the browser: the page of an agent that died shows the pair from here.
pub(crate) async fn allow_buddy(
    axum::extract::State(buddy): axum::extract::State<Option<String>>,
    request_headers: HeaderMap,
    mut response: Response,
) -> Response {
    let origin = request_headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if let (Some(buddy), Some(origin)) = (buddy, origin)
        && buddy == origin
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, accept: &str, if_none_match: Option<&str>) -> Response {
        let asset = ASSETS.iter().find(|a| a.path == path).expect("an asset");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
        }
        let query = format!("v={}", asset.version);
        file(asset, &headers, (path != "/").then_some(query.as_str()))
    }

    fn header(r: &Response, name: header::HeaderName) -> &str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn files_are_served_compressed_with_an_etag_and_revalidated() {
        let wasm = get("/duet-web_bg.wasm", "gzip, deflate, br", None);
        assert_eq!(header(&wasm, header::CONTENT_ENCODING), "br");
        assert_eq!(header(&wasm, header::CACHE_CONTROL), IMMUTABLE);
        let gz = get("/duet-web_bg.wasm", "gzip", None);
        assert_eq!(header(&gz, header::CONTENT_ENCODING), "gzip");
        let plain = get("/duet-web_bg.wasm", "identity, br;q=0", None);
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let page = get("/", "br", None);
        assert_eq!(header(&page, header::CACHE_CONTROL), "no-cache");
        let tag = header(&page, header::ETAG).to_string();
        assert!(tag.starts_with('"') && tag.len() > 10, "{tag}");
        assert_eq!(
            get("/", "br", Some(&tag)).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(get("/", "gzip", Some(&tag)).status(), StatusCode::OK);
        let version = ASSETS[2].version;
        assert!(
            std::str::from_utf8(ASSETS[3].identity)
                .is_ok_and(|page| page.contains(&format!("/duet-web_bg.wasm?v={version}"))),
            "the page names the bundle by its hash"
        );
    }
}
