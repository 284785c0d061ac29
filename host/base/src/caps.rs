//! The process's Linux capabilities: what it may do without being root. duet needs
//! CAP_NET_ADMIN (the virtual IP's address over rtnetlink) and CAP_NET_RAW (raw ICMP sockets,
//! ARP through AF_PACKET); a capability missing is a fault of the agent's setup, shown on the
//! row that needs it, never a failure of what that row watches.

/// A capability duet uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Adds, renews and removes the virtual IP (rtnetlink).
    NetAdmin,
    /// Raw ICMP sockets, ARP probes and gratuitous ARP (AF_PACKET).
    NetRaw,
}

impl Capability {
    /// The bit in the kernel's capability masks (linux/capability.h).
    fn bit(self) -> u32 {
        match self {
            Capability::NetAdmin => 12,
            Capability::NetRaw => 13,
        }
    }

    /// The name systemd and capabilities(7) use.
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
        }
    }
}

/// The effective capability mask of this process (`CapEff` in /proc/self/status); None where
/// it cannot be read (not Linux, no /proc): then nothing is reported missing.
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_mask(&status, "CapEff")
}

/// The mask on the line `field:` of a /proc/<pid>/status text.
pub fn parse_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let hex = line.strip_prefix(field)?.strip_prefix(':')?.trim();
        u64::from_str_radix(hex, 16).ok()
    })
}

/// Which of `wanted` this process lacks, in order.
pub fn missing(wanted: &[Capability]) -> Vec<Capability> {
    let Some(mask) = effective() else {
        return Vec::new();
    };
    lacking(mask, wanted)
}

fn lacking(mask: u64, wanted: &[Capability]) -> Vec<Capability> {
    wanted
        .iter()
        .copied()
        .filter(|c| mask & (1 << c.bit()) == 0)
        .collect()
}

/// "CAP_NET_ADMIN and CAP_NET_RAW": names for a message.
pub fn names(caps: &[Capability]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_mask_is_read_and_missing_capabilities_named() {
        let status = "Name:\tduet\nCapPrm:\t0000000000003000\nCapEff:\t0000000000001000\n";
        let mask = parse_mask(status, "CapEff").expect("CapEff");
        assert_eq!(mask, 0x1000);
        let lack = lacking(mask, &[Capability::NetAdmin, Capability::NetRaw]);
        assert_eq!(lack, [Capability::NetRaw]);
        assert_eq!(names(&lack), "CAP_NET_RAW");
        assert_eq!(
            names(&lacking(0, &[Capability::NetAdmin, Capability::NetRaw])),
            "CAP_NET_ADMIN and CAP_NET_RAW"
        );
        assert!(lacking(0x3000, &[Capability::NetAdmin, Capability::NetRaw]).is_empty());
    }
}
