//! disk-usage: free space of the filesystem holding `config.path` (inside a granted
//! `read_dirs` directory); failing below `min_free_percent` (default 10).

use duet_probe_sdk::host::disk_space_of;
use duet_probe_sdk::{Capability, Config, Description, Outcome, Probe, export_probe};

struct DiskUsage;

impl Probe for DiskUsage {
    fn describe() -> Description {
        Description::new("disk-usage", env!("CARGO_PKG_VERSION"), 30_000)
            .needs(Capability::ReadDir("*".into()))
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        let path = config.required_str("path")?;
        let min = config.u64("min_free_percent")?.unwrap_or(10);
        let space = disk_space_of(path)?;
        if space.total_bytes == 0 {
            return Err(format!("{path}: the filesystem reports a size of 0"));
        }
        let free = space.available_bytes as f64 * 100.0 / space.total_bytes as f64;
        let gib = space.available_bytes as f64 / (1u64 << 30) as f64;
        let value = format!("{free:.1}% free ({gib:.1} GiB)");
        let outcome = if free < min as f64 {
            Outcome::failing(value, format!("{path}: {free:.1}% free, below {min}%"))
        } else {
            Outcome::ok(value)
        };
        Ok(outcome
            .metric("free_percent", free)
            .metric("available_bytes", space.available_bytes as f64))
    }
}

export_probe!(DiskUsage);
