//! The `[witness]` section: which lease to hold and how it is kept. Where the witness is (the
//! servers, the credentials, TLS) is the shared `[nats_connection]` (`duet-nats`).

use std::time::Duration;

use duet_base::config::Errors;
use serde::Deserialize;

/// The `[witness]` section, validated.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// The cluster's nodes and how to connect (`[nats_connection]`): the pair's NATS user has
    /// per-pair permissions (docs/witness.md).
    pub connection: duet_nats::Connection,
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

/// Validates `[witness]`, pushing every mistake onto `errors`. `connection` is the validated
/// `[nats_connection]` (none: the witness has no server, an error). `vip_lease` is the longest
/// virtual IP kernel lease plus its renewal (none without a VIP): the witness lease must
/// outlast it, or a killed holder's address could still answer when the buddy claims.
pub fn validate(
    raw: RawWitness,
    connection: Option<duet_nats::Connection>,
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
    let connection = connection.unwrap_or_else(|| {
        errors.error(
            "witness",
            "needs [nats_connection] with the witness cluster's servers",
        );
        duet_nats::Connection {
            servers: Vec::new(),
            user: None,
            password_file: None,
            tls: None,
        }
    });
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
        connection,
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
        toml::from_str(&format!("key = \"pair-a\"\n{extra}")).expect("raw witness")
    }

    fn connection() -> Option<duet_nats::Connection> {
        let mut errors = Errors::new();
        Some(duet_nats::Connection::from_url(
            "nats://127.0.0.1:4222".into(),
            "nats_connection.servers",
            &mut errors,
        ))
    }

    #[test]
    fn the_defaults_are_valid_and_bad_values_name_their_key() {
        let mut errors = Errors::new();
        let c = validate(
            raw(""),
            connection(),
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
            None,
            Some(Duration::from_secs(2)),
            &mut errors,
        );
        let text = format!("{:?}", errors.into_list());
        for key in [
            "witness.renew",
            "witness.margin",
            "witness.lease",
            "witness.bucket",
            "witness\"",
        ] {
            assert!(text.contains(key), "{key} not in {text}");
        }
    }
}
