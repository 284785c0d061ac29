//! The one way a configuration section is validated: each crate reads its raw section (serde,
//! unknown keys refused) and checks it into an [`Errors`], which names the key path of every
//! mistake and never stops at the first. The crate that composes the agent's configuration
//! turns the collected errors into one [`ConfigErrors`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One configuration mistake and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Key path, e.g. `heartbeat[1].interval`.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// All the mistakes found in one file (validation does not stop at the first).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Collects the mistakes of every section. Each reading method records a mistake naming the
/// key and returns the default, so the rest of the file is still checked.
#[derive(Debug, Default)]
pub struct Errors {
    list: Vec<ConfigError>,
}

impl ConfigError {
    /// A mistake at `path`; the values the message repeats are cut and escaped
    /// ([`crate::text::message`]): a 10 MB value or an escape sequence is never printed back.
    pub fn new(path: impl Into<String>, message: impl AsRef<str>) -> Self {
        ConfigError {
            path: crate::text::value(&path.into()),
            message: crate::text::message(message.as_ref()),
        }
    }
}

impl Errors {
    pub fn new() -> Self {
        Errors::default()
    }

    /// Records a mistake at `path`.
    pub fn error(&mut self, path: impl Into<String>, message: impl AsRef<str>) {
        self.list.push(ConfigError::new(path, message));
    }

    /// Whether nothing was wrong so far.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every mistake recorded, in order.
    pub fn into_list(self) -> Vec<ConfigError> {
        self.list
    }

    /// The value when nothing was wrong, else every mistake.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.list))
        }
    }

    /// The one reading of a duration setting, for every section: "250ms", "5s", "2m", "30d"
    /// within `[min, max]` (`Duration::MAX`: no upper bound).
    pub fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Duration {
        let Some(text) = value else { return default };
        let message = match humantime::parse_duration(text) {
            Ok(d) if d >= min && d <= max => return d,
            Ok(_) if max == Duration::MAX => format!("{text} is too short: at least {}", fmt(min)),
            Ok(_) => format!(
                "{text} is out of range: expected between {} and {}",
                fmt(min),
                fmt(max)
            ),
            Err(e) => format!(
                "\"{text}\" is not a duration ({e}); write e.g. \"250ms\", \"5s\", \"2m\" or \"30d\""
            ),
        };
        self.error(path, message);
        default
    }

    /// A retention setting: a duration of at least a minute, or "forever" (`None`: keep all).
    pub fn retention(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        match value {
            None => default,
            Some("forever") => None,
            Some(_) => Some(self.duration(
                path,
                value,
                default.unwrap_or(Duration::MAX),
                (Duration::from_secs(60), Duration::MAX),
            )),
        }
    }

    /// A whole number within `range`, or the default when not set.
    pub fn range(
        &mut self,
        path: &str,
        value: Option<u32>,
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        match value {
            Some(n) if !range.contains(&n) => {
                self.error(
                    path,
                    format!(
                        "{n} is out of range: expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
            Some(n) => n,
            None => default,
        }
    }

    /// An address:port this agent listens on or connects to; `None` after recording the
    /// mistake. Port 0 is refused: a listener on it gets a port nobody can know, and a
    /// connection to it never succeeds.
    pub fn socket_address(&mut self, path: &str, value: &str, example: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.error(
                    path,
                    format!("\"{value}\" has port 0, which nothing can reach: give the port, such as \"{example}\""),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!("\"{value}\" is not an address:port such as \"{example}\""),
                );
                None
            }
        }
    }

    /// An optional source address that pins a path to one NIC.
    pub fn source(&mut self, path: &str, value: Option<&str>) -> Option<IpAddr> {
        value.and_then(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(path, format!("\"{s}\" is not an IP address"));
                None
            }
        })
    }

    /// A name (agent, buddy, token): 1 to 64 letters, digits, `-`, `_` or `.`.
    pub fn name(&mut self, path: &str, value: &str) {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            self.error(path, format!("\"{value}\" is not a valid name: 1 to 64 characters of letters, digits, '-', '_' or '.'"));
        }
    }
}

/// A duration in words, as the configuration writes it ("1s 500ms").
pub fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parses TOML text into a raw section type, naming the key of the first mistake (for the
/// crates' tests of their own sections).
pub fn parse_section<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigErrors> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            e.path().to_string(),
            e.inner().message(),
        )])
    })
}
