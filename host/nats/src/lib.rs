//! duet-nats: the one NATS connection section (`[nats_connection]`) that the NATS probe
//! (`duet-probes`) and the witness (`duet-witness`) share — the servers, the credentials, TLS —
//! validated with errors naming the key, and turned into async-nats connect options.
//!
//! The probe's older `[nats] url` still works alone (a deprecation warning at start): it stands
//! for `[nats_connection] servers = [url]` ([`Connection::from_url`]).

use std::path::{Path, PathBuf};

use duet_base::config::Errors;
use serde::Deserialize;

/// `[nats_connection]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The servers, e.g. `nats://10.0.0.11:4222` (`tls://` for TLS): the client fails over
    /// between them.
    pub servers: Vec<String>,
    /// The NATS user (the witness's per-pair permissions: docs/witness.md).
    pub user: Option<String>,
    /// A file holding the user's password (read at each connection; never in the configuration).
    pub password_file: Option<PathBuf>,
    /// TLS: none unless a `tls://` server or a `tls_*` key asks for it.
    pub tls: Option<Tls>,
}

/// TLS to the servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    /// The CA certificates (PEM) the servers' certificates must chain to; none: the system's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    servers: Vec<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

/// The section's name, the prefix of every key in its errors.
pub const SECTION: &str = "nats_connection";

/// A path relative to the configuration's folder made absolute.
fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// Whether `server` is a NATS URL (`nats://host:port` or `tls://host:port`) async-nats reads.
fn nats_url(server: &str) -> bool {
    (server.starts_with("nats://") || server.starts_with("tls://"))
        && server.parse::<async_nats::ServerAddr>().is_ok()
}

/// Validates `[nats_connection]`, pushing every mistake onto `errors` (keys named
/// `nats_connection.<key>`); files named must exist.
pub fn validate(raw: RawConnection, base: &Path, errors: &mut Errors) -> Connection {
    if raw.servers.is_empty() {
        errors.error(
            format!("{SECTION}.servers"),
            "lists no server: name at least one, e.g. \"nats://127.0.0.1:4222\"",
        );
    }
    for (i, s) in raw.servers.iter().enumerate() {
        if !nats_url(s) {
            errors.error(
                format!("{SECTION}.servers[{i}]"),
                format!(
                    "\"{}\" is not a NATS URL such as \"nats://127.0.0.1:4222\" or \"tls://host:4222\"",
                    duet_base::text::value(s)
                ),
            );
        }
    }
    if raw.user.is_some() != raw.password_file.is_some() {
        errors.error(
            format!("{SECTION}.user"),
            "user and password_file go together: set both or neither",
        );
    }
    if raw.tls_cert.is_some() != raw.tls_key.is_some() {
        errors.error(
            format!("{SECTION}.tls_cert"),
            "tls_cert and tls_key go together: set both or neither",
        );
    }
    let mut file = |key: &str, p: Option<PathBuf>| {
        let p = resolve(base, p?);
        if !p.is_file() {
            errors.error(
                format!("{SECTION}.{key}"),
                format!("{} is not a readable file", p.display()),
            );
        }
        Some(p)
    };
    let password_file = file("password_file", raw.password_file);
    let ca = file("tls_ca", raw.tls_ca);
    let cert = file("tls_cert", raw.tls_cert);
    let key = file("tls_key", raw.tls_key);
    let wants_tls =
        ca.is_some() || cert.is_some() || raw.servers.iter().any(|s| s.starts_with("tls://"));
    Connection {
        servers: raw.servers,
        user: raw.user,
        password_file,
        tls: wants_tls.then(|| Tls {
            ca,
            cert: cert.zip(key),
        }),
    }
}

impl Connection {
    /// The probe's deprecated `[nats] url`: the same as `servers = [url]`, no credentials.
    /// `key` names it in the error when it is not a NATS URL.
    pub fn from_url(url: String, key: &str, errors: &mut Errors) -> Connection {
        if !nats_url(&url) {
            errors.error(
                key,
                format!(
                    "\"{}\" is not a NATS URL such as \"nats://127.0.0.1:4222\"",
                    duet_base::text::value(&url)
                ),
            );
        }
        let tls = url.starts_with("tls://").then(Tls::default);
        Connection {
            servers: vec![url],
            user: None,
            password_file: None,
            tls,
        }
    }

    /// The servers as a log line or a row's reason names them.
    pub fn describe(&self) -> String {
        self.servers.join(", ")
    }

    /// The servers, parsed (validation checked each).
    pub fn addresses(&self) -> Vec<async_nats::ServerAddr> {
        self.servers.iter().filter_map(|s| s.parse().ok()).collect()
    }

    /// Connect options with the credentials and TLS applied; the password file is read now.
    /// The error names the key and the file.
    pub fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        let mut options = async_nats::ConnectOptions::new();
        if let (Some(user), Some(file)) = (&self.user, &self.password_file) {
            let password = std::fs::read_to_string(file).map_err(|e| {
                format!(
                    "{SECTION}.password_file {}: cannot read it: {e}",
                    file.display()
                )
            })?;
            options = options.user_and_password(user.clone(), password.trim_end().to_string());
        }
        if let Some(tls) = &self.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca {
                options = options.add_root_certificates(ca.clone());
            }
            if let Some((cert, key)) = &tls.cert {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Connection, String) {
        let raw: RawConnection = toml::from_str(text).expect("raw section");
        let mut errors = Errors::new();
        let c = validate(raw, Path::new("/nonexistent-duet-dir"), &mut errors);
        (c, format!("{:?}", errors.into_list()))
    }

    #[test]
    fn a_valid_section_and_each_mistake_naming_its_key() {
        let (c, errors) = check("servers = [\"nats://127.0.0.1:4222\", \"nats://10.0.0.2:4222\"]");
        assert_eq!(errors, "[]");
        assert_eq!(c.tls, None);
        assert_eq!(c.describe(), "nats://127.0.0.1:4222, nats://10.0.0.2:4222");
        assert_eq!(c.addresses().len(), 2);
        let (_, errors) = check(
            "servers = [\"http://x\"]\nuser = \"u\"\ntls_cert = \"c.pem\"\ntls_ca = \"ca.pem\"",
        );
        for key in [
            "nats_connection.servers[0]",
            "nats_connection.user",
            "nats_connection.tls_cert",
            "nats_connection.tls_ca",
        ] {
            assert!(errors.contains(key), "{key} not in {errors}");
        }
        let (_, errors) = check("servers = []");
        assert!(errors.contains("nats_connection.servers"), "{errors}");
        let (c, errors) = check("servers = [\"tls://127.0.0.1:4222\"]");
        assert_eq!((errors.as_str(), c.tls), ("[]", Some(Tls::default())));
    }

    #[test]
    fn the_deprecated_url_is_one_server() {
        let mut errors = Errors::new();
        let c = Connection::from_url("nats://127.0.0.1:4222".into(), "nats.url", &mut errors);
        assert!(errors.is_empty());
        assert_eq!(c.servers, ["nats://127.0.0.1:4222"]);
        Connection::from_url("127.0.0.1:4222".into(), "nats.url", &mut errors);
        assert!(format!("{:?}", errors.into_list()).contains("nats.url"));
    }
}
