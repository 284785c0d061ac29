//! The network the agent's probes and peer link run over. [`Tcp`] is the real one (tokio TCP,
//! ICMP echo over our own raw or datagram ICMP sockets); the deterministic simulation in the
//! tests implements [`Network`] in memory, so the very same heartbeat, peer-link and decision
//! code runs there over paused time.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest};

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
    /// No reply within the timeout, and no recent ICMP error that explains why.
    Timeout,
    /// The request failed: an ICMP error came back instead of a reply, or it could not be sent.
    Other(PingFailure),
}

/// A failed echo request that is not a plain timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingFailure {
    /// An ICMP error (destination unreachable, time exceeded, ...) about our echo request.
    Icmp(IcmpError),
    /// The request could not be sent, or the socket failed.
    Io(String),
}

/// An ICMP error that quoted one of our echo requests: the request was dropped on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// What the error says.
    pub kind: IcmpErrorKind,
    /// Who sent it: a router on the path, or this host itself (when ARP or neighbour discovery
    /// for the next hop gave up, the kernel answers with its own address).
    pub from: IpAddr,
}

/// The ICMP error types that mean an echo request was dropped. Redirects and source quench do
/// not: the packet was forwarded anyway, so they are not errors here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// ICMPv4 destination unreachable (type 3), with its code (RFC 792, 1122, 1812).
    Unreachable { code: u8 },
    /// ICMPv6 destination unreachable (type 1), with its code (RFC 4443).
    Unreachable6 { code: u8 },
    /// ICMPv6 packet too big (type 2); ICMPv4 says "fragmentation needed" as unreachable code 4.
    PacketTooBig { mtu: u32 },
    /// Time exceeded (ICMPv4 type 11, ICMPv6 type 3): code 0 in transit, 1 in reassembly.
    TimeExceeded { code: u8 },
    /// Parameter problem (ICMPv4 type 12, ICMPv6 type 4), with its code.
    ParameterProblem { code: u8 },
}

impl IcmpErrorKind {
    /// The kind of an ICMP message of `icmp_type`/`code`, `None` when it is no error about a
    /// dropped request. `mtu` is only used for ICMPv6 packet too big.
    fn from_icmp(v6: bool, icmp_type: u8, code: u8, mtu: u32) -> Option<Self> {
        Some(match (v6, icmp_type) {
            (false, 3) => IcmpErrorKind::Unreachable { code },
            (false, 11) | (true, 3) => IcmpErrorKind::TimeExceeded { code },
            (false, 12) | (true, 4) => IcmpErrorKind::ParameterProblem { code },
            (true, 1) => IcmpErrorKind::Unreachable6 { code },
            (true, 2) => IcmpErrorKind::PacketTooBig { mtu },
            _ => return None,
        })
    }
}

impl fmt::Display for IcmpErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match *self {
            IcmpErrorKind::Unreachable { code } => match code {
                0 => "network unreachable",
                1 => "host unreachable",
                2 => "protocol unreachable",
                3 => "port unreachable",
                4 => "fragmentation needed but don't-fragment set",
                5 => "source route failed",
                6 => "destination network unknown",
                7 => "destination host unknown",
                8 => "source host isolated",
                9 => "network administratively prohibited",
                10 => "host administratively prohibited",
                11 => "network unreachable for type of service",
                12 => "host unreachable for type of service",
                13 => "communication administratively prohibited",
                14 => "host precedence violation",
                15 => "precedence cutoff in effect",
                _ => return write!(f, "destination unreachable (code {code})"),
            },
            IcmpErrorKind::Unreachable6 { code } => match code {
                0 => "no route to destination",
                1 => "communication administratively prohibited",
                2 => "beyond scope of source address",
                3 => "address unreachable",
                4 => "port unreachable",
                5 => "source address failed ingress/egress policy",
                6 => "reject route to destination",
                _ => return write!(f, "destination unreachable (code {code})"),
            },
            IcmpErrorKind::PacketTooBig { mtu } => return write!(f, "packet too big (MTU {mtu})"),
            IcmpErrorKind::TimeExceeded { code } => match code {
                0 => "time to live exceeded in transit",
                1 => "fragment reassembly time exceeded",
                _ => return write!(f, "time exceeded (code {code})"),
            },
            IcmpErrorKind::ParameterProblem { code } => {
                return write!(f, "parameter problem (code {code})");
            }
        };
        f.write_str(text)
    }
}

impl fmt::Display for IcmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, from {}", self.kind, self.from)
    }
}

impl fmt::Display for PingFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingFailure::Icmp(e) => e.fmt(f),
            PingFailure::Io(e) => f.write_str(e),
        }
    }
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::Timeout => f.write_str("no echo reply within the timeout"),
            PingError::Other(e) => e.fmt(f),
        }
    }
}

/// The real network: tokio TCP and ICMP echo over [`IcmpPinger`].
pub struct Tcp;

