//! The witness composed: the client (`duet-witness`) behind the kernel's gate, its row in the
//! Status window, and the events when the lease changes hands or cannot be renewed.

use std::sync::Arc;
use std::time::Duration;

use duet_base::Severity;
use duet_core::{Check, Probe};
use duet_events::EventLog;
use duet_witness::client::{Availability, Client};
use tokio_util::sync::CancellationToken;

/// The client as the kernel's [`duet_kernel::witness::Witness`].
pub(crate) struct Gate(pub Arc<Client>);

impl duet_kernel::witness::Witness for Gate {
    fn view(&self) -> duet_core::Witness {
        self.0.view()
    }

    fn want(&self, hold: bool) {
        self.0.want(hold);
    }
}

/// The Witness row: Available / Not Available / Invalid, who holds the lease, its revision,
/// this agent's last renewal.
pub(crate) fn row(client: &Client) -> Probe {
    let row = client.row();
    let holder = row.holder.as_deref().unwrap_or("nobody");
    let mut detail = format!("held by {holder}");
    if let Some(r) = row.revision {
        detail.push_str(&format!(", revision {r}"));
    }
    if let Some(ago) = row.renewed_ago {
        detail.push_str(&format!(", renewed {} ms ago", ago.as_millis()));
    }
    let (status, value) = match &row.availability {
        Availability::Available => (Check::Ok, format!("Available; {detail}")),
        Availability::NotAvailable(why) => (
            Check::Failing(why.clone()),
            format!("Not Available; {detail}"),
        ),
        Availability::Invalid(why) => (Check::Failing(why.clone()), "Invalid".to_string()),
    };
    Probe {
        key: "witness".into(),
        label: "Witness".into(),
        status,
        value,
        counts_toward_led: true,
        failures: 0,
        last_success: None,
    }
}

/// Raises an event when the lease changes hands, and when this agent holds it but cannot
/// renew it (the witness unavailable or invalid) and when that ends.
pub(crate) async fn events(client: Arc<Client>, events: Arc<EventLog>, stop: CancellationToken) {
    let mut holder = None;
    // Still connecting at start is no news: only a change after the first answer is.
    let mut trouble = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let row = client.row();
        if row.holder.is_some() && row.holder != holder {
            let to = row.holder.clone().unwrap_or_default();
            let from = holder.as_deref().unwrap_or("nobody");
            events.raise(
                Severity::Info,
                "witness_lease_moved",
                format!("the witness lease passed from {from} to {to}"),
            );
            holder = row.holder.clone();
        }
        let now = !matches!(row.availability, Availability::Available);
        if trouble.is_none()
            && row.revision.is_none()
            && matches!(row.availability, Availability::NotAvailable(_))
        {
            continue;
        }
        if trouble != Some(now) && (trouble.is_some() || now) {
            trouble = Some(now);
            let (severity, code, message) = match &row.availability {
                Availability::Available => (
                    Severity::Info,
                    "witness_available",
                    "the witness is available again".to_string(),
                ),
                Availability::NotAvailable(why) | Availability::Invalid(why) => (
                    Severity::Warning,
                    "witness_unavailable",
                    format!("the witness lease cannot be renewed or read: {why}"),
                ),
            };
            events.raise(severity, code, message);
        }
        trouble.get_or_insert(now);
    }
}

/// The witness's families in `/metrics`: whether this agent holds the lease, whether the
/// witness answers, the key's revision, the age of this agent's last renewal (while it holds
/// the lease), the writes that held it, the refused compare-and-swaps, the failed operations,
/// and whether an operator's force online without the witness is in force.
pub(crate) fn metrics(client: &Client, overridden: bool, agent: &str) -> String {
    use duet_api::metrics::{escape, family};
    use std::fmt::Write as _;
    let agent = escape(agent);
    let row = client.row();
    let counters = client.counters();
    let available = matches!(row.availability, Availability::Available);
    let mut out = String::new();
    let families: [(&str, &str, &str, Option<f64>); 8] = [
        (
            "duet_witness_lease_held",
            "gauge",
            "1 while this agent holds the witness lease (its deadline not passed).",
            Some(f64::from(u8::from(client.view().held))),
        ),
        (
            "duet_witness_available",
            "gauge",
            "1 while the witness answers (its last operation succeeded within a renewal period).",
            Some(f64::from(u8::from(available))),
        ),
        (
            "duet_witness_revision",
            "gauge",
            "The revision of the pair's lease key last seen (0: never written).",
            row.revision.map(|r| r as f64),
        ),
        (
            "duet_witness_last_renewal_age_seconds",
            "gauge",
            "Since the send time of this agent's last acknowledged renewal, while it holds the lease.",
            row.renewed_ago.map(|d| d.as_secs_f64()),
        ),
        (
            "duet_witness_renewals_total",
            "counter",
            "Acknowledged writes that took or renewed the lease.",
            Some(counters.renewals as f64),
        ),
        (
            "duet_witness_refusals_total",
            "counter",
            "Compare-and-swap writes refused because the lease's revision moved on.",
            Some(counters.refused as f64),
        ),
        (
            "duet_witness_failures_total",
            "counter",
            "Witness operations (reads, writes, renewals) that failed or timed out.",
            Some(counters.failures as f64),
        ),
        (
            "duet_witness_override",
            "gauge",
            "1 while an operator's force online without the witness is in force.",
            Some(f64::from(u8::from(overridden))),
        ),
    ];
    for (name, kind, help, value) in families {
        family(&mut out, name, kind, help);
        if let Some(v) = value {
            let _ = writeln!(out, "{name}{{agent=\"{agent}\"}} {v}");
        }
    }
    out
}
