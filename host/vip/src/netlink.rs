//! The VIP's address on its NIC, over one rtnetlink socket opened at start: add or renew it as a
//! kernel lease, remove it, list a NIC's IPv4 addresses. No command is forked, so neither a
//! process limit nor an exhausted fd table can stop the Online agent from renewing or removing
//! its VIP, and a stalled agent's fence removes it from any thread.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

/// How long a request waits for the kernel's answer (it answers at once; a bound all the same).
const ANSWER: Duration = Duration::from_secs(1);
const HEADER: usize = 16;
const DONE: u16 = libc::NLMSG_DONE as u16;
const ERROR: u16 = libc::NLMSG_ERROR as u16;
const IFADDRMSG: usize = 8;

/// An rtnetlink socket (`NETLINK_ROUTE`).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// An address request: the NIC's index, the address and its prefix.
#[derive(Debug, Clone, Copy)]
pub struct Address {
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Netlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: ANSWER.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: 0 })
    }

    /// Adds the address, or renews it: either way it now expires `lease` from now unless
    /// renewed again (`valid_lft` and `preferred_lft`, whole seconds, at least 1).
    pub fn lease(&mut self, a: Address, lease: Duration) -> Result<(), String> {
        let secs = u32::try_from(lease.as_secs().max(1)).unwrap_or(u32::MAX);
        let mut cache = Vec::with_capacity(16);
        for v in [secs, secs, 0, 0] {
            cache.extend_from_slice(&v.to_ne_bytes());
        }
        let flags = libc::NLM_F_CREATE | libc::NLM_F_REPLACE;
        let body = address_body(a, &[(libc::IFA_CACHEINFO, &cache)]);
        self.ask(libc::RTM_NEWADDR, flags, &body)
            .map_err(|e| format!("cannot add {}/{}: {e}", a.address, a.prefix))
    }

    /// Removes the address (nothing to do when it is not there).
    pub fn remove(&mut self, a: Address) -> Result<(), String> {
        match self.ask(libc::RTM_DELADDR, 0, &address_body(a, &[])) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => {
                Ok(())
            }
            other => other.map_err(|e| format!("cannot remove {}/{}: {e}", a.address, a.prefix)),
        }
    }

    /// The IPv4 addresses of the NIC with index `index`, with their prefixes.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, String> {
        let mut body = vec![0u8; IFADDRMSG];
        body[0] = libc::AF_INET as u8;
        let seq = self
            .send(libc::RTM_GETADDR, libc::NLM_F_DUMP, &body)
            .map_err(|e| format!("cannot list addresses: {e}"))?;
        let mut all = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = self
                .recv(&mut buf)
                .map_err(|e| format!("cannot list addresses: {e}"))?;
            for (kind, msg_seq, payload) in messages(&buf[..n]) {
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    DONE => return Ok(all),
                    ERROR => {
                        if let Some(e) = error_of(payload).filter(|e| *e != 0) {
                            return Err(format!(
                                "cannot list addresses: {}",
                                io::Error::from_raw_os_error(-e)
                            ));
                        }
                    }
                    libc::RTM_NEWADDR => all.extend(address_of(payload, index)),
                    _ => {}
                }
            }
        }
    }

    /// Sends a request that the kernel acknowledges, and reads the acknowledgement.
    fn ask(&mut self, kind: u16, flags: libc::c_int, body: &[u8]) -> io::Result<()> {
        let seq = self.send(kind, flags | libc::NLM_F_ACK, body)?;
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            let n = self.recv(&mut buf)?;
            for (kind, msg_seq, payload) in messages(&buf[..n]) {
                if msg_seq == seq && kind == ERROR {
                    return match error_of(payload) {
                        Some(0) => Ok(()),
                        Some(e) => Err(io::Error::from_raw_os_error(-e)),
                        None => Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a truncated acknowledgement",
                        )),
                    };
                }
            }
        }
    }

    fn send(&mut self, kind: u16, flags: libc::c_int, body: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = HEADER + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&((flags | libc::NLM_F_REQUEST) as u16).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: a zeroed sockaddr_nl with the family set is the kernel as destination.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `to` are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the kernel did not answer",
                    ));
                }
                _ => return Err(e),
            }
        }
    }
}