impl Network for Tcp {
    fn connect(
        &self,
        source: Option<IpAddr>,
        target: SocketAddr,
    ) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            duet_base::fds::refill();
            let socket = duet_base::fds::opening(|| {
                if target.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
            })?;
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
            duet_base::fds::refill();
            let pinger =
                duet_base::fds::opening(|| IcmpPinger::open(source, target, ident, timeout))?;
            Ok(Box::new(pinger) as Box<dyn Pinger>)
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

/// How long an ICMP error about one of our earlier requests still explains a missing reply.
/// When ARP for the next hop fails, Linux answers every request queued meanwhile at once, about
/// 3 s after the first (3 probes, 1 s apart), and starts over with the next request: a request
/// that times out in between is still unanswered for the same reason.
const ERROR_MEMORY: Duration = Duration::from_secs(10);

/// Packets read in one go before the pinger yields to other tasks (a flooded socket must not
/// starve the runtime).
const BATCH: usize = 256;

/// The echo request's payload after the token; replies echo it back.
const PADDING: [u8; 8] = [0; 8];

/// How the socket was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A raw ICMP socket (root or CAP_NET_RAW): every ICMP packet the host receives, with the
    /// IPv4 header in front; we choose the identifier and read ICMP errors inline.
    Raw,
    /// A Linux "ping" datagram socket (allowed by `net.ipv4.ping_group_range`): the kernel
    /// chooses the identifier, delivers only our echo replies, and ICMP errors go to the error
    /// queue (`IP_RECVERR`).
    Datagram,
}

/// What one echo request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    target: IpAddr,
    ident: u16,
    /// Random per pinger, sent in every request's payload: a reply or a quote must carry it, so
    /// another pinger with the same identifier (another process) cannot answer for us.
    token: [u8; 8],
}

/// What a received packet means to a pinger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// An echo reply from the target to our request `seq`.
    Reply { seq: u16 },
    /// An ICMP error quoting our request `seq`.
    Error { seq: u16, error: IcmpError },
    /// Anything else: other pingers' traffic, other targets, garbage.
    Ignored,
}

/// What [`IcmpPinger::drain`] found.
enum Drained {
    /// The socket is empty.
    Empty,
    /// A full batch was read; there may be more.
    More,
    /// The request's outcome (or the socket failed).
    Settled(Result<Duration, PingError>),
}

/// Identifiers of this process's raw-socket pingers: each pinger takes a free one, so pingers
/// in one process (many heartbeats, several agents in a test) never answer for each other.
static IDENTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// An identifier taken from [`IDENTS`], given back on drop.
#[derive(Debug)]
struct IdentClaim(u16);

impl IdentClaim {
    /// `wanted`, or the next free identifier after it.
    fn take(wanted: u16) -> Self {
        let mut taken = IDENTS.lock().unwrap_or_else(PoisonError::into_inner);
        let ident = (0..=u16::MAX)
            .map(|i| wanted.wrapping_add(i))
            .find(|i| !taken.contains(i))
            .unwrap_or(wanted);
        taken.insert(ident);
        IdentClaim(ident)
    }
}

