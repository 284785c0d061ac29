//! `duet status`: the Status window in the terminal (minimal: the full view comes with the API
//! issue). Exit codes for monitoring: 0 all green, 1 a problem, 2 unreachable.

use std::net::SocketAddr;
use std::time::Duration;

use duet_core::{Led, Report};

use duet_core::api::Status;

/// Exit code: both LEDs green.
pub const EXIT_GREEN: i32 = 0;
/// Exit code: a problem somewhere (a red or transparent LED).
pub const EXIT_PROBLEM: i32 = 1;
/// Exit code: the agent's API did not answer.
pub const EXIT_UNREACHABLE: i32 = 2;

/// Fetches the status from an agent's API, prints it, and returns the exit code.
pub async fn run(api: SocketAddr, json: bool) -> i32 {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duet status: failed to build an HTTP client: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    let url = format!("http://{api}/api/v1/status");
    let status = match client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        Ok(r) => match r.json::<Status>().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("duet status: {url} sent an unreadable status: {e}");
                return EXIT_UNREACHABLE;
            }
        },
        Err(e) => {
            eprintln!("duet status: agent at {api} is unreachable: {e}");
            return EXIT_UNREACHABLE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("duet status: {e}"),
        }
    } else {
        print!("{}", render(&status));
    }
    exit_code(&status)
}

/// The exit code a status deserves.
pub fn exit_code(status: &Status) -> i32 {
    match &status.pair {
        Some(pair) if pair.local.led == Led::Green && pair.buddy.led == Led::Green => EXIT_GREEN,
        _ => EXIT_PROBLEM,
    }
}

/// Plain-text rendering: one block per agent, one line per row.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let Some(pair) = &status.pair else {
        return "status information is being retrieved (no tick yet)\n".into();
    };
    for report in [&pair.local, &pair.buddy] {
        out.push_str(&column(report));
    }
    if let Some(d) = &status.decision {
        out.push_str(&format!(
            "last decision (tick {}): {} — {}\ncore: {}\n",
            d.tick,
            d.state.state.label(),
            d.reason.text,
            status.core
        ));
    }
    out
}

fn column(report: &Report) -> String {
    let mut out = format!(
        "{} — LED {:?}: {}\n",
        report.agent,
        report.led,
        report.led.meaning()
    );
    for row in &report.rows {
        out.push_str(&format!("  {:<22} {}", row.label, row.value));
        if let Some(reason) = &row.reason {
            out.push_str(&format!(" ({reason})"));
        }
        if let Some(n) = row.failures.filter(|n| *n > 0) {
            out.push_str(&format!(" [{n} failures]"));
        }
        out.push('\n');
    }
    out
}
