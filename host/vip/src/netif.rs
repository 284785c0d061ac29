//! The NIC side of a VIP, through iproute2 (`ip`): add or renew the address as a kernel lease,
//! remove it, read the NIC's addresses and MAC.

use std::net::Ipv4Addr;
use std::process::Command;

use super::arp::{Mac, parse_mac};
use super::config::VipConfig;

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Adds the VIP to its NIC, or renews it: either way it now expires `lease` from now unless
/// renewed again.
pub fn lease(vip: &VipConfig) -> Result<(), String> {
    let secs = vip.lease.as_secs().max(1).to_string();
    ip(&[
        "-4",
        "addr",
        "replace",
        &vip.cidr(),
        "dev",
        &vip.nic,
        "valid_lft",
        &secs,
        "preferred_lft",
        &secs,
    ])
    .map(drop)
}

/// Removes the VIP from its NIC (nothing to do when it is not there).
pub fn remove(vip: &VipConfig) -> Result<(), String> {
    match ip(&["-4", "addr", "del", &vip.cidr(), "dev", &vip.nic]) {
        Ok(_) => Ok(()),
        Err(e) if not_there(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `ip addr del` failed only because the address is not on the NIC: the kernel's
/// EADDRNOTAVAIL, which iproute2 prints as "Cannot assign requested address" or, with the
/// kernel's extended ack, "Error: ipv4: Address not found.". The VIP is already gone, which
/// is what removing it asked for. A missing NIC or a refused permission stays an error.
fn not_there(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    lower.contains("cannot assign requested address") || lower.contains("address not found")
}

/// The NIC's IPv4 addresses with their prefixes.
pub fn addresses(nic: &str) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    let text = ip(&["-4", "-j", "addr", "show", "dev", nic])?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("cannot read `ip -j addr`: {e}"))?;
    let mut all = Vec::new();
    for link in json.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let local = a["local"].as_str().and_then(|s| s.parse().ok());
            let prefix = a["prefixlen"].as_u64().and_then(|p| u8::try_from(p).ok());
            if let (Some(local), Some(prefix)) = (local, prefix) {
                all.push((local, prefix));
            }
        }
    }
    Ok(all)
}

/// Whether the VIP is on its NIC now.
pub fn holds(vip: &VipConfig) -> Result<bool, String> {
    Ok(addresses(&vip.nic)?.iter().any(|(a, _)| *a == vip.address))
}

/// The NIC's MAC address.
pub fn mac(nic: &str) -> Result<Mac, String> {
    let path = format!("/sys/class/net/{nic}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("no interface {nic}: {e}"))?;
    parse_mac(&text).ok_or_else(|| format!("{path}: not a MAC address: {}", text.trim()))
}

/// The MACs of every interface of this machine (its namespace), but loopback's: what the
/// buddy needs to recognise this agent's lapsing lease.
pub fn all_macs() -> Vec<Mac> {
    let mut macs = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return macs;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(m) = mac(&name)
            && m != [0; 6]
            && !macs.contains(&m)
        {
            macs.push(m);
        }
    }
    macs.sort_unstable();
    macs
}

/// Whether `a` is inside `net/prefix`.
pub fn in_subnet(a: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & mask == u32::from(net) & mask
}

/// Why the VIP cannot live on its NIC as configured: the NIC is missing, or the VIP is outside
/// every subnet of the NIC's own addresses.
pub fn subnet_problem(index: usize, vip: &VipConfig) -> Option<String> {
    let own = match addresses(&vip.nic) {
        Ok(a) => a,
        Err(_) => {
            return Some(format!(
                "vip[{index}].nic: there is no interface {} on this agent",
                vip.nic
            ));
        }
    };
    let own: Vec<_> = own.into_iter().filter(|(a, _)| *a != vip.address).collect();
    if own.iter().any(|(a, p)| in_subnet(vip.address, *a, *p)) {
        return None;
    }
    let list = own
        .iter()
        .map(|(a, p)| format!("{a}/{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "vip[{index}].address: {} is outside {}'s subnet{} ({})",
        vip.address,
        vip.nic,
        if own.len() == 1 { "" } else { "s" },
        if list.is_empty() {
            "no IPv4 address".to_string()
        } else {
            list
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_an_address_that_is_not_there_is_not_an_error() {
        // iproute2 6.x on a kernel with extended acks, and older iproute2 (RTNETLINK).
        assert!(not_there(
            "`ip -4 addr del 10.77.0.100/24 dev lan` failed: Error: ipv4: Address not found."
        ));
        assert!(not_there(
            "`ip -4 addr del 10.77.0.100/24 dev lan` failed: RTNETLINK answers: Cannot assign requested address"
        ));
        // Real failures stay failures.
        assert!(!not_there(
            "`ip -4 addr del 10.77.0.100/24 dev eth9` failed: Cannot find device \"eth9\""
        ));
        assert!(!not_there(
            "`ip -4 addr del 10.77.0.100/24 dev lan` failed: RTNETLINK answers: Operation not permitted"
        ));
    }

    #[test]
    fn subnets() {
        let net = Ipv4Addr::new(10, 77, 0, 1);
        assert!(in_subnet(Ipv4Addr::new(10, 77, 0, 100), net, 24));
        assert!(!in_subnet(Ipv4Addr::new(10, 77, 1, 100), net, 24));
        assert!(in_subnet(Ipv4Addr::new(10, 77, 1, 100), net, 16));
        assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), net, 0));
        assert!(!in_subnet(Ipv4Addr::new(10, 77, 0, 2), net, 32));
    }
}
