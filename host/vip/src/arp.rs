//! ARP frames on Ethernet: the probes that check a VIP is free, the gratuitous announcements,
//! and reading the answers seen by capture.

use std::net::Ipv4Addr;

/// An Ethernet address.
pub type Mac = [u8; 6];

const BROADCAST: Mac = [0xff; 6];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const REQUEST: u16 = 1;
const REPLY: u16 = 2;

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn frame(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr, dst: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&ETHERTYPE_ARP);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    // Pad to the Ethernet minimum (without the FCS).
    f.resize(60, 0);
    f
}

/// An ARP probe (RFC 5227: sender address 0.0.0.0, so no cache learns from it) asking who has
/// `vip`.
pub fn probe(ours: Mac, vip: Ipv4Addr) -> Vec<u8> {
    frame(REQUEST, ours, Ipv4Addr::UNSPECIFIED, [0; 6], vip, BROADCAST)
}

/// A gratuitous ARP (a broadcast request for our own address): neighbours that have an entry
/// for `vip` update it to `ours`.
pub fn gratuitous(ours: Mac, vip: Ipv4Addr) -> Vec<u8> {
    frame(REQUEST, ours, vip, [0; 6], vip, BROADCAST)
}

/// If `frame` is an ARP answer for `vip` (a reply, or another host's gratuitous request for
/// it), the MAC that claims it.
pub fn claimant(frame: &[u8], vip: Ipv4Addr) -> Option<Mac> {
    if frame.len() < 42
        || frame[12..14] != ETHERTYPE_ARP
        || frame[14..20] != [0, 1, 0x08, 0x00, 6, 4]
    {
        return None;
    }
    let op = u16::from_be_bytes([frame[20], frame[21]]);
    let sha: Mac = frame[22..28].try_into().ok()?;
    let spa = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    (spa == vip && (op == REPLY || op == REQUEST)).then_some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const OURS: Mac = [2, 0, 0, 0, 0, 1];

    #[test]
    fn macs_round_trip_and_bad_text_is_refused() {
        assert_eq!(parse_mac("02:00:00:00:00:01"), Some(OURS));
        assert_eq!(format_mac(&OURS), "02:00:00:00:00:01");
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:01"), None);
    }

    #[test]
    fn a_probe_claims_nothing_and_a_gratuitous_arp_claims_the_vip() {
        let p = probe(OURS, VIP);
        assert_eq!(p.len(), 60);
        assert_eq!(&p[0..6], &BROADCAST);
        assert_eq!(&p[38..42], &VIP.octets());
        // A probe's sender address is 0.0.0.0: it claims no address.
        assert_eq!(claimant(&p, VIP), None);
        assert_eq!(claimant(&gratuitous(OURS, VIP), VIP), Some(OURS));
        assert_eq!(
            claimant(&gratuitous(OURS, VIP), Ipv4Addr::new(10, 0, 0, 11)),
            None
        );
    }

    #[test]
    fn a_reply_names_its_sender_and_other_frames_are_ignored() {
        let theirs = [2, 0, 0, 0, 0, 2];
        let reply = frame(REPLY, theirs, VIP, OURS, Ipv4Addr::UNSPECIFIED, OURS);
        assert_eq!(claimant(&reply, VIP), Some(theirs));
        let mut ip = reply.clone();
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(claimant(&ip, VIP), None);
        assert_eq!(claimant(&reply[..30], VIP), None);
    }
}
