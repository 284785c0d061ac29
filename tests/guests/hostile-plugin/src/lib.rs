//! A hostile probe plugin for tests. It declares every capability (`*`), so only the operator's
//! grant stands between it and the machine, and misbehaves as `config.mode` says:
//! `loop` (never returns), `busy` (spins `config.busy_ms`, default 900, then answers: busy but
//! legal), `bomb` (allocates without bound), `trap` (panics), `flood` (returns a 1 MiB value),
//! `connect` (TCP to `config.target`), `read` (reads `config.path`), `sockets` (keeps opening
//! TCP connections to `config.target`, holding them), `disk` (asks `disk_space_of(config.path)`).

use std::io::Read as _;

use duet_probe_sdk::{Capability, Config, Description, Outcome, Probe, export_probe};

struct Hostile;

impl Probe for Hostile {
    fn describe() -> Description {
        Description::new("hostile", env!("CARGO_PKG_VERSION"), 1_000)
            .needs(Capability::Outbound("*".into()))
            .needs(Capability::ReadDir("*".into()))
            .needs(Capability::Env("*".into()))
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        match config.required_str("mode")? {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Busy but legal: spins for `busy_ms`, then answers (within its deadline).
            "busy" => {
                let ms = config.u64("busy_ms")?.unwrap_or(900);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                let mut n: u64 = 0;
                while std::time::Instant::now() < until {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                Ok(Outcome::ok(format!("busy {ms} ms")))
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            "flood" => Ok(Outcome::ok("x".repeat(1 << 20))),
            "connect" => {
                let target = config.required_str("target")?;
                match std::net::TcpStream::connect(target) {
                    Ok(mut s) => {
                        let mut buf = [0u8; 64];
                        let n = s.read(&mut buf).unwrap_or(0);
                        Ok(Outcome::ok(format!(
                            "connected to {target}: {}",
                            String::from_utf8_lossy(&buf[..n])
                        )))
                    }
                    Err(e) => Ok(Outcome::failing(
                        "Refused",
                        format!("connect to {target}: {e}"),
                    )),
                }
            }
            "read" => {
                let path = config.required_str("path")?;
                match std::fs::read_to_string(path) {
                    Ok(text) => Ok(Outcome::ok(format!("read {} bytes of {path}", text.len()))),
                    Err(e) => Ok(Outcome::failing("Unreadable", format!("read {path}: {e}"))),
                }
            }
            "sockets" => {
                let target = config.required_str("target")?;
                let mut held = Vec::new();
                loop {
                    match std::net::TcpStream::connect(target) {
                        Ok(s) => held.push(s),
                        Err(e) => {
                            return Ok(Outcome::failing(
                                "Refused",
                                format!("socket {} to {target}: {e}", held.len() + 1),
                            ));
                        }
                    }
                }
            }
            "disk" => {
                let path = config.required_str("path")?;
                match duet_probe_sdk::host::disk_space_of(path) {
                    Ok(d) => Ok(Outcome::ok(format!("{} bytes free", d.free_bytes))),
                    Err(e) => Ok(Outcome::failing("Refused", e)),
                }
            }
            other => Err(format!("config.mode: unknown mode {other:?}")),
        }
    }
}

export_probe!(Hostile);
