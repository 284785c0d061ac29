//! `duet events`: the event log in the terminal (a page of `GET /api/v1/events`), as a table
//! or `--json`. Exit 0, 2 when the agent does not answer or refuses.

use std::time::Duration;

use duet_api::EventPage;
use duet_base::text::printable;

use super::Target;

/// The event log: alarms, notices and applications' events, newest first (exit 2 when the
/// agent does not answer).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// How many events (at most 1000).
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: u64,
    /// Skip this many (paging).
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Only events of this origin (agent name).
    #[arg(long)]
    origin: Option<String>,
    /// Only this severity: info, warning, error, critical.
    #[arg(long)]
    severity: Option<String>,
    /// Only this code (e.g. switch, heartbeat_failing).
    #[arg(long)]
    code: Option<String>,
    /// Only events raised by this source (duet, or a token's name).
    #[arg(long)]
    source: Option<String>,
    /// Oldest first.
    #[arg(long)]
    oldest_first: bool,
    /// Print the page as JSON.
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let api = self.target.endpoint()?;
        let filter = Filter {
            limit: self.limit,
            offset: self.offset,
            origin: self.origin,
            severity: self.severity,
            code: self.code,
            source: self.source,
            ascending: self.oldest_first,
            json: self.json,
        };
        super::exit(run(api, filter).await)
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub limit: u64,
    pub offset: u64,
    pub origin: Option<String>,
    pub severity: Option<String>,
    pub code: Option<String>,
    pub source: Option<String>,
    /// Oldest first.
    pub ascending: bool,
    pub json: bool,
}

pub async fn run(api: super::Endpoint, filter: Filter) -> i32 {
    let client = match api.client(Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duet events: {e:#}");
            return 2;
        }
    };
    let mut query: Vec<(&str, String)> = vec![
        ("limit", filter.limit.to_string()),
        ("offset", filter.offset.to_string()),
        (
            "order",
            if filter.ascending { "asc" } else { "desc" }.to_string(),
        ),
    ];
    for (key, value) in [
        ("origin", &filter.origin),
        ("severity", &filter.severity),
        ("code", &filter.code),
        ("source", &filter.source),
    ] {
        if let Some(v) = value {
            query.push((key, v.clone()));
        }
    }
    let response = match client
        .get(api.url("/api/v1/events"))
        .query(&query)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "duet events: agent at {api} is unreachable: {}",
                super::causes(&e)
            );
            return 2;
        }
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("duet events: {api} answered {status}: {}", printable(&body));
        return 2;
    }
    if filter.json {
        println!("{body}");
        return 0;
    }
    let page: EventPage = match serde_json::from_str(&body) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "duet events: unreadable answer from {api}: {}",
                printable(&e.to_string())
            );
            return 2;
        }
    };
    for e in &page.events {
        let at = duet_base::text::time(e.at);
        println!(
            "{at}  {:<8} {:<14} {:<24} {:<12} {}",
            e.severity.as_str(),
            e.id,
            printable(&e.code),
            printable(&e.source),
            printable(&e.message)
        );
    }
    println!(
        "-- {} of {} events (offset {}) --",
        page.events.len(),
        page.total,
        page.offset
    );
    0
}
