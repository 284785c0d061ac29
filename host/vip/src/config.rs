//! The `[[vip]]` sections (one virtual IP per NIC) and the `[hooks]` section, as written and
//! validated. Errors name the key (`vip[1].garp_count: ...`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use duet_base::config::Errors;

/// One virtual IP on one NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// The NIC that carries it (`eth0`).
    pub nic: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    /// ARP probes sent to check the address is free before taking it; all must go unanswered.
    pub arp_tries: u32,
    /// How long to wait for answers after each probe.
    pub arp_wait: Duration,
    /// The kernel lease (`valid_lft`/`preferred_lft`): a VIP not renewed within it expires.
    pub lease: Duration,
    /// How often the Online agent renews the lease.
    pub renew: Duration,
    /// Gratuitous ARPs in the burst after taking the address, and the time between them.
    pub garp_count: u32,
    pub garp_interval: Duration,
    /// How often the Online agent checks by capture that nobody else answers for the VIP.
    pub verify_interval: Duration,
}

impl VipConfig {
    /// `10.0.0.10/24`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix)
    }
}

/// Commands run on state changes; each gets the hook's name as its argument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HooksConfig {
    pub online: Option<PathBuf>,
    pub offline: Option<PathBuf>,
    pub fault: Option<PathBuf>,
    pub vip_acquired: Option<PathBuf>,
    pub vip_released: Option<PathBuf>,
    /// A hook still running after this is killed (and the log says so).
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    nic: String,
    address: String,
    arp_tries: Option<u32>,
    arp_wait: Option<String>,
    lease: Option<String>,
    renew: Option<String>,
    garp_count: Option<u32>,
    garp_interval: Option<String>,
    verify_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    online: Option<PathBuf>,
    offline: Option<PathBuf>,
    fault: Option<PathBuf>,
    vip_acquired: Option<PathBuf>,
    vip_released: Option<PathBuf>,
    timeout: Option<String>,
}

/// Defaults (see docs/vip.md for the reasoning).
pub const ARP_TRIES: u32 = 3;
pub const ARP_WAIT: Duration = Duration::from_millis(100);
/// The shortest lease the kernel keeps (`valid_lft` counts whole seconds): a stopped agent's
/// VIP lapses soonest.
pub const LEASE: Duration = Duration::from_secs(1);
pub const RENEW: Duration = Duration::from_millis(250);
pub const GARP_COUNT: u32 = 6;
pub const GARP_INTERVAL: Duration = Duration::from_millis(250);
pub const VERIFY_INTERVAL: Duration = Duration::from_secs(10);
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Linux ignores a second ARP update of one address within this (`locktime`).
const LOCKTIME: Duration = Duration::from_secs(1);

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// Validates the `[[vip]]` sections; mistakes go to `errors`, naming the key.
pub fn validate_vips(raw: Vec<RawVip>, errors: &mut Errors) -> Vec<VipConfig> {
    let mut vips: Vec<VipConfig> = Vec::new();
    for (i, v) in raw.into_iter().enumerate() {
        let vip = validate_vip(i, v, errors);
        if let Some(j) = vips.iter().position(|o| o.nic == vip.nic) {
            errors.error(
                format!("vip[{i}].nic"),
                format!("vip[{j}] is already on {}: one VIP per NIC", vip.nic),
            );
        }
        if let Some(j) = vips
            .iter()
            .position(|o| o.address == vip.address && !vip.address.is_unspecified())
        {
            errors.error(
                format!("vip[{i}].address"),
                format!("{} is already vip[{j}]'s", vip.address),
            );
        }
        vips.push(vip);
    }
    vips
}

