//! `duet status`: the Status window in the terminal — colour on a TTY, plain otherwise, `--json`,
//! `--watch`. Exit codes for monitoring tools: 0 all green, 1 a problem, 2 unreachable (the
//! agent's API does not answer, or its buddy is "Agent Status: Unreachable").

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use duet_base::text::printable;
use duet_core::api::{Overview, Status, duration_words};
use duet_core::{Led, Report};

use super::{Endpoint, Target};

/// Show the Status window of an agent (exit 0 all green, 1 a problem, 2 unreachable).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Redraw every SECONDS (default 2) until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let api = self.target.endpoint()?;
        let options = Options {
            json: self.json,
            watch: self.watch.map(|s| Duration::from_secs(s.max(1))),
            colour: Options::colour_default(),
        };
        super::exit(run(api, options).await)
    }
}

/// Exit code: both LEDs green.
pub const EXIT_GREEN: i32 = 0;
/// Exit code: a problem somewhere (a red or transparent LED).
pub const EXIT_PROBLEM: i32 = 1;
/// Exit code: the agent, or its buddy, is unreachable.
pub const EXIT_UNREACHABLE: i32 = 2;

/// How to show the status.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub json: bool,
    /// Redraw every this long until interrupted.
    pub watch: Option<Duration>,
    pub colour: bool,
}

impl Options {
    /// Colour when standard output is a terminal and `NO_COLOR` is not set.
    pub fn colour_default() -> bool {
        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    }
}

/// Fetches, prints and returns the exit code; with `watch`, repeats until interrupted.
pub async fn run(api: Endpoint, options: Options) -> i32 {
    let client = match api.client(Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("duet status: {e:#}");
            return EXIT_UNREACHABLE;
        }
    };
    loop {
        let code = once(&client, &api, options).await;
        let Some(every) = options.watch else {
            return code;
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return code,
        }
    }
}

async fn once(client: &reqwest::Client, api: &Endpoint, options: Options) -> i32 {
    let url = api.url("/api/v1/status");
    let fetched = match client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
    {
        Ok(r) => r
            .json::<Overview>()
            .await
            .map_err(|e| format!("{url} sent an unreadable status: {e}")),
        Err(e) => Err(format!(
            "agent at {api} is unreachable: {}",
            super::causes(&e)
        )),
    };
    if options.watch.is_some() && options.colour {
        print!("\x1b[2J\x1b[H"); // clear the screen for the next frame
    }
    let status = match fetched {
        Ok(s) => s,
        Err(why) => {
            eprintln!("duet status: {}", printable(&why));
            return EXIT_UNREACHABLE;
        }
    };
    if options.json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("duet status: {e}"),
        }
    } else {
        print!("{}", render(&status, options.colour));
    }
    let _ = std::io::stdout().flush();
    exit_code(&status.status)
}

/// The exit code a status deserves.
pub fn exit_code(status: &Status) -> i32 {
    let Some(pair) = &status.pair else {
        return EXIT_PROBLEM;
    };
    if pair.buddy.rows.iter().any(|r| r.key == "agent-status") {
        return EXIT_UNREACHABLE;
    }
    if pair.local.led == Led::Green && pair.buddy.led == Led::Green {
        EXIT_GREEN
    } else {
        EXIT_PROBLEM
    }
}

/// The Status window as text: one block per agent, one line per row.
pub fn render(overview: &Overview, colour: bool) -> String {
    let status = &overview.status;
    let Some(pair) = &status.pair else {
        return "Status information is being retrieved (no decision yet)\n".into();
    };
    let mut out = column(&pair.local, "report just made", colour);
    let age = overview.buddy_report_age_ms.map_or_else(
        || "no report yet".to_string(),
        |ms| format!("last report {} old", duration_words(ms)),
    );
    out.push_str(&column(&pair.buddy, &age, colour));
    if let (Some(d), Some((question, answer))) = (&status.decision, overview.why()) {
        out.push_str(&format!(
            "{} {} (for {}; tick {})\ncore: {}\n",
            printable(&question),
            printable(&answer),
            duration_words(d.at.saturating_sub(d.state.since)),
            d.tick,
            printable(&status.core)
        ));
    }
    if let Some(lease) = &overview.witness {
        out.push_str(&format!("witness lease: {}\n", printable(&lease.line())));
    }
    out
}

fn column(report: &Report, age: &str, colour: bool) -> String {
    let (paint, reset) = match (colour, report.led) {
        (false, _) => ("", ""),
        (true, Led::Green) => ("\x1b[32m", "\x1b[0m"),
        (true, Led::Red) => ("\x1b[31m", "\x1b[0m"),
        (true, Led::Transparent) => ("\x1b[2m", "\x1b[0m"),
    };
    let led = match report.led {
        Led::Green => "green",
        Led::Red => "red",
        Led::Transparent => "transparent",
    };
    let state = report.state.map_or("state unknown", |s| s.label());
    let mut out = format!(
        "{paint}● {}{reset} — {state} — LED {led}: {} ({age})\n",
        printable(&report.agent),
        report.led.meaning()
    );
    for row in &report.rows {
        let (on, off) = if colour && row.turns_led_red {
            ("\x1b[31m", "\x1b[0m")
        } else {
            ("", "")
        };
        out.push_str(&format!(
            "  {:<24} {on}{}{off}",
            printable(&row.label),
            printable(&row.value)
        ));
        if let Some(reason) = &row.reason {
            out.push_str(&format!(" ({})", printable(reason)));
        }
        if let Some(n) = row.failures.filter(|n| *n > 0) {
            out.push_str(&format!(" [{n} failures]"));
        }
        out.push('\n');
    }
    out
}
