//! The NIC rows: link state from netlink (`RTMGRP_LINK` events on a raw `NETLINK_ROUTE`
//! socket, after one dump of every link). A NIC is up when it is administratively up and
//! running (carrier); its row exists once it went down or came back since the agent started.

use std::collections::BTreeMap;
use std::sync::Arc;

use duet_core::Nic;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One NIC as the watcher last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub up: bool,
    /// It went down or came back since the watcher started.
    pub changed: bool,
}

/// The NICs of this machine (of the agent's network namespace), by name.
pub type Links = BTreeMap<String, LinkState>;

/// Follows the links; the integrator hooks the event log ("NIC unplugged") on
/// [`NicWatcher::subscribe`].
pub struct NicWatcher {
    links: watch::Sender<Links>,
}

impl Default for NicWatcher {
    fn default() -> Self {
        NicWatcher {
            links: watch::Sender::new(Links::new()),
        }
    }
}

impl NicWatcher {
    /// The links now.
    pub fn links(&self) -> Links {
        self.links.borrow().clone()
    }

    /// Every change of a link's state.
    pub fn subscribe(&self) -> watch::Receiver<Links> {
        self.links.subscribe()
    }

    /// The core's view: every watched NIC, each flagged when it carries a virtual IP.
    pub fn nics(&self, carries_vip: impl Fn(&str) -> bool) -> Vec<Nic> {
        self.links
            .borrow()
            .iter()
            .map(|(name, s)| Nic {
                name: name.clone(),
                up: s.up,
                changed: s.changed,
                carries_vip: carries_vip(name),
            })
            .collect()
    }

    /// Applies one observation of a link (from the dump or an event).
    fn observe(&self, name: &str, up: bool, initial: bool) -> bool {
        self.links
            .send_if_modified(|links| match links.get_mut(name) {
                Some(s) if s.up == up => false,
                Some(s) => {
                    s.up = up;
                    s.changed = true;
                    tracing::warn!(nic = name, up, "NIC link state changed");
                    true
                }
                None => {
                    // A NIC that appears later, down, is news too.
                    let changed = !initial && !up;
                    links.insert(name.to_string(), LinkState { up, changed });
                    true
                }
            })
    }

    fn remove(&self, name: &str) -> bool {
        self.observe(name, false, false)
    }

    /// Watches netlink until `shutdown` (a non-blocking socket on the runtime's reactor).
    /// Calls `wake` on every change. A watcher that cannot start logs why and ends: no NIC
    /// rows then; the agent keeps running.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> anyhow::Result<()> {
        if let Err(e) = self.watch(&shutdown, &*wake).await {
            tracing::error!(error = %format!("{e:#}"), "NIC watcher stopped");
        }
        Ok(())
    }

    async fn watch(
        &self,
        shutdown: &CancellationToken,
        wake: &(dyn Fn() + Send + Sync),
    ) -> anyhow::Result<()> {
        // SAFETY: the socket owns its descriptor, which stays open as long as the AsyncFd
        // (its owner) lives, and nothing else closes or registers it.
        let socket = unsafe { tokio::io::unix::AsyncFd::register(netlink::Socket::open()?) }
            .map_err(|e| anyhow::anyhow!("failed to watch the netlink socket: {e}"))?;
        socket.get_ref().request_dump()?;
        let mut dumping = true;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut ready = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                ready = socket.readable() => ready?,
            };
            let n = match ready.try_io(|s| s.get_ref().recv(&mut buf)) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            let mut changed = false;
            for msg in netlink::messages(&buf[..n]) {
                match msg {
                    netlink::Message::Link { name, up } => {
                        changed |= self.observe(&name, up, dumping)
                    }
                    netlink::Message::Removed { name } => changed |= self.remove(&name),
                    netlink::Message::Done => dumping = false,
                    netlink::Message::Other => {}
                }
            }
            if changed {
                wake();
            }
        }
    }
}

/// The raw netlink socket and its message format (linux/netlink.h, linux/rtnetlink.h).
mod netlink {
    use anyhow::Context as _;
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    const NETLINK_ROUTE: i32 = 0;
    const RTMGRP_LINK: u32 = 1;
    const RTM_NEWLINK: u16 = 16;
    const RTM_DELLINK: u16 = 17;
    const RTM_GETLINK: u16 = 18;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_DUMP: u16 = 0x300;
    const IFLA_IFNAME: u16 = 3;
    const IFF_UP: u32 = 0x1;
    const IFF_RUNNING: u32 = 0x40;
    const HEADER: usize = 16;
    const IFINFO: usize = 16;

    pub struct Socket(OwnedFd);

    pub enum Message {
        Link { name: String, up: bool },
        Removed { name: String },
        Done,
        Other,
    }

    impl Socket {
        pub fn open() -> anyhow::Result<Self> {
            // SAFETY: plain socket(2); the result is checked before use.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    NETLINK_ROUTE,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("failed to open a netlink socket");
            }
            // SAFETY: fd is a fresh descriptor this function owns.
            let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
            // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = RTMGRP_LINK;
            // SAFETY: addr outlives the call; the length is its size.
            let rc = unsafe {
                libc::bind(
                    fd,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                )
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("failed to join the netlink link group");
            }
            Ok(socket)
        }