/// An `ifaddrmsg` for the address, with IFA_LOCAL, IFA_ADDRESS and `more` attributes.
fn address_body(a: Address, more: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    body.push(libc::AF_INET as u8);
    body.push(a.prefix);
    body.push(0); // flags
    body.push(libc::RT_SCOPE_UNIVERSE);
    body.extend_from_slice(&a.index.to_ne_bytes());
    let octets = a.address.octets();
    for (kind, value) in [
        (libc::IFA_LOCAL, &octets[..]),
        (libc::IFA_ADDRESS, &octets[..]),
    ]
    .into_iter()
    .chain(more.iter().copied())
    {
        let len = 4 + value.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    body
}

/// The messages in a datagram: (type, sequence number, payload). A malformed length ends the
/// walk.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < HEADER {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        if len < HEADER || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(buf[8..12].try_into().ok()?);
        let payload = &buf[HEADER..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, seq, payload))
    })
}

/// The error code of an NLMSG_ERROR payload (0: an acknowledgement).
fn error_of(payload: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?))
}

/// The address of an RTM_NEWADDR payload, if it is IPv4 on the NIC `index`.
fn address_of(payload: &[u8], index: u32) -> Option<(Ipv4Addr, u8)> {
    let head = payload.get(..IFADDRMSG)?;
    if head[0] != libc::AF_INET as u8 || u32::from_ne_bytes(head[4..8].try_into().ok()?) != index {
        return None;
    }
    let prefix = head[1];
    let (mut local, mut address) = (None, None);
    let mut rest = &payload[IFADDRMSG..];
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(rest[0..2].try_into().ok()?));
        let kind = u16::from_ne_bytes(rest[2..4].try_into().ok()?);
        if len < 4 || len > rest.len() {
            break;
        }
        let value = &rest[4..len];
        if value.len() == 4 {
            let ip = Ipv4Addr::new(value[0], value[1], value[2], value[3]);
            match kind {
                libc::IFA_LOCAL => local = Some(ip),
                libc::IFA_ADDRESS => address = Some(ip),
                _ => {}
            }
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Some((local.or(address)?, prefix))
}

/// The index of the NIC named `nic`.
pub fn index(nic: &str) -> Result<u32, String> {
    let name = std::ffi::CString::new(nic).map_err(|_| format!("no interface {nic:?}"))?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(format!("there is no interface {nic}")),
        i => Ok(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_request_carries_the_address_twice_and_the_lease() {
        let a = Address {
            index: 7,
            address: Ipv4Addr::new(10, 77, 0, 100),
            prefix: 24,
        };
        let cache = [1u8; 16];
        let body = address_body(a, &[(libc::IFA_CACHEINFO, &cache)]);
        assert_eq!(&body[..8], &[2, 24, 0, 0, 7, 0, 0, 0][..]);
        assert_eq!(body.len(), 8 + 8 + 8 + 20);
        assert_eq!(
            address_of(&body, 7),
            Some((Ipv4Addr::new(10, 77, 0, 100), 24))
        );
        assert_eq!(address_of(&body, 8), None, "another NIC");
    }

    #[test]
    fn a_malformed_answer_ends_the_walk_without_a_panic() {
        let mut buf = vec![0u8; 40];
        buf[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(messages(&buf).count(), 0);
        buf[0..4].copy_from_slice(&20u32.to_ne_bytes());
        buf[20..24].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(
            messages(&buf).count(),
            1,
            "a too-short second message stops"
        );
        assert_eq!(address_of(&[2, 24], 0), None);
        assert_eq!(error_of(&[1, 2]), None);
    }

    #[test]
    fn loopback_lists_its_address() {
        let Ok(mut nl) = Netlink::open() else {
            return;
        };
        let lo = index("lo").expect("loopback");
        let all = nl.addresses(lo).expect("a dump");
        assert!(
            all.contains(&(Ipv4Addr::LOCALHOST, 8)),
            "{all:?} has 127.0.0.1/8"
        );
        assert!(index("no-such-nic0").is_err());
    }
}
