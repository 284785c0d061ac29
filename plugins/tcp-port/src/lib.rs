//! tcp-port: connects to `config.address` (`ip:port`, granted in `connect`) and, if
//! `config.banner` is set, checks that the server's first bytes contain it.

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use duet_probe_sdk::{Capability, Config, Description, Outcome, Probe, export_probe};

struct TcpPort;

impl Probe for TcpPort {
    fn describe() -> Description {
        Description::new("tcp-port", env!("CARGO_PKG_VERSION"), 5_000)
            .needs(Capability::Outbound("*".into()))
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        let address = config.required_str("address")?;
        let addr: SocketAddr = address
            .parse()
            .map_err(|_| format!("config.address: \"{address}\" is not ip:port"))?;
        let timeout = Duration::from_millis(config.u64("timeout_ms")?.unwrap_or(1_000));
        let started = Instant::now();
        let mut stream = match connect(addr, timeout) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Outcome::failing(
                    "Closed",
                    format!("connect to {addr}: {e}"),
                ));
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1_000.0;
        let Some(banner) = config.str("banner")? else {
            return Ok(Outcome::ok(format!("Open ({ms:.1} ms)")).metric("connect_ms", ms));
        };
        // Not every WASI socket supports timeouts: the host's deadline bounds the read anyway.
        let _ = stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 512];
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("reading the banner of {addr}: {e}"))?;
        let got = String::from_utf8_lossy(&buf[..n]);
        if got.contains(banner) {
            Ok(Outcome::ok(format!("Open, banner matches ({ms:.1} ms)")).metric("connect_ms", ms))
        } else {
            let shown: String = got.chars().take(60).collect();
            Ok(Outcome::failing(
                "Wrong banner",
                format!("{addr} answered {shown:?}, expected it to contain {banner:?}"),
            ))
        }
    }
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

export_probe!(TcpPort);