        /// Asks for every link once (answered by `RTM_NEWLINK` messages, then `NLMSG_DONE`).
        pub fn request_dump(&self) -> anyhow::Result<()> {
            let mut req = [0u8; HEADER + IFINFO];
            req[0..4].copy_from_slice(&((HEADER + IFINFO) as u32).to_ne_bytes());
            req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
            req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
            req[8..12].copy_from_slice(&1u32.to_ne_bytes());
            // SAFETY: req outlives the call; the length is its size.
            let rc = unsafe { libc::send(self.0.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error())
                    .context("failed to ask netlink for the links");
            }
            Ok(())
        }

        /// One datagram (`WouldBlock` when none is waiting). Lost events (`ENOBUFS`) ask for
        /// the whole picture again and read as an empty datagram.
        pub fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            // SAFETY: buf is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    self.request_dump().map_err(std::io::Error::other)?;
                    return Ok(0);
                }
                return Err(e);
            }
            Ok(n as usize)
        }
    }

    impl std::os::fd::AsRawFd for Socket {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            self.0.as_raw_fd()
        }
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    /// The messages of one datagram; malformed ones end the walk.
    pub fn messages(mut buf: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        while buf.len() >= HEADER {
            let Some(len) = u32_at(buf, 0).map(|l| l as usize) else {
                break;
            };
            if len < HEADER || len > buf.len() {
                break;
            }
            let kind = u16_at(buf, 4).unwrap_or(0);
            let body = &buf[HEADER..len];
            out.push(match kind {
                NLMSG_DONE => Message::Done,
                RTM_NEWLINK | RTM_DELLINK => match link(body) {
                    Some((name, flags)) if kind == RTM_NEWLINK => Message::Link {
                        name,
                        up: flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
                    },
                    Some((name, _)) => Message::Removed { name },
                    None => Message::Other,
                },
                _ => Message::Other,
            });
            let next = (len + 3) & !3;
            buf = buf.get(next..).unwrap_or_default();
        }
        out
    }

    /// The name and flags of an `ifinfomsg` and its attributes.
    fn link(body: &[u8]) -> Option<(String, u32)> {
        let flags = u32_at(body, 8)?;
        let mut attrs = body.get(IFINFO..)?;
        while attrs.len() >= 4 {
            let len = u16_at(attrs, 0)? as usize;
            let kind = u16_at(attrs, 2)?;
            if len < 4 || len > attrs.len() {
                return None;
            }
            if kind == IFLA_IFNAME {
                let name = &attrs[4..len];
                let name = name.split(|b| *b == 0).next().unwrap_or_default();
                return Some((String::from_utf8_lossy(name).into_owned(), flags));
            }
            attrs = attrs.get((len + 3) & !3..).unwrap_or_default();
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn newlink(name: &str, flags: u32) -> Vec<u8> {
            let mut attr = Vec::new();
            let n = name.len() + 1;
            attr.extend(((4 + n) as u16).to_ne_bytes());
            attr.extend(IFLA_IFNAME.to_ne_bytes());
            attr.extend(name.as_bytes());
            attr.push(0);
            while attr.len() % 4 != 0 {
                attr.push(0);
            }
            let mut info = vec![0u8; IFINFO];
            info[8..12].copy_from_slice(&flags.to_ne_bytes());
            let len = HEADER + info.len() + attr.len();
            let mut msg = Vec::new();
            msg.extend((len as u32).to_ne_bytes());
            msg.extend(RTM_NEWLINK.to_ne_bytes());
            msg.extend([0u8; 10]);
            msg.extend(info);
            msg.extend(attr);
            msg
        }

        #[test]
        fn parses_links_and_stops_at_garbage() {
            let mut buf = newlink("eth0", IFF_UP | IFF_RUNNING);
            buf.extend(newlink("veth-x", IFF_UP));
            buf.extend([0xff; 7]);
            let msgs = messages(&buf);
            assert_eq!(msgs.len(), 2);
            assert!(matches!(&msgs[0], Message::Link { name, up: true } if name == "eth0"));
            assert!(matches!(&msgs[1], Message::Link { name, up: false } if name == "veth-x"));
            assert!(messages(&[1, 2, 3]).is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_row_exists_only_after_a_change() {
        let w = NicWatcher::default();
        w.observe("eth0", true, true);
        w.observe("eth1", true, true);
        assert!(w.nics(|_| false).iter().all(|n| !n.changed));
        assert!(!w.observe("eth0", true, false), "same state: no change");
        assert!(w.observe("eth1", false, false));
        let nics = w.nics(|n| n == "eth1");
        let eth1 = nics.iter().find(|n| n.name == "eth1").expect("eth1");
        assert!(eth1.changed && !eth1.up && eth1.carries_vip);
        w.observe("eth1", true, false);
        assert!(w.links()["eth1"].up && w.links()["eth1"].changed);
    }

    /// Against the real kernel: the dump lists the loopback.
    #[tokio::test]
    async fn the_dump_lists_this_namespaces_links() {
        let w = Arc::new(NicWatcher::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(w.clone().run(shutdown.clone(), Arc::new(|| ())));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !w.links().contains_key("lo") && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.expect("join").expect("watch");
        assert!(w.links().contains_key("lo"), "{:?}", w.links());
    }
}
