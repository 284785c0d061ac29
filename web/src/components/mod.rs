//! Reusable pieces of the UI.

use duet_core::Led;
use leptos::prelude::*;

/// An agent's LED: the colour, and its meaning in words for screen readers and tooltips.
#[component]
pub fn LedView(led: Led) -> impl IntoView {
    let class = match led {
        Led::Green => "led led-green",
        Led::Red => "led led-red",
        Led::Transparent => "led led-transparent",
    };
    view! { <span class=class role="img" title=led.meaning() aria-label=led.meaning()></span> }
}
