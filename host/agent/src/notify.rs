//! systemd's notify protocol (sd_notify(3)), written to `$NOTIFY_SOCKET` directly: READY once
//! the agent took its first decision, STATUS with its state and LED, STOPPING while it hands
//! over on shutdown, and WATCHDOG pings fed only by the decision loop's pulse — a loop that
//! stops ticking stops the pings, and systemd restarts the agent after `WatchdogSec` (longer
//! than the fence bound: the agent has fenced itself long before, see docs/decisions.md).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use duet_base::pulse::Pulse;
use duet_core::Led;
use duet_kernel::Kernel;
use tokio_util::sync::CancellationToken;

/// Where the notifications go and how often systemd wants the watchdog fed.
pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// `WATCHDOG_USEC` when it is meant for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives a `Type=notify` service; None when there is no
    /// `NOTIFY_SOCKET` (not run by systemd) or it cannot be used (said once in the log).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let to = match address(path.as_encoded_bytes()) {
            Ok(to) => to,
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is not usable: no notifications to systemd");
                return None;
            }
        };
        let socket = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a socket for systemd's notifications");
                return None;
            }
        };
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            to,
            watchdog,
        })
    }

    /// Sends one notification (lines `KEY=value`).
    pub fn send(&self, text: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(text.as_bytes(), &self.to)
            .map(drop)
    }

    /// How often the loop looks: a quarter of the watchdog period (systemd's advice is half),
    /// at most every second, so READY and STATUS follow the agent closely.
    fn period(&self) -> Duration {
        self.watchdog
            .map_or(Duration::from_secs(1), |w| w / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// A path, or `@name` for Linux's abstract namespace.
fn address(path: &[u8]) -> io::Result<SocketAddr> {
    match path.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name)
        }
        None => {
            use std::os::unix::ffi::OsStrExt as _;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))
        }
    }
}

/// What the agent says it is doing: "Online, LED green".
fn status_line(kernel: &Kernel) -> Option<String> {
    let status = kernel.status();
    let state = status.decision.as_ref()?.state.state;
    let led = status
        .pair
        .as_ref()
        .map_or("unknown", |p| match p.local.led {
            Led::Green => "green",
            Led::Red => "red",
            Led::Transparent => "transparent",
        });
    Some(format!("{}, LED {led}", state.label()))
}

/// Runs the notifications on an OS thread of their own until the kernel stops. `shutdown`
/// is the request to stop (the handover runs after it); the kernel's stop token ends it.
pub fn spawn(
    notifier: Notifier,
    kernel: Arc<Kernel>,
    pulse: Arc<Pulse>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("duet-notify".into())
        .spawn(move || run(&notifier, &kernel, &pulse, &shutdown))
        .map(drop)
}

fn run(notifier: &Notifier, kernel: &Kernel, pulse: &Pulse, shutdown: &CancellationToken) {
    let send = |text: &str| {
        if let Err(e) = notifier.send(text) {
            tracing::debug!(error = %e, "a notification to systemd was not sent");
        }
    };
    let mut said: Option<String> = None;
    let mut ready = false;
    let mut stopping = false;
    loop {
        let line = status_line(kernel);
        if shutdown.is_cancelled() || kernel.stop().is_cancelled() {
            if !stopping {
                // Online when the stop was asked (the handover may have begun since).
                let held = [line.as_deref(), said.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|l| l.starts_with("Online") || l.starts_with("Going offline"));
                let doing = if held {
                    format!("Stopping: handing over to {}", kernel.config().buddy.name)
                } else {
                    "Stopping".to_string()
                };
                send(&format!("STOPPING=1\nSTATUS={doing}"));
                stopping = true;
            }
        } else if let Some(line) = line
            && said.as_ref() != Some(&line)
        {
            // The first decision taken: the agent knows its state, the service is ready.
            let text = if ready {
                format!("STATUS={line}")
            } else {
                format!("READY=1\nSTATUS={line}")
            };
            send(&text);
            ready = true;
            said = Some(line);
        }
        // Fed only while the decision loop keeps its pulse: a stuck loop starves systemd's
        // watchdog, which restarts the agent.
        if ready && notifier.watchdog.is_some() && !pulse.late() {
            send("WATCHDOG=1");
        }
        if kernel.stop().is_cancelled() {
            return;
        }
        std::thread::sleep(notifier.period());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_addresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let to = address(path.as_os_str().as_encoded_bytes()).expect("a path");
        let notifier = Notifier {
            socket: UnixDatagram::unbound().expect("socket"),
            to,
            watchdog: Some(Duration::from_secs(2)),
        };
        notifier.send("READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
        assert_eq!(notifier.period(), Duration::from_millis(500));
        let name = format!("duet-notify-test-{}", std::process::id());
        let addr = address(format!("@{name}").as_bytes()).expect("an abstract name");
        use std::os::linux::net::SocketAddrExt as _;
        assert_eq!(addr.as_abstract_name(), Some(name.as_bytes()));
    }
}
