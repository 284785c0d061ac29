//! The `[witness]` section: where the witness is and how the lease is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duet_base::config::Errors;
use serde::Deserialize;

/// The `[witness]` section, validated.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The cluster's nodes, e.g. `nats://10.0.0.1:4222`: the client fails over between them.
    pub servers: Vec<String>,
    /// The pair's NATS user (per-pair permissions: see docs/witness.md).
    pub user: Option<String>,
    /// A file holding the user's password (read at start; never in the configuration).
    pub password_file: Option<PathBuf>,
    /// The key-value bucket (replicated over three nodes; created when missing and allowed).
    pub bucket: String,
    /// The pair's key in the bucket: both agents of a pair name the same key.
    pub key: String,
    /// How long a lease lasts after the send time of its last acknowledged renewal.
    pub lease: Duration,
    /// How often the holder renews.
    pub renew: Duration,
    /// Taken off the holder's deadline: step-down time and the clock-rate margin.
    pub margin: Duration,
    /// How long one operation (connect, read, write) may take.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    servers: Vec<String>,
    user: Option<String>,
    password_file: Option<PathBuf>,
    bucket: Option<String>,
    key: String,
    lease: Option<String>,
    renew: Option<String>,
    margin: Option<String>,
    timeout: Option<String>,
}

/// The defaults (docs/witness.md gives the reasoning).
pub const LEASE: Duration = Duration::from_secs(6);
pub const RENEW: Duration = Duration::from_secs(1);
pub const MARGIN: Duration = Duration::from_secs(1);
pub const TIMEOUT: Duration = Duration::from_millis(800);

/// A token of a NATS subject (bucket and key names end up in subjects).
fn token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Validates `[witness]`, pushing every mistake onto `errors`. `vip_lease` is the longest
/// virtual IP kernel lease plus its renewal (none without a VIP): the witness lease must
/// outlast it, or a killed holder's address could still answer when the buddy claims.
pub fn validate(
    raw: RawWitness,
    base: &Path,
    vip_lease: Option<Duration>,
    errors: &mut Errors,
) -> WitnessConfig {
    let range = (Duration::from_millis(50), Duration::from_secs(600));
    let mut duration = |key: &str, value: Option<String>, default: Duration| {
        errors.duration(&format!("witness.{key}"), value.as_deref(), default, range)
    };
    let lease = duration("lease", raw.lease, LEASE);
    let renew = duration("renew", raw.renew, RENEW);
    let margin = duration("margin", raw.margin, MARGIN);
    let timeout = duration("timeout", raw.timeout, TIMEOUT);
    if raw.servers.is_empty() {
        errors.error(
            "witness.servers",
            "lists no server: name the cluster's nodes",
        );
    }
    for (i, s) in raw.servers.iter().enumerate() {
        if !(s.starts_with("nats://") || s.starts_with("tls://")) {
            errors.error(
                format!("witness.servers[{i}]"),
                format!("\"{s}\" is not a NATS URL such as \"nats://127.0.0.1:4222\""),
            );
        }
    }
    let bucket = raw.bucket.unwrap_or_else(|| "duet-witness".into());
    if !token(&bucket) {
        errors.error(
            "witness.bucket",
            format!("\"{bucket}\" is not a bucket name: letters, digits, '-' or '_'"),
        );
    }
    if !token(&raw.key) {
        errors.error(
            "witness.key",
            format!("\"{}\" is not a key: letters, digits, '-' or '_'", raw.key),
        );
    }
    if raw.user.is_some() != raw.password_file.is_some() {
        errors.error(
            "witness.user",
            "user and password_file go together: set both or neither",
        );
    }
    // Two renewals may fail before the deadline, and the margin leaves a renewal's worth.
    if renew.saturating_mul(3) > lease {
        errors.error(
            "witness.renew",
            format!(
                "{} is too long for witness.lease {}: at most a third of it",
                duet_base::config::fmt(renew),
                duet_base::config::fmt(lease)
            ),
        );
    }
    if margin.saturating_add(renew) >= lease {
        errors.error(
            "witness.margin",
            "witness.margin plus witness.renew must be shorter than witness.lease",
        );
    }
    if timeout >= renew {
        errors.error(
            "witness.timeout",
            "is not shorter than witness.renew: operations would overlap",
        );
    }
    if let Some(vip) = vip_lease
        && lease.saturating_sub(margin) <= vip
    {
        errors.error(
            "witness.lease",
            format!(
                "{} minus witness.margin does not outlast the virtual IP's kernel lease plus a renewal ({})",
                duet_base::config::fmt(lease),
                duet_base::config::fmt(vip)
            ),
        );
    }
    WitnessConfig {
        servers: raw.servers,
        user: raw.user,
        password_file: raw
            .password_file
            .map(|p| if p.is_absolute() { p } else { base.join(p) }),
        bucket,
        key: raw.key,
        lease,
        renew,
        margin,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &str) -> RawWitness {
        toml::from_str(&format!(
            "servers = [\"nats://127.0.0.1:4222\"]\nkey = \"pair-a\"\n{extra}"
        ))
        .expect("raw witness")
    }

    #[test]
    fn the_defaults_are_valid_and_bad_values_name_their_key() {
        let mut errors = Errors::new();
        let c = validate(
            raw(""),
            Path::new("/"),
            Some(Duration::from_millis(1250)),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(
            (c.lease, c.renew, c.bucket.as_str()),
            (LEASE, RENEW, "duet-witness")
        );
        let mut errors = Errors::new();
        validate(
            raw("lease = \"2s\"\nrenew = \"1s\"\nbucket = \"a.b\""),
            Path::new("/"),
            Some(Duration::from_secs(2)),
            &mut errors,
        );
        let text = format!("{:?}", errors.into_list());
        for key in [
            "witness.renew",
            "witness.margin",
            "witness.lease",
            "witness.bucket",
        ] {
            assert!(text.contains(key), "{key} not in {text}");
        }
    }
}