impl Drop for IdentClaim {
    fn drop(&mut self) {
        IDENTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// ICMP echo to one target over a socket of its own. A reply counts only when it is an echo
/// reply from the target carrying our identifier, sequence number and token; an ICMP error
/// quoting our request (identifier, sequence, and token when quoted) fails the request with what
/// it says and who sent it. Everything else on the socket is ignored.
pub struct IcmpPinger {
    socket: AsyncFd<Socket>,
    mode: Mode,
    expect: Expect,
    timeout: Duration,
    /// The latest ICMP error about one of our requests, and when it came; an echo reply clears
    /// it.
    recent: Option<(IcmpError, Instant)>,
    buf: Vec<u8>,
    _claim: Option<IdentClaim>,
}

impl IcmpPinger {
    /// Opens a raw ICMP socket, or a datagram ICMP socket where raw ones are not permitted;
    /// `PermissionDenied` when neither is. `ident` is the identifier wanted for a raw socket.
    /// Needs a tokio runtime.
    pub fn open(
        source: Option<IpAddr>,
        target: IpAddr,
        ident: u16,
        timeout: Duration,
    ) -> io::Result<Self> {
        let v6 = target.is_ipv6();
        if let Some(source) = source
            && source.is_ipv6() != v6
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("source {source} and target {target} are not of the same IP version"),
            ));
        }
        let (domain, protocol) = if v6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        let (socket, mode) = match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(socket) => (socket, Mode::Raw),
            Err(raw) if raw.kind() == io::ErrorKind::PermissionDenied => {
                match Socket::new(domain, Type::DGRAM, Some(protocol)) {
                    Ok(socket) => (socket, Mode::Datagram),
                    Err(dgram) => {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!(
                                "raw ICMP socket: {raw}; ICMP datagram socket: {dgram} \
                                 (net.ipv4.ping_group_range)"
                            ),
                        ));
                    }
                }
            }
            Err(e) => return Err(e),
        };
        socket.set_nonblocking(true)?;
        let unspecified = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let claim = match mode {
            Mode::Raw => {
                if let Some(source) = source {
                    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
                }
                if let Err(e) = set_icmp_filter(&socket, v6) {
                    // Only an optimisation: the pinger ignores what the filter would drop.
                    tracing::debug!(error = %e, "cannot set the ICMP filter");
                }
                Some(IdentClaim::take(ident))
            }
            Mode::Datagram => {
                // Binding makes the kernel choose the identifier now, so we know it.
                socket.bind(&SockAddr::from(SocketAddr::new(
                    source.unwrap_or(unspecified),
                    0,
                )))?;
                set_recv_err(&socket, v6)?;
                None
            }
        };
        let ident = match &claim {
            Some(claim) => claim.0,
            None => socket
                .local_addr()?
                .as_socket()
                .map(|a| a.port())
                .ok_or_else(|| io::Error::other("ICMP socket has no local address"))?,
        };
        tracing::debug!(%target, ident, ?mode, "ICMP pinger opened");
        Ok(IcmpPinger {
            // SAFETY: the socket owns its descriptor, and the AsyncFd owns the socket until it
            // is dropped: the descriptor stays open and the same for the AsyncFd's lifetime.
            socket: unsafe { AsyncFd::register(socket) }?,
            mode,
            expect: Expect {
                target,
                ident,
                token: token(),
            },
            timeout,
            recent: None,
            buf: vec![0; 2048],
            _claim: claim,
        })
    }

    async fn ping_once(&mut self, seq: u16) -> Result<Duration, PingError> {
        let io_error =
            |what: &str, e: io::Error| PingError::Other(PingFailure::Io(format!("{what}: {e}")));
        // What queued up since the last request: late replies, errors about earlier requests
        // (a few batches at most: the socket's buffer holds no more).
        for _ in 0..4 {
            match self.drain(None, Instant::now()) {
                Drained::Empty => break,
                Drained::More => tokio::task::yield_now().await,
                // Only a socket error settles a request not sent yet.
                Drained::Settled(Err(e)) => return Err(e),
                Drained::Settled(Ok(_)) => {}
            }
        }
        let packet = echo_request(
            self.expect.target.is_ipv6(),
            self.expect.ident,
            seq,
            &self.expect.token,
        );
        let to = SockAddr::from(SocketAddr::new(self.expect.target, 0));
        if self.mode == Mode::Datagram {
            // An error already read from the error queue is still pending on the socket and
            // would fail this send.
            let _ = self.socket.get_ref().take_error();
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let sent = Instant::now();
        match tokio::time::timeout_at(
            deadline,
            self.socket
                .async_io(Interest::WRITABLE, |s| s.send_to(&packet, &to)),
        )
        .await
        {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(io_error("cannot send the echo request", e)),
            Ok(Ok(_)) => {}
        }
        loop {
            match self.drain(Some(seq), sent) {
                Drained::Settled(outcome) => return outcome,
                Drained::More => {
                    // A full batch: let others run, then read on.
                    tokio::task::yield_now().await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(self.timed_out());
                    }
                    continue;
                }
                Drained::Empty => {}
            }
            match tokio::time::timeout_at(
                deadline,
                self.socket.ready(Interest::READABLE | Interest::ERROR),
            )
            .await
            {
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => return Err(io_error("cannot wait for the echo reply", e)),
                // Cleared before reading: whatever arrives after the drain above ran wakes us.
                Ok(Ok(mut guard)) => guard.clear_ready(),
            }
        }
    }

    fn timed_out(&self) -> PingError {
        timeout_error(self.recent, Instant::now())
    }

    /// Reads what the socket holds, up to a batch; settles request `current` (sent at `sent`)
    /// when its reply or an error about it is among them.
    fn drain(&mut self, current: Option<u16>, sent: Instant) -> Drained {
        for _ in 0..BATCH {
            let seen = match self.read_one() {
                Ok(Some(seen)) => seen,
                Ok(None) => return Drained::Empty,
                Err(e) => {
                    return Drained::Settled(Err(PingError::Other(PingFailure::Io(format!(
                        "cannot read from the ICMP socket: {e}"
                    )))));
                }
            };
            match seen {
                Seen::Reply { seq } => {
                    self.recent = None;
                    if Some(seq) == current {
                        return Drained::Settled(Ok(sent.elapsed()));
                    }
                }
                Seen::Error { seq, error } => {
                    self.recent = Some((error, Instant::now()));
                    if Some(seq) == current {
                        return Drained::Settled(Err(PingError::Other(PingFailure::Icmp(error))));
                    }
                }
                Seen::Ignored => {}
            }
        }
        Drained::More
    }

    /// One packet from the socket (the error queue first), `None` when there is none.
    fn read_one(&mut self) -> io::Result<Option<Seen>> {
        let socket = self.socket.get_ref();
        let v6 = self.expect.target.is_ipv6();
        if self.mode == Mode::Datagram {
            match read_error_queue(socket, &mut self.buf) {
                Ok((queued, dest, len)) => {
                    let quoted = self.buf.get(..len).unwrap_or_default();
                    return Ok(Some(classify_queued(&queued, dest, quoted, &self.expect)));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        match recv_from(socket, &mut self.buf) {
            Ok((len, from)) => {
                let packet = self.buf.get(..len).unwrap_or_default();
                Ok(Some(match (self.mode, v6, from) {
                    (Mode::Raw, false, _) => classify_ipv4(packet, &self.expect),
                    (_, _, Some(from)) => classify_icmp(packet, from, &self.expect),
                    (_, _, None) => Seen::Ignored,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // A datagram socket reports a queued ICMP error once more as the error of the next
            // call; the error queue has the details.
            Err(_) if self.mode == Mode::Datagram => Ok(Some(Seen::Ignored)),
            Err(e) => Err(e),
        }
    }
}

impl Pinger for IcmpPinger {
    fn ping(&mut self, seq: u16) -> BoxFuture<'_, Result<Duration, PingError>> {
        Box::pin(self.ping_once(seq))
    }
}

/// What a request that got no answer in time failed with: the ICMP error about one of our
/// requests received within [`ERROR_MEMORY`] (no reply since), else a plain timeout.
fn timeout_error(recent: Option<(IcmpError, Instant)>, now: Instant) -> PingError {
    match recent {
        Some((error, at)) if now.saturating_duration_since(at) < ERROR_MEMORY => {
            PingError::Other(PingFailure::Icmp(error))
        }
        _ => PingError::Timeout,
    }
}

/// Random bytes for [`Expect::token`]; any distinct value works when randomness fails.
fn token() -> [u8; 8] {
    let mut token = [0u8; 8];
    if getrandom::fill(&mut token).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        token = (nanos ^ (u64::from(std::process::id()) << 32)).to_be_bytes();
    }
    token
}

/// An echo request: type, code, checksum, identifier, sequence, then the token and padding.
/// ICMPv6 checksums are the kernel's (they cover the IPv6 addresses); a datagram socket also
/// sets the identifier and checksum itself.
fn echo_request(v6: bool, ident: u16, seq: u16, token: &[u8; 8]) -> [u8; 24] {
    let mut packet = [0u8; 24];
    packet[0] = if v6 { 128 } else { 8 };
    packet[4..6].copy_from_slice(&ident.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..16].copy_from_slice(token);
    packet[16..].copy_from_slice(&PADDING);
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071); 0 over a message that carries a correct one.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .fold(0u32, u32::wrapping_add);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

/// The source, destination and payload of an IPv4 packet carrying ICMP. A packet received must
/// be whole; one quoted in an ICMP error is usually cut short, its payload ends with the bytes.
fn ipv4_icmp(packet: &[u8], quoted: bool) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let first = *packet.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || packet.len() < header || packet[9] != 1 {
        return None;
    }
    let total = usize::from(be16(packet, 2)?);
    if total < header || (!quoted && total > packet.len()) {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dest = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((source, dest, &packet[header..total.min(packet.len())]))
}

/// A packet read from a raw IPv4 socket: the IPv4 header, then the ICMP message.
fn classify_ipv4(packet: &[u8], expect: &Expect) -> Seen {
    match ipv4_icmp(packet, false) {
        Some((from, _, icmp)) => classify_icmp(icmp, IpAddr::V4(from), expect),
        None => Seen::Ignored,
    }
}

/// An ICMP (or ICMPv6, as `expect.target` is) message sent by `from`.
fn classify_icmp(icmp: &[u8], from: IpAddr, expect: &Expect) -> Seen {
    let v6 = expect.target.is_ipv6();
    if icmp.len() < 8 || from.is_ipv6() != v6 || (!v6 && checksum(icmp) != 0) {
        return Seen::Ignored;
    }
    let reply = if v6 { 129 } else { 0 };
    if icmp[0] == reply {
        let ours = from == expect.target
            && be16(icmp, 4) == Some(expect.ident)
            && icmp.get(8..16) == Some(&expect.token[..]);
        return match be16(icmp, 6) {
            Some(seq) if ours => Seen::Reply { seq },
            _ => Seen::Ignored,
        };
    }
    let mtu = u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]);
    let Some(kind) = IcmpErrorKind::from_icmp(v6, icmp[0], icmp[1], mtu) else {
        return Seen::Ignored;
    };
    match quoted_request(&icmp[8..], expect) {
        Some(seq) => Seen::Error {
            seq,
            error: IcmpError { kind, from },
        },
        None => Seen::Ignored,
    }
}

/// The sequence number of our echo request quoted in an ICMP error (its IP header, then at
/// least the first 8 bytes of the ICMP message), `None` when it is someone else's.
fn quoted_request(quoted: &[u8], expect: &Expect) -> Option<u16> {
    let icmp = match expect.target {
        IpAddr::V4(target) => {
            let (_, dest, icmp) = ipv4_icmp(quoted, true)?;
            (dest == target).then_some(icmp)?
        }
        IpAddr::V6(target) => {
            let header = quoted.get(..40)?;
            let dest = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
            // Our requests carry no extension headers: ICMPv6 (58) follows directly.
            (header[0] >> 4 == 6 && header[6] == 58 && dest == target).then_some(&quoted[40..])?
        }
    };
    quoted_echo(icmp, expect)
}

/// The sequence number of a quoted echo request (ICMP header and as much payload as was
/// quoted) when it has our identifier, and our token if the payload was quoted.
fn quoted_echo(icmp: &[u8], expect: &Expect) -> Option<u16> {
    let request = if expect.target.is_ipv6() { 128 } else { 8 };
    if *icmp.first()? != request || be16(icmp, 4)? != expect.ident {
        return None;
    }
    if icmp.len() >= 16 && icmp[8..16] != expect.token {
        return None;
    }
    be16(icmp, 6)
}

/// `struct sock_extended_err` and its offender address: one entry of the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueuedError {
    origin: u8,
    icmp_type: u8,
    code: u8,
    info: u32,
    offender: Option<IpAddr>,
}

/// `SO_EE_ORIGIN_ICMP` and `SO_EE_ORIGIN_ICMP6` (linux/errqueue.h).
const SO_EE_ORIGIN_ICMP: u8 = 2;
const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Parses the `IP_RECVERR`/`IPV6_RECVERR` control message: `sock_extended_err` (errno, origin,
/// type, code, pad, info, data), then the offender's `sockaddr` (`SO_EE_OFFENDER`).
fn parse_extended_err(data: &[u8]) -> Option<QueuedError> {
    let info = u32::from_ne_bytes(data.get(8..12)?.try_into().ok()?);
    Some(QueuedError {
        origin: data[4],
        icmp_type: data[5],
        code: data[6],
        info,
        offender: data.get(16..).and_then(parse_sockaddr),
    })
}

/// An IPv4 or IPv6 address from a `sockaddr_in`/`sockaddr_in6` in the host's layout.
fn parse_sockaddr(data: &[u8]) -> Option<IpAddr> {
    let family = i32::from(u16::from_ne_bytes(data.get(..2)?.try_into().ok()?));
    if family == libc::AF_INET {
        let octets: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        Some(IpAddr::V4(octets.into()))
    } else if family == libc::AF_INET6 {
        let octets: [u8; 16] = data.get(8..24)?.try_into().ok()?;
        Some(IpAddr::V6(octets.into()))
    } else {
        None
    }
}

/// An entry of a datagram socket's error queue: the error, the address the request went to
/// (`dest`), and the quoted ICMP message (the request's header and payload).
fn classify_queued(
    queued: &QueuedError,
    dest: Option<IpAddr>,
    quoted: &[u8],
    expect: &Expect,
) -> Seen {
    let v6 = expect.target.is_ipv6();
    let origin = if v6 {
        SO_EE_ORIGIN_ICMP6
    } else {
        SO_EE_ORIGIN_ICMP
    };
    if queued.origin != origin || dest != Some(expect.target) {
        return Seen::Ignored;
    }
    let (Some(kind), Some(from), Some(seq)) = (
        IcmpErrorKind::from_icmp(v6, queued.icmp_type, queued.code, queued.info),
        queued.offender,
        quoted_echo(quoted, expect),
    ) else {
        return Seen::Ignored;
    };
    Seen::Error {
        seq,
        error: IcmpError { kind, from },
    }
}

/// `recvfrom` into an initialised buffer: the length and the sender's address.
fn recv_from(socket: &Socket, buf: &mut [u8]) -> io::Result<(usize, Option<IpAddr>)> {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and `recv_from` only writes bytes into
    // the buffer, so it stays initialised.
    let uninit = unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) };
    let (len, from) = socket.recv_from(uninit)?;
    Ok((len, from.as_socket().map(|a| a.ip())))
}

