//! The operator's view in headless Chromium against a real pair: after kill -9 of the Online
//! agent the survivor's page shows it not Online within detection + 1 s, and a log of DOM
//! changes (a MutationObserver) never holds two green Online boxes; the state reads without
//! colour (shape and word by each LED, greyscale screenshot), the tab title and favicon follow
//! the worst LED; the Status window takes the focus and closes on Escape and an outside click,
//! its times are relative with the UTC time on hover, its heartbeat rows name their target,
//! and it reads at 400 px.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duet_core::FailoverState;
use fantoccini::key::Key;
use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::api::{ALICE, client, tokens};
use crate::support::{AgentSpec, Agents, free_port, spawn};
use crate::web_ui::{
    artefacts, attr, browser, chromium_and_driver, click, exists, open, screenshot, start_driver,
    status_of, text, within,
};

/// The agent heartbeat of the test pair: every 200 ms, 3 failures allowed, 150 ms timeout.
const INTERVAL_MS: u64 = 200;
const MAX_FAILURES: u64 = 3;
const TIMEOUT_MS: u64 = 150;

/// The longest the survivor may take to declare its buddy dead: the last success can come
/// just before the kill, then `MAX_FAILURES + 1` attempts fail, the last one by its timeout.
const DETECTION: Duration = Duration::from_millis(INTERVAL_MS * (MAX_FAILURES + 1) + TIMEOUT_MS);

/// Records, on every DOM change, how many agent boxes are Online with a green LED, and when
/// the buddy's box first stopped saying Online (`Date.now()`, ms).
const OBSERVER: &str = "
    window.__duet = { maxGreenOnline: 0, changes: 0, buddyLeftOnline: null };
    const count = () => document.querySelectorAll(
        '.agent[data-state=Online] .led[data-led=green]').length;
    const look = () => {
        const d = window.__duet;
        d.changes += 1;
        d.maxGreenOnline = Math.max(d.maxGreenOnline, count());
        const buddy = document.querySelector('#agent-buddy');
        if (d.buddyLeftOnline === null && buddy && buddy.dataset.state !== 'Online') {
            d.buddyLeftOnline = Date.now();
        }
    };
    look();
    new MutationObserver(look).observe(document.body,
        { subtree: true, childList: true, attributes: true, characterData: true });
    return count();";

/// The bytes the page's own files took over the network on this load (Resource Timing
/// `transferSize`: headers and compressed body; 0 for a file from the cache): the page, its
/// style sheet, script and wasm. The API's answers are not the bundle.
pub(crate) async fn bundle_transfer(c: &Client) -> u64 {
    let js = "return performance.getEntriesByType('navigation')
        .concat(performance.getEntriesByType('resource'))
        .filter(e => /^\\/(style\\.css|duet-web\\.js|duet-web_bg\\.wasm)?$/
            .test(new URL(e.name).pathname))
        .reduce((sum, e) => sum + e.transferSize, 0);";
    script(c, js)
        .await
        .as_u64()
        .expect("a byte count from Resource Timing")
}

/// The bundle's first load (fresh profile) and a repeat load of `url`, in bytes transferred.
pub(crate) async fn first_and_repeat(c: &Client, url: &str) -> (u64, u64) {
    open(c, url).await;
    let first = bundle_transfer(c).await;
    c.goto("about:blank").await.expect("a blank page");
    open(c, url).await;
    (first, bundle_transfer(c).await)
}

fn epoch_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("ms since 1970 fit in u64")
}

