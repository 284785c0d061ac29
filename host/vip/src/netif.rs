//! The NIC side of a VIP, over the agent's rtnetlink socket ([`crate::netlink`]): add or
//! renew the address as a kernel lease, remove it, read the NIC's addresses; its MAC from
//! sysfs.

use std::net::Ipv4Addr;

use super::arp::{Mac, parse_mac};
use super::config::VipConfig;
use crate::netlink::{Address, Netlink, index};

fn address(vip: &VipConfig) -> Result<Address, String> {
    Ok(Address {
        index: index(&vip.nic)?,
        address: vip.address,
        prefix: vip.prefix,
    })
}

/// Adds the VIP to its NIC, or renews it: either way it now expires `lease` from now unless
/// renewed again.
pub fn lease(nl: &mut Netlink, vip: &VipConfig) -> Result<(), String> {
    nl.lease(address(vip)?, vip.lease)
}

/// Removes the VIP from its NIC (nothing to do when it is not there).
pub fn remove(nl: &mut Netlink, vip: &VipConfig) -> Result<(), String> {
    nl.remove(address(vip)?)
}

/// Removes every configured VIP that is on its NIC, outside a running agent (the service's
/// `ExecStopPost`, after the agent exited however it did): per VIP its address and whether it
/// was removed (`Ok(false)`: it was not there).
pub fn release(specs: &[VipConfig]) -> Vec<(String, Result<bool, String>)> {
    let mut nl = match Netlink::open() {
        Ok(nl) => nl,
        Err(e) => {
            let why = format!("cannot open an rtnetlink socket: {e}");
            return specs.iter().map(|v| (v.cidr(), Err(why.clone()))).collect();
        }
    };
    specs
        .iter()
        .map(|vip| {
            let result = holds(&mut nl, vip).and_then(|held| {
                if held {
                    remove(&mut nl, vip)?;
                }
                Ok(held)
            });
            (format!("{} on {}", vip.cidr(), vip.nic), result)
        })
        .collect()
}

/// The NIC's IPv4 addresses with their prefixes.
pub fn addresses(nl: &mut Netlink, nic: &str) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    nl.addresses(index(nic)?)
}

/// Whether the VIP is on its NIC now.
pub fn holds(nl: &mut Netlink, vip: &VipConfig) -> Result<bool, String> {
    Ok(addresses(nl, &vip.nic)?
        .iter()
        .any(|(a, _)| *a == vip.address))
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
pub fn subnet_problem(nl: &mut Netlink, index: usize, vip: &VipConfig) -> Option<String> {
    let own = match addresses(nl, &vip.nic) {
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
    fn subnets() {
        let net = Ipv4Addr::new(10, 77, 0, 1);
        assert!(in_subnet(Ipv4Addr::new(10, 77, 0, 100), net, 24));
        assert!(!in_subnet(Ipv4Addr::new(10, 77, 1, 100), net, 24));
        assert!(in_subnet(Ipv4Addr::new(10, 77, 1, 100), net, 16));
        assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), net, 0));
        assert!(!in_subnet(Ipv4Addr::new(10, 77, 0, 2), net, 32));
    }
}