/// One entry of the socket's error queue (`recvmsg` with `MSG_ERRQUEUE`): the error, the
/// address the failed request went to, and how many bytes of it were copied into `buf`.
fn read_error_queue(
    socket: &Socket,
    buf: &mut [u8],
) -> io::Result<(QueuedError, Option<IpAddr>, usize)> {
    // SAFETY: all-zero bytes are a valid `sockaddr_storage` and `msghdr`.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // u64 elements: control messages need `cmsghdr` alignment.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` points at a live buffer of the length given.
    let len = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &raw mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    let len = usize::try_from(len).map_err(|_| io::Error::last_os_error())?;
    let mut queued = None;
    // SAFETY: `msg` was filled in by `recvmsg`; the CMSG macros stay within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within the buffer.
        let header = unsafe { &*cmsg };
        let recverr = (header.cmsg_level == libc::IPPROTO_IP
            && header.cmsg_type == libc::IP_RECVERR)
            || (header.cmsg_level == libc::IPPROTO_IPV6 && header.cmsg_type == libc::IPV6_RECVERR);
        if recverr {
            // SAFETY: the data follows the header and runs to `cmsg_len` from its start, which
            // the kernel keeps within the control buffer.
            let data = unsafe {
                let start = libc::CMSG_DATA(cmsg);
                let offset = start.offset_from(cmsg.cast::<u8>()) as usize;
                std::slice::from_raw_parts(start, (header.cmsg_len as usize).saturating_sub(offset))
            };
            queued = parse_extended_err(data);
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    let name_len = (msg.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `name` is a plain struct of `name_len` or more bytes.
    let name_bytes =
        unsafe { std::slice::from_raw_parts((&raw const name).cast::<u8>(), name_len) };
    let queued = queued.ok_or_else(|| io::Error::other("error queue entry without IP_RECVERR"))?;
    Ok((queued, parse_sockaddr(name_bytes), len.min(buf.len())))
}

/// Asks the kernel to queue ICMP errors about our requests (`IP_RECVERR`), so a datagram
/// socket sees them too.
fn set_recv_err(socket: &Socket, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    setsockopt(socket, level, name, &1 as &libc::c_int)
}

/// Lets only echo replies and the errors [`IcmpErrorKind`] knows through to a raw socket, so
/// a host that is pinged a lot does not fill our receive buffer.
fn set_icmp_filter(socket: &Socket, v6: bool) -> io::Result<()> {
    if v6 {
        // `struct icmp6_filter`: a set bit blocks that type (ICMP6_FILTER, netinet/icmp6.h).
        const ICMP6_FILTER: libc::c_int = 1;
        let mut blocked = [u32::MAX; 8];
        for ty in [1u8, 2, 3, 4, 129] {
            blocked[usize::from(ty >> 5)] &= !(1 << (ty & 31));
        }
        setsockopt(socket, libc::IPPROTO_ICMPV6, ICMP6_FILTER, &blocked)
    } else {
        // A set bit blocks that type (ICMP_FILTER on SOL_RAW, linux/icmp.h).
        const SOL_RAW: libc::c_int = 255;
        const ICMP_FILTER: libc::c_int = 1;
        let pass: u32 = (1 << 0) | (1 << 3) | (1 << 11) | (1 << 12);
        setsockopt(socket, SOL_RAW, ICMP_FILTER, &!pass)
    }
}

fn setsockopt<T>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points at `size_of::<T>()` readable bytes for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
    const TARGET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const TOKEN: [u8; 8] = *b"duet-tok";

    fn expect() -> Expect {
        Expect {
            target: IpAddr::V4(TARGET),
            ident: 0x1234,
            token: TOKEN,
        }
    }

    fn expect6() -> Expect {
        Expect {
            target: "2001:db8::1".parse().expect("literal"),
            ident: 0x1234,
            token: TOKEN,
        }
    }

    /// An IPv4 packet carrying `icmp`.
    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + icmp.len()).expect("small");
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let sum = checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(icmp);
        p
    }

    /// An ICMPv4 message with a correct checksum.
    fn icmp4(icmp_type: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![icmp_type, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(body);
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    }

    fn reply(ident: u16, seq: u16, token: &[u8; 8]) -> Vec<u8> {
        let mut request = echo_request(false, ident, seq, token);
        request[0] = 0;
        request[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
        request.to_vec()
    }

    /// An ICMPv4 error from `from` quoting our request `seq` (as Linux does: the whole request).
    fn error4(from: Ipv4Addr, icmp_type: u8, code: u8, ident: u16, seq: u16) -> Vec<u8> {
        let quoted = ipv4(US, TARGET, &echo_request(false, ident, seq, &TOKEN));
        ipv4(from, US, &icmp4(icmp_type, code, [0; 4], &quoted))
    }

    #[test]
    fn an_echo_reply_from_the_target_with_our_ident_and_seq_is_the_reply() {
        let packet = ipv4(TARGET, US, &reply(0x1234, 7, &TOKEN));
        assert_eq!(classify_ipv4(&packet, &expect()), Seen::Reply { seq: 7 });
    }

    #[test]
    fn an_echo_reply_from_another_address_is_ignored() {
        let packet = ipv4(ROUTER, US, &reply(0x1234, 7, &TOKEN));
        assert_eq!(classify_ipv4(&packet, &expect()), Seen::Ignored);
    }

    #[test]
    fn an_echo_reply_with_another_ident_or_token_is_ignored() {
        for icmp in [reply(0x1235, 7, &TOKEN), reply(0x1234, 7, b"other-tk")] {
            let packet = ipv4(TARGET, US, &icmp);
            assert_eq!(classify_ipv4(&packet, &expect()), Seen::Ignored);
        }
    }

    #[test]
    fn a_reply_for_another_sequence_settles_only_that_sequence() {
        // The pinger compares the sequence: a late reply to seq 6 does not answer seq 7.
        let packet = ipv4(TARGET, US, &reply(0x1234, 6, &TOKEN));
        assert_eq!(classify_ipv4(&packet, &expect()), Seen::Reply { seq: 6 });
    }

    #[test]
    fn host_unreachable_quoting_our_request_is_a_named_error_from_its_sender() {
        // What Linux sends itself when ARP for the next hop gives up.
        let packet = error4(US, 3, 1, 0x1234, 7);
        let seen = classify_ipv4(&packet, &expect());
        assert_eq!(
            seen,
            Seen::Error {
                seq: 7,
                error: IcmpError {
                    kind: IcmpErrorKind::Unreachable { code: 1 },
                    from: IpAddr::V4(US),
                },
            }
        );
        let Seen::Error { error, .. } = seen else {
            unreachable!()
        };
        assert_eq!(
            PingFailure::Icmp(error).to_string(),
            "host unreachable, from 198.51.100.11"
        );
    }

    #[test]
    fn every_error_type_is_named() {
        let cases: [(u8, u8, &str); 6] = [
            (3, 0, "network unreachable, from 203.0.113.7"),
            (3, 3, "port unreachable, from 203.0.113.7"),
            (
                3,
                13,
                "communication administratively prohibited, from 203.0.113.7",
            ),
            (3, 99, "destination unreachable (code 99), from 203.0.113.7"),
            (11, 0, "time to live exceeded in transit, from 203.0.113.7"),
            (12, 0, "parameter problem (code 0), from 203.0.113.7"),
        ];
        for (icmp_type, code, text) in cases {
            let packet = error4(ROUTER, icmp_type, code, 0x1234, 9);
            match classify_ipv4(&packet, &expect()) {
                Seen::Error { seq: 9, error } => assert_eq!(error.to_string(), text),
                other => panic!("type {icmp_type} code {code}: {other:?}"),
            }
        }
    }

    #[test]
    fn redirects_and_source_quench_are_not_errors() {
        for icmp_type in [4, 5] {
            let packet = error4(ROUTER, icmp_type, 1, 0x1234, 9);
            assert_eq!(classify_ipv4(&packet, &expect()), Seen::Ignored);
        }
    }

    #[test]
    fn an_error_quoting_someone_elses_request_is_ignored() {
        // Another identifier, another target, another token, not an echo request at all.
        let other_ident = error4(US, 3, 1, 0x4321, 7);
        let other_target = {
            let quoted = ipv4(US, ROUTER, &echo_request(false, 0x1234, 7, &TOKEN));
            ipv4(US, US, &icmp4(3, 1, [0; 4], &quoted))
        };
        let other_token = {
            let quoted = ipv4(US, TARGET, &echo_request(false, 0x1234, 7, b"other-tk"));
            ipv4(US, US, &icmp4(3, 1, [0; 4], &quoted))
        };
        let udp = {
            let mut quoted = ipv4(US, TARGET, &[0x30, 0x39, 0x12, 0x34, 0, 16, 0, 0]);
            quoted[9] = 17;
            ipv4(US, US, &icmp4(3, 3, [0; 4], &quoted))
        };
        for packet in [other_ident, other_target, other_token, udp] {
            assert_eq!(classify_ipv4(&packet, &expect()), Seen::Ignored);
        }
    }

    #[test]
    fn an_error_quoting_only_the_icmp_header_still_counts() {
        // RFC 792 routers quote the IP header and 8 bytes: no token to compare.
        let mut quoted = ipv4(US, TARGET, &echo_request(false, 0x1234, 7, &TOKEN));
        quoted.truncate(28);
        let packet = ipv4(ROUTER, US, &icmp4(11, 0, [0; 4], &quoted));
        assert!(matches!(
            classify_ipv4(&packet, &expect()),
            Seen::Error { seq: 7, .. }
        ));
    }

    #[test]
    fn truncated_and_garbage_packets_are_ignored() {
        let good = error4(US, 3, 1, 0x1234, 7);
        for len in 0..good.len() {
            // A received packet shorter than its IPv4 total length is no packet.
            let seen = classify_ipv4(&good[..len], &expect());
            assert_eq!(seen, Seen::Ignored, "cut at {len}");
        }
        let reply = ipv4(TARGET, US, &reply(0x1234, 7, &TOKEN));
        for len in 0..reply.len() {
            assert_eq!(classify_ipv4(&reply[..len], &expect()), Seen::Ignored);
        }
        // A corrupted checksum, a wrong IP version, a header length beyond the packet.
        let mut corrupt = reply.clone();
        corrupt[30] ^= 0xff;
        let mut version = reply.clone();
        version[0] = 0x65;
        let mut ihl = reply.clone();
        ihl[0] = 0x4f;
        for packet in [corrupt, version, ihl] {
            assert_eq!(classify_ipv4(&packet, &expect()), Seen::Ignored);
        }
        // Deterministic noise.
        let mut x: u32 = 0x1234_5678;
        for len in 0..600 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = classify_ipv4(&noise, &expect());
            let _ = classify_icmp(&noise, IpAddr::V4(TARGET), &expect());
            let _ = classify_icmp(&noise, expect6().target, &expect6());
            let _ = parse_extended_err(&noise);
            let _ = quoted_request(&noise, &expect6());
        }
    }

    #[test]
    fn icmpv6_replies_and_errors() {
        let e = expect6();
        let mut reply6 = echo_request(true, 0x1234, 3, &TOKEN);
        reply6[0] = 129;
        assert_eq!(classify_icmp(&reply6, e.target, &e), Seen::Reply { seq: 3 });
        let router: IpAddr = "2001:db8::fe".parse().expect("literal");
        assert_eq!(classify_icmp(&reply6, router, &e), Seen::Ignored);

        let IpAddr::V6(target) = e.target else {
            unreachable!()
        };
        let mut quoted = vec![0x60, 0, 0, 0, 0, 24, 58, 64];
        quoted.extend_from_slice(&[0; 16]);
        quoted.extend_from_slice(&target.octets());
        quoted.extend_from_slice(&echo_request(true, 0x1234, 3, &TOKEN));
        let mut error = vec![1, 3, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&quoted);
        match classify_icmp(&error, router, &e) {
            Seen::Error { seq: 3, error } => {
                assert_eq!(error.to_string(), "address unreachable, from 2001:db8::fe");
            }
            other => panic!("{other:?}"),
        }
        let mut too_big = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        too_big.extend_from_slice(&quoted);
        assert!(matches!(
            classify_icmp(&too_big, router, &e),
            Seen::Error {
                error: IcmpError {
                    kind: IcmpErrorKind::PacketTooBig { mtu: 1280 },
                    ..
                },
                ..
            }
        ));
        // Neighbour discovery and the like are not errors.
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&quoted);
        assert_eq!(classify_icmp(&ns, router, &e), Seen::Ignored);
    }

    /// `sock_extended_err` + `sockaddr_in` as the kernel lays them out.
    fn extended_err(origin: u8, icmp_type: u8, code: u8, offender: Ipv4Addr) -> Vec<u8> {
        let mut d = 113u32.to_ne_bytes().to_vec();
        d.extend_from_slice(&[origin, icmp_type, code, 0]);
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes());
        d.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&offender.octets());
        d.extend_from_slice(&[0; 8]);
        d
    }

    #[test]
    fn error_queue_entries_are_matched_like_inline_errors() {
        let e = expect();
        let queued =
            parse_extended_err(&extended_err(SO_EE_ORIGIN_ICMP, 3, 1, US)).expect("a full entry");
        assert_eq!(queued.offender, Some(IpAddr::V4(US)));
        let ours = echo_request(false, 0x1234, 5, &TOKEN);
        assert_eq!(
            classify_queued(&queued, Some(e.target), &ours, &e),
            Seen::Error {
                seq: 5,
                error: IcmpError {
                    kind: IcmpErrorKind::Unreachable { code: 1 },
                    from: IpAddr::V4(US),
                },
            }
        );
        // Another destination, another token, a local error (no ICMP), a truncated entry.
        assert_eq!(
            classify_queued(&queued, Some(IpAddr::V4(ROUTER)), &ours, &e),
            Seen::Ignored
        );
        let theirs = echo_request(false, 0x1234, 5, b"other-tk");
        assert_eq!(
            classify_queued(&queued, Some(e.target), &theirs, &e),
            Seen::Ignored
        );
        let local = parse_extended_err(&extended_err(1, 0, 0, US)).expect("entry");
        assert_eq!(
            classify_queued(&local, Some(e.target), &ours, &e),
            Seen::Ignored
        );
        assert_eq!(parse_extended_err(&[2, 0, 0]), None);
    }

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let request = echo_request(false, 0xbeef, 300, &TOKEN);
        assert_eq!(checksum(&request), 0);
        assert_eq!(&request[..2], &[8, 0]);
        assert_eq!(be16(&request, 4), Some(0xbeef));
        assert_eq!(be16(&request, 6), Some(300));
    }

    #[test]
    fn pingers_in_one_process_take_distinct_identifiers() {
        let a = IdentClaim::take(4242);
        let b = IdentClaim::take(4242);
        assert_ne!(a.0, b.0);
        let first = a.0;
        drop(a);
        let c = IdentClaim::take(first);
        assert_eq!(c.0, first, "a dropped claim is free again");
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[tokio::test]
    async fn two_pingers_with_the_same_ident_both_get_their_own_replies_from_loopback() {
        if !is_root() {
            eprintln!("skipped: needs root for raw ICMP sockets (CI runs as root)");
            return;
        }
        let target = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let timeout = Duration::from_secs(2);
        let mut a = IcmpPinger::open(None, target, 777, timeout).expect("pinger a");
        let mut b = IcmpPinger::open(None, target, 777, timeout).expect("pinger b");
        assert_eq!(a.mode, Mode::Raw);
        assert_ne!(a.expect.ident, b.expect.ident);
        for seq in 1..=20 {
            let (ra, rb) = tokio::join!(a.ping(seq), b.ping(seq));
            assert!(ra.is_ok() && rb.is_ok(), "seq {seq}: {ra:?} {rb:?}");
        }
    }

    #[tokio::test]
    async fn ipv6_loopback_answers() {
        if !is_root() {
            eprintln!("skipped: needs root for raw ICMP sockets (CI runs as root)");
            return;
        }
        let target: IpAddr = Ipv6Addr::LOCALHOST.into();
        let mut pinger = match IcmpPinger::open(None, target, 779, Duration::from_secs(2)) {
            Ok(p) => p,
            Err(e)
                if e.kind() == io::ErrorKind::Unsupported
                    || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                eprintln!("skipped: no IPv6 here ({e})");
                return;
            }
            Err(e) => panic!("pinger: {e}"),
        };
        for seq in 1..=5 {
            let rtt = pinger.ping(seq).await;
            assert!(rtt.is_ok(), "seq {seq}: {rtt:?}");
        }
    }

    #[test]
    fn a_timeout_is_a_timeout_unless_a_recent_error_explains_it() {
        let now = Instant::now();
        let error = IcmpError {
            kind: IcmpErrorKind::Unreachable { code: 1 },
            from: IpAddr::V4(US),
        };
        assert_eq!(timeout_error(None, now), PingError::Timeout);
        assert_eq!(
            timeout_error(Some((error, now - Duration::from_secs(3))), now),
            PingError::Other(PingFailure::Icmp(error))
        );
        assert_eq!(
            timeout_error(Some((error, now - ERROR_MEMORY)), now),
            PingError::Timeout
        );
    }
}