async fn script(c: &Client, js: &str) -> Value {
    c.execute(js, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
}

/// Records when the page first says its agent is down (`Date.now()`, ms).
const DOWN_OBSERVER: &str = "
    window.__down = null;
    new MutationObserver(() => {
        if (window.__down === null && document.querySelector('#agent-down')) {
            window.__down = Date.now();
        }
    }).observe(document.body, { subtree: true, childList: true });
    return 0;";

/// A pair on loopback with the test's heartbeat timings and tokens, each naming the other's
/// API as `web.buddy`; agent-a (priority 200) goes Online.
fn pair(dir: &std::path::Path) -> (u16, u16, Agents, Vec<PathBuf>) {
    let (pa, pb) = (free_port(), free_port());
    let configs: Vec<PathBuf> = [
        AgentSpec::new("agent-a", "agent-b", 200, pa, pb),
        AgentSpec::new("agent-b", "agent-a", 100, pb, pa),
    ]
    .into_iter()
    .map(|spec| {
        AgentSpec {
            interval_ms: INTERVAL_MS,
            max_failures: u32::try_from(MAX_FAILURES).expect("small"),
            extra: format!(
                "{}\n[web]\nbuddy = \"127.0.0.1:{}\"\n",
                tokens(),
                spec.buddy_port
            ),
            ..spec
        }
        .write(dir)
    })
    .collect();
    let agents = Agents(configs.iter().map(|c| spawn(c)).collect());
    (pa, pb, agents, configs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_page_drops_a_killed_online_agent_at_once_and_reads_without_colour() {
    let Some((chromium, chromedriver)) = chromium_and_driver() else {
        return;
    };
    let shots = artefacts();
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb, mut agents, configs) = pair(dir.path());
    within!(
        Duration::from_secs(30),
        "agent-a Online, agent-b Offline",
        {
            let a = status_of(pa).await.and_then(|s| s.decision);
            let b = status_of(pb).await.and_then(|s| s.pair);
            (a.is_some_and(|d| d.state.state == FailoverState::Online)
                && b.is_some_and(|p| {
                    p.local.state == Some(FailoverState::Offline)
                        && p.buddy.state == Some(FailoverState::Online)
                }))
            .then_some(())
        }
    );

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let c = browser(&driver, &chromium, profile.path()).await;
    // agent-b's page: it will survive agent-a. Loaded twice: the bundle crosses the network
    // compressed the first time, and next to nothing the second.
    let (first, repeat) = first_and_repeat(&c, &format!("http://127.0.0.1:{pb}/")).await;
    eprintln!("bundle transferred: first load {first} B, repeat load {repeat} B");
    within!(
        Duration::from_secs(15),
        "both LEDs green on agent-b's page",
        {
            let local = attr(&c, "#agent-local .led", "data-led").await;
            let buddy = attr(&c, "#agent-buddy .led", "data-led").await;
            (local.as_deref() == Some("green") && buddy.as_deref() == Some("green")).then_some(())
        }
    );
    reads_without_colour(&c, &shots).await;
    status_window_keyboard_and_narrow(&c).await;

    // agent-a's own page, in a second tab, watched for the moment it says agent-a is down.
    let survivor = c.window().await.expect("the first tab");
    let tab = c.new_window(true).await.expect("a second tab").handle;
    c.switch_to_window(tab.clone())
        .await
        .expect("to the second tab");
    open(&c, &format!("http://127.0.0.1:{pa}/")).await;
    within!(Duration::from_secs(15), "agent-a's page with its state", {
        attr(&c, "#agent-local", "data-state")
            .await
            .filter(|s| s == "Online")
    });
    script(&c, DOWN_OBSERVER).await;
    c.switch_to_window(survivor.clone())
        .await
        .expect("back to agent-b's page");

    // kill -9 of the Online agent, watched by a MutationObserver on the survivor's page.
    assert_eq!(
        script(&c, OBSERVER).await,
        1,
        "one green Online box before the kill"
    );
    let killed_at = epoch_ms();
    let killed = Instant::now();
    let online = &mut agents.0[0];
    online.kill().expect("kill -9 agent-a");
    let _ = online.wait();
    let deadline = DETECTION + Duration::from_secs(1);
    let left = within!(deadline + Duration::from_secs(2), "agent-a not Online", {
        script(&c, "return window.__duet.buddyLeftOnline;")
            .await
            .as_u64()
    });
    let took = Duration::from_millis(left.saturating_sub(killed_at));
    assert!(
        took <= deadline,
        "agent-a still shown Online {took:?} after kill -9 (detection {DETECTION:?} + 1 s)"
    );
    eprintln!("the survivor's page showed agent-a not Online {took:?} after kill -9");
    let state = attr(&c, "#agent-buddy", "data-state").await;
    assert_eq!(state.as_deref(), Some("Unreachable"));

    // The takeover: agent-b Online, the why line names the cause, the title says the state.
    within!(Duration::from_secs(10), "agent-b Online on its page", {
        attr(&c, "#agent-local", "data-state")
            .await
            .filter(|s| s == "Online")
    });
    let why = text(&c, "#decision-reason").await.unwrap_or_default();
    assert!(
        why.starts_with("Why is agent-b Online?") && why.contains("Now:"),
        "the why line tells the takeover and its cause: {why}"
    );
    let age = text(&c, "#agent-buddy .report-age")
        .await
        .unwrap_or_default();
    assert!(
        age.starts_with("last report ") && age.ends_with(" ago"),
        "{age}"
    );
    let title = script(&c, "return document.title;").await;
    assert!(
        title
            .as_str()
            .is_some_and(|t| t.starts_with("Problem — agent-b Online")),
        "the title carries the state: {title}"
    );
    let observed = script(&c, "return window.__duet;").await;
    assert_eq!(
        observed["maxGreenOnline"], 1,
        "never two green Online boxes at once: {observed}"
    );
    assert!(
        observed["changes"].as_u64().is_some_and(|n| n > 1),
        "the observer saw the page change: {observed}"
    );
    screenshot(&c, &shots, "survivor-after-kill.png").await;

    // `duet status` reads the same API: agent-a is Unreachable there too.
    let (code, out) = crate::support::status(pb, false);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("agent-a — state unknown") && out.contains("Unreachable"),
        "{out}"
    );
    assert!(out.contains("Why is agent-b Online?"), "{out}");
    eprintln!("the takeover took {:?} end to end", killed.elapsed());

    // The dead agent's page says so in words within 5 s, links to agent-b's page and shows
    // the pair as agent-b sees it; no raw fetch error anywhere.
    c.switch_to_window(tab).await.expect("to agent-a's page");
    let down = within!(
        Duration::from_secs(8),
        "agent-a's page saying it is down",
        { script(&c, "return window.__down;").await.as_u64() }
    );
    let took = Duration::from_millis(down.saturating_sub(killed_at));
    assert!(
        took <= Duration::from_secs(5),
        "agent-a's page said it is down after {took:?}"
    );
    eprintln!("agent-a's own page said it is down {took:?} after kill -9");
    let words = text(&c, "#agent-down").await.unwrap_or_default();
    assert!(words.contains("agent-a is not answering"), "{words}");
    let link = attr(&c, "#buddy-link", "href").await;
    assert_eq!(link, Some(format!("http://127.0.0.1:{pb}/")));
    within!(Duration::from_secs(10), "the pair as agent-b sees it", {
        let b = attr(&c, "#agent-buddy", "data-state").await;
        let a = attr(&c, "#agent-local", "data-state").await;
        (b.as_deref() == Some("Online") && a.as_deref() == Some("Unreachable")).then_some(())
    });
    let body = text(&c, "body").await.unwrap_or_default();
    assert!(
        !body.contains("TypeError") && !body.contains("Failed to fetch"),
        "no raw fetch error: {body}"
    );
    let title = script(&c, "return document.title;").await;
    assert_eq!(title.as_str(), Some("Agent down — duet"));
    screenshot(&c, &shots, "dead-agent-page.png").await;

    timeline_survives_restarts(&c, (pa, pb), &mut agents, &configs).await;
    screenshot(&c, &shots, "timeline.png").await;

    c.close().await.expect("close the browser");
    drop(driver);
    drop(agents);
    assert!(first > 0 && first < 150_000, "first load: {first} B");
    assert!(repeat < 5_000, "repeat load: {repeat} B");
}

/// Shape and word by each LED; a greyscale screenshot keeps them; the tab title and the
/// favicon follow the worst LED.
async fn reads_without_colour(c: &Client, shots: &std::path::Path) {
    for agent in ["#agent-local", "#agent-buddy"] {
        assert_eq!(
            text(c, &format!("{agent} .led-word")).await.as_deref(),
            Some("OK"),
            "{agent}: a word beside the LED"
        );
        assert_eq!(
            text(c, &format!("{agent} .led .led-shape"))
                .await
                .as_deref(),
            Some("✓"),
            "{agent}: a shape in the LED"
        );
    }
    within!(Duration::from_secs(5), "the title naming the state", {
        script(c, "return document.title;")
            .await
            .as_str()
            .filter(|t| *t == "OK — agent-a Online — duet")
            .map(str::to_owned)
    });
    let icon = attr(c, "link[rel=icon]", "data-led").await;
    assert_eq!(
        icon.as_deref(),
        Some("green"),
        "the favicon follows the LEDs"
    );
    let href = attr(c, "link[rel=icon]", "href").await.unwrap_or_default();
    assert!(href.starts_with("data:image/svg+xml,"), "{href}");
    script(
        c,
        "document.documentElement.style.filter = 'grayscale(1)'; return 0;",
    )
    .await;
    screenshot(c, shots, "greyscale.png").await;
    let words = script(
        c,
        "return [...document.querySelectorAll('.agent .led-word')].map(e => e.innerText);",
    )
    .await;
    assert_eq!(
        words,
        serde_json::json!(["OK", "OK"]),
        "words survive greyscale"
    );
    script(c, "document.documentElement.style.filter = ''; return 0;").await;
}

/// The Status window: focus on opening, Escape and an outside click close it; relative times
/// with the UTC time on hover; heartbeat rows name their target; at 400 px nothing is cut.
async fn status_window_keyboard_and_narrow(c: &Client) {
    let focused = "return !!document.activeElement.closest('#status-window');";
    click(c, "#status-button").await;
    within!(
        Duration::from_secs(5),
        "the Status window with the focus",
        { script(c, focused).await.as_bool().filter(|f| *f) }
    );
    let label = text(c, "#status-local tr[data-key^='heartbeat:'] th").await;
    assert!(
        label
            .as_deref()
            .is_some_and(|l| l.starts_with("Heartbeat to 127.0.0.1:")),
        "{label:?}"
    );
    let hb = "#status-buddy tr[data-key^='heartbeat:'] td.time time";
    let (ago, hover) = (text(c, hb).await, attr(c, hb, "title").await);
    assert!(ago.is_some_and(|t| t.ends_with(" ago")));
    assert!(hover.is_some_and(|t| t.ends_with(" UTC")));
    c.active_element()
        .await
        .expect("the focused element")
        .send_keys(&Key::Escape.to_string())
        .await
        .expect("press Escape");
    within!(Duration::from_secs(5), "Escape closes the Status window", {
        (!exists(c, "#status-window").await).then_some(())
    });

    c.set_window_size(400, 800).await.expect("400 px wide");
    click(c, "#status-button").await;
    within!(Duration::from_secs(5), "the Status window at 400 px", {
        exists(c, "#status-window").await.then_some(())
    });
    let cut = "return [...document.querySelectorAll('#status-window td, #status-window th')]
        .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).length
        + (document.documentElement.scrollWidth > window.innerWidth ? 1000 : 0);";
    assert_eq!(
        script(c, cut).await,
        0,
        "nothing cut off or scrolling at 400 px"
    );
    // A click outside the window, on the overlay's corner, closes it.
    script(
        c,
        "document.getElementById('status-overlay').dispatchEvent(
            new MouseEvent('click', { bubbles: true })); return 0;",
    )
    .await;
    within!(Duration::from_secs(5), "an outside click closes it", {
        (!exists(c, "#status-window").await).then_some(())
    });
    c.set_window_size(1280, 800).await.expect("desktop size");
}

