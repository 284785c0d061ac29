//! Reusable pieces of the UI: the LED, the error view, time formatting.

use duet_core::api::duration_words;
use duet_core::{Led, TimestampMs};
use leptos::prelude::*;

/// The class and the `data-led` value of an LED.
pub fn led_name(led: Led) -> &'static str {
    match led {
        Led::Green => "green",
        Led::Red => "red",
        Led::Transparent => "transparent",
    }
}

/// The shape drawn in an LED and the word beside it: the state reads without colour (in
/// greyscale, to the colour-blind, in a screenshot).
pub fn led_sign(led: Led) -> (&'static str, &'static str) {
    match led {
        Led::Green => ("✓", "OK"),
        Led::Red => ("!", "Problem"),
        Led::Transparent => ("…", "Retrieving"),
    }
}

/// How bad an LED is, for the worst of several (tab title, favicon).
pub fn severity(led: Led) -> u8 {
    match led {
        Led::Green => 0,
        Led::Transparent => 1,
        Led::Red => 2,
    }
}

/// An agent's LED: the colour with a shape in it, its word beside it, and its meaning in
/// words (title and aria-label). Clicking it opens the Status window.
#[component]
pub fn LedView(
    /// Whose LED it is (part of the text).
    agent: String,
    led: Led,
    /// Called on click.
    on_open: Callback<()>,
) -> impl IntoView {
    let name = led_name(led);
    let (shape, word) = led_sign(led);
    let text = format!("{agent}: {}", led.meaning());
    view! {
        <button
            class=format!("led led-{name}")
            data-led=name
            data-agent=agent
            title=text.clone()
            aria-label=text
            on:click=move |_| on_open.run(())
        >
            <span class="led-shape" aria-hidden="true">{shape}</span>
        </button>
        <span class=format!("led-word led-word-{name}") aria-hidden="true">{word}</span>
    }
}

/// A moment as "12 s ago", with the UTC time on hover and in `datetime`. `age_ms` is how long
/// ago it was, by the agent's clock and the time since its answer arrived.
#[component]
pub fn Ago(at: TimestampMs, age_ms: Signal<u64>) -> impl IntoView {
    view! {
        <time class="ago" datetime=utc(at) title=utc(at)>
            {move || format!("{} ago", duration_words(age_ms.get()))}
        </time>
    }
}

/// The one way errors are shown.
#[component]
pub fn ErrorView(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}

/// `2026-11-23 00:34:05 UTC`: timestamps are shown in UTC, as the failover log writes them.
pub fn utc(ms: TimestampMs) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_dates_and_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_393_445_000), "2026-11-23 00:24:05 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
