//! The API's sections of the configuration file: `[api]` (its address and named tokens) and
//! `[web]`. Raw (serde, unknown keys refused) then validated, each mistake naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_base::config::Errors;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where the API listens (`api.listen`, default [`DEFAULT_LISTEN`]: loopback only).
    pub listen: SocketAddr,
    /// HTTPS with these files (`[api.tls]`); none: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Named tokens for state-changing calls; none configured: those calls are refused.
    pub tokens: Vec<TokenConfig>,
    /// How many connections the API serves at once, and how long a client may take.
    pub limits: Limits,
}

/// The API's share of the agent's resources: whatever its clients do, the decision path, the
/// peer link and the plugins keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (`api.max_connections`); at run time also at most a quarter
    /// of the file descriptor limit. More are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A client must send a whole request header within this long of connecting or of its
    /// previous response (`api.header_timeout`): silent, idle and slow clients are closed.
    pub header_timeout: Duration,
}

/// `api.listen` when not set: loopback, so nothing is reachable from the network until the
/// operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7101";

/// The API's certificate chain and private key (PEM files), re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for changes (`api.tls.reload_interval`).
    pub reload_interval: Duration,
}

/// `api.max_connections` when not set: a few operators' browsers, `duet status` and a metrics
/// scraper need a few dozen.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A named API token: who, the SHA-256 of the token (never the token), and what it may do.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub sha256: [u8; 32],
    pub rights: Vec<Right>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// `POST /api/v1/commands/switch`.
    Switch,
    /// `POST /api/v1/commands/force-online`.
    ForceOnline,
    /// `POST /api/v1/commands/mode`.
    Mode,
    /// `POST /api/v1/events`: post events into the event log.
    Events,
    /// `POST /api/v1/reload`: reload the configuration file.
    Reload,
}

/// The web UI's settings.
#[derive(Debug, Clone, Copy)]
pub struct WebConfig {
    /// How often the UI refreshes on its own; changes are also pushed at once.
    pub refresh: Duration,
    /// The buddy's API address: the page of an agent that dies falls back to it, and the
    /// buddy's page (that origin, and no other) may read this API from the browser.
    pub buddy: Option<SocketAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: Option<String>,
    pub tls: Option<RawTls>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<RawToken>,
    pub max_connections: Option<u32>,
    pub header_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub reload_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    sha256: String,
    pub rights: Vec<Right>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    pub refresh: Option<String>,
    pub buddy: Option<String>,
}

/// Validates `[api]`; relative paths are taken from `base`. The certificate and key are
/// loaded once here, so a broken pair is refused naming its key.
pub fn validate(raw: &RawApi, base: &Path, errors: &mut Errors) -> ApiConfig {
    let listen = errors
        .socket_address(
            "api.listen",
            raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
            DEFAULT_LISTEN,
        )
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    let tls = raw.tls.as_ref().map(|t| {
        let files = TlsFiles {
            cert: base.join(&t.cert),
            key: base.join(&t.key),
            reload_interval: errors.duration(
                "api.tls.reload_interval",
                t.reload_interval.as_deref(),
                Duration::from_secs(5),
                (Duration::from_millis(100), Duration::from_secs(3600)),
            ),
        };
        if let Err(e) = crate::tls::load(&files) {
            errors.error(e.key(), e.to_string());
        }
        files
    });
    let mut tokens: Vec<TokenConfig> = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let at = |key: &str| format!("api.token[{i}].{key}");
        errors.name(&at("name"), &t.name);
        if tokens.iter().any(|o| o.name == t.name) {
            errors.error(
                at("name"),
                format!("\"{}\" is used by another token", t.name),
            );
        }
        let sha256 = decode_sha256(&t.sha256).unwrap_or_else(|| {
            errors.error(at("sha256"), "expected the 64 hex digits that `duet token new` prints (the SHA-256 of the token, never the token)");
            [0; 32]
        });
        if t.rights.is_empty() {
            errors.error(
                at("rights"),
                "give at least one of \"switch\", \"force_online\", \"mode\"",
            );
        }
        tokens.push(TokenConfig {
            name: t.name.clone(),
            sha256,
            rights: t.rights.clone(),
        });
    }
    let default = Limits::default();
    let limits = Limits {
        max_connections: errors.range(
            "api.max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            1..=65_536,
        ) as usize,
        header_timeout: errors.duration(
            "api.header_timeout",
            raw.header_timeout.as_deref(),
            default.header_timeout,
            (Duration::from_millis(100), Duration::from_secs(600)),
        ),
    };
    ApiConfig {
        listen,
        tls,
        tokens,
        limits,
    }
}

/// Validates `[web]`.
pub fn validate_web(raw: &RawWeb, errors: &mut Errors) -> WebConfig {
    let buddy = raw.buddy.as_deref().and_then(|b| {
        b.parse::<SocketAddr>()
            .map_err(|_| {
                errors.error(
                    "web.buddy",
                    format!(
                        "\"{b}\" is not the buddy's API address:port such as \"127.0.0.1:7102\""
                    ),
                );
            })
            .ok()
    });
    WebConfig {
        buddy,
        refresh: errors.duration(
            "web.refresh",
            raw.refresh.as_deref(),
            Duration::from_secs(60),
            (Duration::from_secs(1), Duration::from_secs(3600)),
        ),
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