/// Whether `port`'s event log holds a `switch` event naming alice.
async fn switch_by_alice_logged(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/api/v1/events?code=switch&limit=50");
    let Ok(answer) = client().get(url).send().await else {
        return false;
    };
    answer.json::<Value>().await.is_ok_and(|page| {
        page["events"].as_array().is_some_and(|e| {
            e.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("Switch by alice"))
            })
        })
    })
}

/// agent-a back, alice switches from agent-b to it, then both agents are killed and started
/// again: agent-a's page shows the switch and who gave it in the timeline (filtered to
/// switches), and the LED changes.
async fn timeline_survives_restarts(
    c: &Client,
    (pa, pb): (u16, u16),
    agents: &mut Agents,
    configs: &[PathBuf],
) {
    agents.0[0] = spawn(&configs[0]);
    within!(
        Duration::from_secs(30),
        "agent-a back, Offline beside agent-b",
        {
            status_of(pa).await.and_then(|s| s.pair).filter(|p| {
                p.local.state == Some(FailoverState::Offline)
                    && p.buddy.state == Some(FailoverState::Online)
            })
        }
    );
    let switched = client()
        .post(format!("http://127.0.0.1:{pb}/api/v1/commands/switch"))
        .bearer_auth(ALICE)
        .send()
        .await
        .expect("POST switch");
    assert_eq!(switched.status().as_u16(), 202);
    within!(
        Duration::from_secs(30),
        "alice's switch in both event logs",
        { (switch_by_alice_logged(pa).await && switch_by_alice_logged(pb).await).then_some(()) }
    );
    for agent in &mut agents.0 {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    agents.0 = configs.iter().map(|c| spawn(c)).collect();
    open(c, &format!("http://127.0.0.1:{pa}/")).await;
    within!(Duration::from_secs(20), "LED changes in the timeline", {
        exists(c, "#timeline tr[data-code=led]").await.then_some(())
    });
    c.find(Locator::Css("#timeline-code option[value=switch]"))
        .await
        .expect("the switches filter")
        .click()
        .await
        .expect("choose switches");
    let by = within!(Duration::from_secs(10), "alice's switch in the timeline", {
        script(
            c,
            "return [...document.querySelectorAll('#timeline tr[data-code=switch] td.message')]
                .map(e => e.innerText).find(m => m.endsWith('Switch by alice')) || null;",
        )
        .await
        .as_str()
        .map(str::to_owned)
    });
    assert!(by.starts_with("Failover Status Online => "), "{by}");
    let others =
        "return document.querySelectorAll('#timeline tr.event:not([data-code=switch])').length;";
    assert_eq!(script(c, others).await, 0, "the filter shows switches only");
}