/// One `[[vip]]` section (`vip[i]`) on its own.
fn validate_vip(i: usize, v: RawVip, errors: &mut Errors) -> VipConfig {
    let at = |key: &str| format!("vip[{i}].{key}");
    let valid_nic = !v.nic.is_empty()
        && v.nic.len() < 16
        && !v.nic.contains(['/', ' ', '\0'])
        && v.nic != "."
        && v.nic != "..";
    if !valid_nic {
        errors.error(
            at("nic"),
            format!(
                "\"{}\" is not an interface name (1 to 15 characters, no '/' or spaces)",
                v.nic
            ),
        );
    }
    let (address, prefix) = address(&at("address"), &v.address, errors);
    let arp_tries = v.arp_tries.unwrap_or(ARP_TRIES);
    if !(1..=20).contains(&arp_tries) {
        errors.error(
            at("arp_tries"),
            format!("{arp_tries} is out of range: expected 1 to 20"),
        );
    }
    let garp_count = v.garp_count.unwrap_or(GARP_COUNT);
    if !(2..=100).contains(&garp_count) {
        errors.error(
            at("garp_count"),
            format!("{garp_count} is out of range: expected 2 to 100"),
        );
    }
    let arp_wait = errors.duration(
        &at("arp_wait"),
        v.arp_wait.as_deref(),
        ARP_WAIT,
        (10 * MS, 10 * S),
    );
    let lease = errors.duration(&at("lease"), v.lease.as_deref(), LEASE, (S, 3600 * S));
    if lease.subsec_nanos() != 0 {
        errors.error(
            at("lease"),
            format!(
                "{}: the kernel counts a lease in whole seconds",
                duet_base::config::fmt(lease)
            ),
        );
    }
    let renew = errors.duration(&at("renew"), v.renew.as_deref(), RENEW, (100 * MS, 600 * S));
    let garp_interval = errors.duration(
        &at("garp_interval"),
        v.garp_interval.as_deref(),
        GARP_INTERVAL,
        (10 * MS, 10 * S),
    );
    let verify_interval = errors.duration(
        &at("verify_interval"),
        v.verify_interval.as_deref(),
        VERIFY_INTERVAL,
        (S, 3600 * S),
    );
    let fmt = duet_base::config::fmt;
    if renew * 2 > lease {
        errors.error(
            at("renew"),
            format!(
                "{} is more than half the lease ({}): one late renewal would drop the VIP",
                fmt(renew),
                fmt(lease)
            ),
        );
    }
    let span = garp_interval * garp_count.saturating_sub(1);
    if span <= LOCKTIME && (2..=100).contains(&garp_count) {
        errors.error(at("garp_count"), format!("the gratuitous ARP burst spans {} ((garp_count - 1) × garp_interval): make it longer than 1 s, Linux ignores a second update within its 1 s locktime", fmt(span)));
    }
    VipConfig {
        nic: v.nic,
        address,
        prefix,
        arp_tries,
        arp_wait,
        lease,
        renew,
        garp_count,
        garp_interval,
        verify_interval,
    }
}

/// A VIP's address with its prefix (`10.0.0.10/24`): a usable unicast IPv4 address.
fn address(path: &str, text: &str, errors: &mut Errors) -> (Ipv4Addr, u8) {
    let Some((a, p)) = text.split_once('/') else {
        errors.error(
            path,
            format!(
                "\"{text}\" has no prefix: write it as the NIC's subnet has it, e.g. \"10.0.0.10/24\""
            ),
        );
        return (Ipv4Addr::UNSPECIFIED, 32);
    };
    match (a.parse::<Ipv4Addr>(), p.parse::<u8>()) {
        (Ok(a), Ok(p))
            if (1..=32).contains(&p)
                && !a.is_unspecified()
                && !a.is_loopback()
                && !a.is_multicast()
                && !a.is_broadcast() =>
        {
            (a, p)
        }
        _ => {
            errors.error(
                path,
                format!(
                    "\"{text}\" is not a usable IPv4 address with a prefix such as \"10.0.0.10/24\""
                ),
            );
            (Ipv4Addr::UNSPECIFIED, 32)
        }
    }
}

