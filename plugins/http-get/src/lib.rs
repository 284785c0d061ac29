//! http-get: `GET config.url` (plain `http://ip:port/path`, the address granted in `connect`)
//! and checks the status code (`expect_status`, default 200) and, if set, that the body
//! contains `body_contains`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use duet_probe_sdk::{Capability, Config, Description, Outcome, Probe, export_probe};

/// The most of a response read; enough for a health page.
const MAX_BODY: u64 = 64 * 1024;

struct HttpGet;

impl Probe for HttpGet {
    fn describe() -> Description {
        Description::new("http-get", env!("CARGO_PKG_VERSION"), 5_000)
            .needs(Capability::Outbound("*".into()))
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        let url = config.required_str("url")?;
        let (addr, path) = parse_url(url)?;
        let expect = config.u64("expect_status")?.unwrap_or(200);
        let timeout = Duration::from_millis(config.u64("timeout_ms")?.unwrap_or(2_000));
        let started = Instant::now();
        let mut stream = match connect(addr, timeout) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Outcome::failing(
                    "Failing",
                    format!("connect to {addr}: {e}"),
                ));
            }
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: duet-http-get\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("sending the request to {addr}: {e}"))?;
        let mut response = Vec::new();
        if let Err(e) = stream.take(MAX_BODY).read_to_end(&mut response) {
            return Ok(Outcome::failing(
                "Failing",
                format!("reading the answer of {url}: {e}"),
            ));
        }
        let ms = started.elapsed().as_secs_f64() * 1_000.0;
        let text = String::from_utf8_lossy(&response);
        let status: Option<u64> = text
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok());
        let Some(status) = status else {
            return Ok(Outcome::failing(
                "Not HTTP",
                format!("{url} did not answer with an HTTP status line"),
            ));
        };
        if status != expect {
            return Ok(Outcome::failing(
                format!("HTTP {status}"),
                format!("{url} answered {status}, expected {expect}"),
            )
            .metric("status", status as f64));
        }
        if let Some(want) = config.str("body_contains")? {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            if !body.contains(want) {
                return Ok(Outcome::failing(
                    format!("HTTP {status}"),
                    format!("the body of {url} does not contain {want:?}"),
                ));
            }
        }
        Ok(Outcome::ok(format!("HTTP {status} ({ms:.1} ms)"))
            .metric("status", status as f64)
            .metric("response_ms", ms))
    }
}

/// `http://ip:port/path` → the address and the path. No DNS in the sandbox: the host is an IP.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("config.url: \"{url}\" must start with http:// (no TLS)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = authority
        .parse::<SocketAddr>()
        .or_else(|_| format!("{authority}:80").parse::<SocketAddr>())
        .map_err(|_| {
            format!("config.url: \"{authority}\" is not ip[:port] (the sandbox has no DNS)")
        })?;
    Ok((addr, path))
}

/// Connects within `timeout`. On wasm32-wasip2, `connect_timeout` can return a stream whose
/// connect failed (refused): asking for the peer's address tells.
fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    if let Some(e) = stream.take_error().ok().flatten() {
        return Err(e);
    }
    stream.peer_addr()?;
    Ok(stream)
}

export_probe!(HttpGet);
