//! file-age: `config.path` (a file inside a granted `read_dirs` directory) was modified within
//! `config.max_age_s` seconds: a backup, an export or a heartbeat file that must stay fresh.

use std::time::SystemTime;

use duet_probe_sdk::{Capability, Config, Description, Outcome, Probe, export_probe};

struct FileAge;

impl Probe for FileAge {
    fn describe() -> Description {
        Description::new("file-age", env!("CARGO_PKG_VERSION"), 10_000)
            .needs(Capability::ReadDir("*".into()))
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        let path = config.required_str("path")?;
        let max_age = config
            .u64("max_age_s")?
            .ok_or("config.max_age_s is missing")?;
        let modified = match std::fs::metadata(path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => return Ok(Outcome::failing("Missing", format!("{path}: {e}"))),
        };
        let age = SystemTime::now()
            .duration_since(modified)
            .map_or(0, |d| d.as_secs());
        let value = format!("{age} s old");
        let outcome = if age > max_age {
            Outcome::failing(
                value,
                format!("{path} was last modified {age} s ago, more than {max_age} s"),
            )
        } else {
            Outcome::ok(value)
        };
        Ok(outcome.metric("age_s", age as f64))
    }
}

export_probe!(FileAge);
