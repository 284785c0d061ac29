//! The Configuration row: the settings both agents of a pair must share, compared key by key
//! over the peer link, plus the problems the peer link finds (pair key mismatch, a path that
//! reaches the wrong agent or this agent itself, an unreadable report). Every reason names the key.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use duet_core::HeartbeatKind;

use crate::config::KernelConfig as Config;

/// The settings both agents must share, by key path (as written in the configuration file):
/// carried in every peer report so each agent can name the key that differs.
pub fn shared_settings(config: &Config) -> BTreeMap<String, String> {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let f = &config.failover;
    let agent_paths = config
        .heartbeats
        .iter()
        .filter(|h| h.kind == HeartbeatKind::Agent)
        .count();
    // The detection timings of every path to the buddy and to the outside: "cut off one
    // failure before the buddy declares this agent dead" holds only when both count alike.
    let timings = |kind: HeartbeatKind| {
        let mut all: Vec<String> = config
            .heartbeats
            .iter()
            .filter(|h| h.kind == kind)
            .map(|h| timing(h.interval, h.timeout, h.max_failures))
            .collect();
        all.sort_unstable();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    };
    let mut pair = [config.agent.name.as_str(), config.buddy.name.as_str()];
    pair.sort_unstable();
    [
        ("duet.version", env!("CARGO_PKG_VERSION").to_string()),
        ("pair", pair.join(" + ")),
        (
            "agent.mode",
            match config.agent.mode {
                duet_core::Mode::Automatic => "automatic",
                duet_core::Mode::Manual => "manual",
            }
            .to_string(),
        ),
        ("failover.prepare_timeout", d(f.prepare_timeout)),
        ("failover.going_online_timeout", d(f.going_online_timeout)),
        ("failover.going_offline_timeout", d(f.going_offline_timeout)),
        ("failover.min_switch_interval", d(f.min_switch_interval)),
        ("failover.startup_wait", d(f.startup_wait)),
        (
            "heartbeat (kind = \"agent\")",
            format!(
                "{agent_paths} path{}",
                if agent_paths == 1 { "" } else { "s" }
            ),
        ),
        (
            "sync",
            match &config.sync {
                Some(s) => format!(
                    "configured, {}",
                    timing(s.interval, s.timeout, s.max_failures)
                ),
                None => "not configured".to_string(),
            },
        ),
        (
            "heartbeat (kind = \"agent\") timing",
            timings(HeartbeatKind::Agent),
        ),
        (
            "heartbeat (kind = \"inverted\") timing",
            timings(HeartbeatKind::Inverted),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A path's detection settings in words: "200ms every, 150ms timeout, 3 failures allowed".
fn timing(interval: std::time::Duration, timeout: std::time::Duration, max: u32) -> String {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    format!(
        "every {}, {} timeout, {max} failures allowed",
        d(interval),
        d(timeout)
    )
}

/// The first key whose value differs between `ours` and `theirs` (the buddy's), as a reason
/// that names it, and how many more differ. A key only one side has (an agent of another
/// version) counts as differing too.
pub fn compare(
    ours: &BTreeMap<String, String>,
    theirs: &BTreeMap<String, String>,
    buddy: &str,
) -> Option<String> {
    let missing = "(not set)";
    let differing: Vec<(&str, &str, &str)> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|k| {
            let a = ours.get(k).map_or(missing, String::as_str);
            let b = theirs.get(k).map_or(missing, String::as_str);
            (a != b).then_some((k.as_str(), a, b))
        })
        .collect();
    // The version first: when it differs, the rest follows from it.
    let first = differing
        .iter()
        .find(|(k, _, _)| *k == "duet.version")
        .or_else(|| differing.first())?;
    let (key, a, b) = first;
    let mut reason = format!("{key} differs: {a} here, {b} on {buddy}");
    let others: Vec<&str> = differing
        .iter()
        .map(|(k, _, _)| *k)
        .filter(|k| k != key)
        .collect();
    if !others.is_empty() {
        reason.push_str(&format!(" (also differ: {})", others.join(", ")));
    }
    Some(reason)
}

/// The Configuration row's reason, if any: the peer link's problems first (they make the
/// comparison itself impossible or wrong), then the first shared setting that differs.
/// `buddy` is the buddy's last fresh report: its fingerprint ([`Config::fingerprint`], a hash
/// of [`shared_settings`]), and its settings while the fingerprints differ.
pub fn check(
    link_problems: Vec<String>,
    ours: &BTreeMap<String, String>,
    fingerprint: &str,
    buddy: Option<&crate::PeerReport>,
) -> Option<String> {
    let mut reasons = link_problems;
    if let Some(theirs) = buddy
        && theirs.fingerprint != fingerprint
    {
        // Until the buddy's settings arrive (it sends them once it saw our fingerprint differ),
        // or from an older agent without them: the fingerprint alone.
        reasons.push(
            compare(ours, &theirs.settings, &theirs.agent)
                .filter(|_| !theirs.settings.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "the shared settings or the duet version differ from {}'s",
                        theirs.agent
                    )
                }),
        );
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// One address of this machine: its NIC, the address and the prefix length of its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAddress {
    pub nic: String,
    pub ip: IpAddr,
    pub prefix: u8,
}

/// This machine's interface addresses (of the agent's network namespace), from getifaddrs(3).
pub fn local_addresses() -> std::io::Result<Vec<LocalAddress>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below by freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: a non-null ifa_addr/ifa_netmask points at a sockaddr of the family it names;
        // ifa_name is a NUL-terminated string.
        unsafe {
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let nic = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let (ip, prefix) = match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    let mask = if ifa.ifa_netmask.is_null() {
                        32
                    } else {
                        (*ifa.ifa_netmask.cast::<libc::sockaddr_in>())
                            .sin_addr
                            .s_addr
                            .count_ones() as u8
                    };
                    (
                        IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                        mask,
                    )
                }
                libc::AF_INET6 => {
                    let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    let mask = if ifa.ifa_netmask.is_null() {
                        128
                    } else {
                        (*ifa.ifa_netmask.cast::<libc::sockaddr_in6>())
                            .sin6_addr
                            .s6_addr
                            .iter()
                            .map(|b| b.count_ones() as u8)
                            .sum()
                    };
                    (IpAddr::V6(a.sin6_addr.s6_addr.into()), mask)
                }
                _ => continue,
            };
            out.push(LocalAddress { nic, ip, prefix });
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// This agent's configuration problems that only the machine shows (a path's source address
/// that is not on it). Only read when a path names a source address.
pub fn local_problems_of(config: &Config) -> Vec<String> {
    let pinned = config.heartbeats.iter().any(|h| h.source.is_some())
        || config.sync.as_ref().is_some_and(|s| s.source.is_some());
    if !pinned {
        return Vec::new();
    }
    match local_addresses() {
        Ok(addresses) => local_problems(config, &addresses),
        Err(e) => vec![format!("cannot list this machine's addresses: {e}")],
    }
}