/// Validates `[hooks]`: each named file must exist (relative paths from the configuration's
/// folder).
pub fn validate_hooks(raw: RawHooks, base: &Path, errors: &mut Errors) -> HooksConfig {
    let mut file = |key: &str, p: Option<PathBuf>| {
        let p = p.map(|p| if p.is_absolute() { p } else { base.join(p) })?;
        if !p.is_file() {
            errors.error(
                format!("hooks.{key}"),
                format!("{} is not a file", p.display()),
            );
        }
        Some(p)
    };
    let online = file("online", raw.online);
    let offline = file("offline", raw.offline);
    let fault = file("fault", raw.fault);
    let vip_acquired = file("vip_acquired", raw.vip_acquired);
    let vip_released = file("vip_released", raw.vip_released);
    let timeout = errors.duration(
        "hooks.timeout",
        raw.timeout.as_deref(),
        HOOK_TIMEOUT,
        (10 * MS, 3600 * S),
    );
    HooksConfig {
        online,
        offline,
        fault,
        vip_acquired,
        vip_released,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    /// `[[vip]]` and `[hooks]` as the configuration file has them.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sections {
        #[serde(default, rename = "vip")]
        vips: Vec<RawVip>,
        #[serde(default)]
        hooks: RawHooks,
    }

    fn parse(text: &str) -> Result<Vec<VipConfig>, Vec<String>> {
        let raw: Sections =
            duet_base::config::parse_section(text).map_err(|e| vec![e.to_string()])?;
        let mut errors = Errors::new();
        let vips = validate_vips(raw.vips, &mut errors);
        validate_hooks(raw.hooks, Path::new("."), &mut errors);
        errors
            .finish(vips)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text).expect_err("invalid")
    }

    #[test]
    fn vips_get_defaults() {
        let vips = parse(
            "[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\n[[vip]]\nnic = \"eth1\"\naddress = \"10.1.0.10/16\"\nlease = \"10s\"\n",
        )
        .expect("valid");
        assert_eq!(vips[0].cidr(), "10.0.0.10/24");
        assert_eq!(vips[0].lease, LEASE);
        assert_eq!(vips[1].lease, Duration::from_secs(10));
        assert_eq!(vips[0].arp_tries, ARP_TRIES);
        // The default burst spans more than Linux's 1 s locktime.
        assert!(GARP_INTERVAL * (GARP_COUNT - 1) > Duration::from_secs(1));
    }

    #[test]
    fn vip_mistakes_name_their_key() {
        let e = errors("[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10\"");
        assert!(
            e[0].starts_with("vip[0].address: ") && e[0].contains("no prefix"),
            "{e:?}"
        );
        let e = errors(
            "[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\ngarp_count = 3\ngarp_interval = \"300ms\"",
        );
        assert!(
            e[0].starts_with("vip[0].garp_count: ") && e[0].contains("locktime"),
            "{e:?}"
        );
        let e = errors("[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\nrenew = \"3s\"");
        assert!(e[0].starts_with("vip[0].renew: "), "{e:?}");
        let e = errors(
            "[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\n[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("vip[1].nic: ") && e[1].starts_with("vip[1].address: "),
            "{e:?}"
        );
        let e = errors("[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\nlease = \"500ms\"");
        assert!(e[0].starts_with("vip[0].lease: "), "{e:?}");
        let e = errors("[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\nlease = \"1500ms\"");
        assert!(
            e[0].starts_with("vip[0].lease: ") && e[0].contains("whole seconds"),
            "{e:?}"
        );
        let e = errors("[hooks]\nonline = \"/nonexistent/hook\"");
        assert!(e[0].starts_with("hooks.online: "), "{e:?}");
        let e = errors("[[vip]]\nnic = \"eth0\"\naddress = \"10.0.0.10/24\"\nbogus = 1");
        assert!(e[0].contains("bogus"), "{e:?}");
    }
}
