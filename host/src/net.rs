//! The network the agent's probes and peer link run over. [`Tcp`] is the real one (tokio TCP,
//! surge-ping ICMP); the deterministic simulation in the tests implements [`Network`] in memory,
//! so the very same heartbeat, peer-link and decision code runs there over paused time.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A byte stream to or from the buddy.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub type BoxStream = Box<dyn Stream>;

/// Where connections and pings go.
pub trait Network: Send + Sync + 'static {
    /// Connects to `target`, from `source` if given (pins the path to one NIC).
    fn connect(
        &self,
        source: Option<IpAddr>,
        target: SocketAddr,
    ) -> BoxFuture<'_, io::Result<BoxStream>>;

    /// Listens on `addr`.
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;

    /// An ICMP echo sender to `target`; fails when this process may not send ICMP.
    fn pinger(
        &self,
        source: Option<IpAddr>,
        target: IpAddr,
        ident: u16,
        timeout: Duration,
    ) -> BoxFuture<'_, io::Result<Box<dyn Pinger>>>;
}

/// Accepts connections.
pub trait Listener: Send {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
}

/// Sends ICMP echo requests to one target.
pub trait Pinger: Send {
    /// One echo request; its round-trip time, or why no reply came.
    fn ping(&mut self, seq: u16) -> BoxFuture<'_, Result<Duration, PingError>>;
}

/// Why an echo request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingError {
    /// No reply within the timeout.
    Timeout,
    /// Any other failure (unreachable network, socket error).
    Other(String),
}

/// The real network: tokio TCP and surge-ping.
pub struct Tcp;

impl Network for Tcp {
    fn connect(
        &self,
        source: Option<IpAddr>,
        target: SocketAddr,
    ) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let socket = if target.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(source) = source {
                socket.bind(SocketAddr::new(source, 0))?;
            }
            let stream = socket.connect(target).await?;
            // Heartbeats are small and latency matters more than throughput.
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(listener) as Box<dyn Listener>)
        })
    }

    fn pinger(
        &self,
        source: Option<IpAddr>,
        target: IpAddr,
        ident: u16,
        timeout: Duration,
    ) -> BoxFuture<'_, io::Result<Box<dyn Pinger>>> {
        Box::pin(async move {
            let mut config = surge_ping::Config::builder();
            if target.is_ipv6() {
                config = config.kind(surge_ping::ICMP::V6);
            }
            if let Some(source) = source {
                config = config.bind(SocketAddr::new(source, 0));
            }
            let client = surge_ping::Client::new(&config.build())?;
            let mut pinger = client
                .pinger(target, surge_ping::PingIdentifier(ident))
                .await;
            pinger.timeout(timeout);
            // The client owns the socket; a pinger only refers to it, so both are kept.
            Ok(Box::new(IcmpPinger {
                _client: client,
                pinger,
            }) as Box<dyn Pinger>)
        })
    }
}

impl Listener for tokio::net::TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, from) = tokio::net::TcpListener::accept(self).await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, from))
        })
    }
}

struct IcmpPinger {
    _client: surge_ping::Client,
    pinger: surge_ping::Pinger,
}

impl Pinger for IcmpPinger {
    fn ping(&mut self, seq: u16) -> BoxFuture<'_, Result<Duration, PingError>> {
        Box::pin(async move {
            match self
                .pinger
                .ping(surge_ping::PingSequence(seq), &[0u8; 16])
                .await
            {
                Ok((_, rtt)) => Ok(rtt),
                Err(surge_ping::SurgeError::Timeout { .. }) => Err(PingError::Timeout),
                Err(e) => Err(PingError::Other(e.to_string())),
            }
        })
    }
}