/// Problems of this agent's own configuration that only the running machine shows: a path's
/// `source` that is not an address of this machine (the path could never be used).
pub fn local_problems(config: &Config, addresses: &[LocalAddress]) -> Vec<String> {
    let sources = config
        .heartbeats
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((format!("heartbeat[{i}].source"), h.source?)))
        .chain(
            config
                .sync
                .iter()
                .filter_map(|s| Some(("sync.source".to_string(), s.source?))),
        );
    sources
        .filter(|(_, ip)| !addresses.iter().any(|a| a.ip == *ip))
        .map(|(key, ip)| format!("{key}: {ip} is not an address of this machine"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::minimal;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_differing_key_is_named_with_both_values() {
        let ours = settings(&[("agent.mode", "automatic"), ("failover.startup_wait", "3s")]);
        let theirs = settings(&[("agent.mode", "manual"), ("failover.startup_wait", "3s")]);
        assert_eq!(
            compare(&ours, &theirs, "b").as_deref(),
            Some("agent.mode differs: automatic here, manual on b")
        );
        assert_eq!(compare(&ours, &ours, "b"), None);
    }

    #[test]
    fn the_version_comes_first_and_the_others_are_listed() {
        let ours = settings(&[("agent.mode", "automatic"), ("duet.version", "0.1.0")]);
        let theirs = settings(&[
            ("agent.mode", "manual"),
            ("duet.version", "0.2.0"),
            ("x", "1"),
        ]);
        assert_eq!(
            compare(&ours, &theirs, "b").as_deref(),
            Some("duet.version differs: 0.1.0 here, 0.2.0 on b (also differ: agent.mode, x)")
        );
    }

    #[test]
    fn a_source_that_is_not_an_address_of_this_machine_is_named() {
        let addresses = local_addresses().expect("getifaddrs");
        assert!(
            addresses
                .iter()
                .any(|a| a.ip == IpAddr::from([127, 0, 0, 1]) && a.prefix == 8),
            "{addresses:?}"
        );
        let ok = minimal("a", "b", "source = \"127.0.0.1\"");
        assert!(local_problems(&ok, &addresses).is_empty());
        let bad = minimal("a", "b", "source = \"203.0.113.7\"");
        assert_eq!(
            local_problems(&bad, &addresses),
            ["heartbeat[0].source: 203.0.113.7 is not an address of this machine"]
        );
    }

    #[test]
    fn shared_settings_name_the_pair_the_same_way_on_both_agents() {
        let a = minimal("a", "b", "");
        let b = minimal("b", "a", "");
        assert_eq!(
            compare(&shared_settings(&a), &shared_settings(&b), "b"),
            None
        );
        assert_eq!(shared_settings(&a)["pair"], "a + b");
        assert_eq!(
            shared_settings(&a)["heartbeat (kind = \"agent\")"],
            "1 path"
        );
    }
}
