//! The Failover Config window: the pair (virtual IP, each agent's name, addresses and mode),
//! which agent is Online, one LED per agent, the packet-capture icon, and the operator's
//! commands (switch, force online, mode) with confirmation.

use duet_core::api::{AgentInfo, PacketCapture, Session, Status, duration_words};
use duet_core::{FailoverState, Led, Mode, Report};
use leptos::prelude::*;

use crate::components::{Ago, ErrorView, LedView};
use crate::{Ctx, api};

#[component]
pub fn FailoverConfig() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let open = Callback::new(move |()| ctx.open_status());
    view! {
        <section class="window" id="failover-config" aria-label="Failover Config">
            <h2>"Failover Config"</h2>
            {move || type_line(ctx)}
            {move || agents(ctx, open)}
            {move || decision_line(ctx)}
            <Actions />
            <div class="buttons">
                <button id="status-button" on:click=move |_| ctx.open_status()>
                    "Status"
                </button>
            </div>
            {move || {
                ctx.pair.get().and_then(Result::ok).map(|p| {
                    view! {
                        <p class="muted" id="refresh-note">
                            {format!(
                                "Refreshed every {} s, and at once when the agent pushes a change.",
                                p.refresh_ms / 1000,
                            )}
                        </p>
                    }
                })
            }}
        </section>
    }
}

/// While the agent that served the page does not answer: that, in words, for how long, and
/// the way to its buddy's page (the windows below show the pair as the buddy sees it).
#[component]
pub fn AgentDown() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    move || {
        let since = ctx.down.get()?;
        let pair = ctx.pair.get_untracked().and_then(Result::ok);
        let name = pair
            .as_ref()
            .map_or_else(|| "This agent".to_string(), |p| p.local.name.clone());
        let buddy = pair
            .as_ref()
            .map(|p| (p.buddy.name.clone(), p.buddy_url.clone()));
        let secs = ctx.since(since) / 1000;
        let via_buddy = ctx.shown().1;
        Some(view! {
            <section class="banner down" id="agent-down" role="alert">
                <p>
                    {format!("{name} is not answering (for {secs} s): it may be down, or cut off from this browser.")}
                    {via_buddy.then_some(" Below, the pair as its buddy sees it.")}
                </p>
                {match buddy {
                    Some((buddy, Some(url))) => leptos::either::Either::Left(view! {
                        <p><a id="buddy-link" href=format!("{url}/")>{format!("Open {buddy}'s page ({url})")}</a></p>
                    }),
                    _ => leptos::either::Either::Right(view! {
                        <p class="muted">"Its buddy's page is not configured here (web.buddy)."</p>
                    }),
                }}
            </section>
        })
    }
}

/// "Failover (Virtual IP)", the information icon when libpcap is missing, the virtual IP.
fn type_line(ctx: Ctx) -> AnyView {
    match ctx.pair.get() {
        None => ().into_any(),
        Some(Err(message)) => view! { <ErrorView message /> }.into_any(),
        Some(Ok(pair)) => view! {
            <div class="type">
                <strong id="failover-type">"Failover (Virtual IP)"</strong>
                <span class="vip" id="virtual-ip">
                    {pair.virtual_ip.unwrap_or_else(|| "no virtual IP configured".into())}
                </span>
            </div>
        }
        .into_any(),
    }
}

/// The information icon of an agent whose packet-capture library is missing or could not be
/// detected (none otherwise): its hover text is the message, then the detail; a button, so
/// the keyboard and a tap open the same text below it.
#[component]
fn PcapIcon(id: &'static str, pcap: PacketCapture) -> impl IntoView {
    let shown = RwSignal::new(false);
    (!pcap.found).then(|| {
        let message = pcap.message.clone().unwrap_or_default();
        let text = match &pcap.detail {
            Some(detail) => format!("{message}\n{detail}"),
            None => message.clone(),
        };
        let note = text.clone();
        view! {
            <button
                id=id
                class="info"
                title=text
                aria-label=message
                aria-expanded=move || shown.get().to_string()
                on:click=move |_| shown.update(|s| *s = !*s)
            >
                "i"
            </button>
            {move || shown.get().then(|| view! { <span class="pcap-note" role="note">{note.clone()}</span> })}
        }
    })
}

fn agents(ctx: Ctx, open: Callback<()>) -> AnyView {
    let pair = ctx.pair.get().and_then(Result::ok);
    let local_pcap = pair.as_ref().map(|p| p.packet_capture.clone());
    let buddy_pcap = ctx.buddy_pair.get().map(|p| p.packet_capture);
    let (shown, via_buddy) = ctx.shown();
    let (reports, other_age, mode) = match shown {
        Some(Err(message)) => return view! { <ErrorView message /> }.into_any(),
        Some(Ok(o)) => (
            o.status.pair,
            o.buddy_report_age_ms,
            o.status.decision.map(|d| d.state.mode),
        ),
        None => (None, None, None),
    };
    // From the buddy, its own report is the fresh one.
    let (local_age, buddy_age) = if via_buddy {
        (other_age, Some(0))
    } else {
        (Some(0), other_age)
    };
    let (local, buddy) = match (pair, reports) {
        (None, None) => {
            return view! { <p class="muted">"Status information is being retrieved"</p> }
                .into_any();
        }
        (pair, reports) => {
            let (mut li, bi) = pair.map_or((None, None), |p| (Some(p.local), Some(p.buddy)));
            // This agent's mode as its last decision says (pushed), not as the pair said at
            // the last refresh.
            if let (Some(info), Some(mode)) = (li.as_mut(), mode) {
                info.mode = Some(mode);
            }
            let (lr, br) = reports.map_or((None, None), |r| (Some(r.local), Some(r.buddy)));
            ((li, lr), (bi, br))
        }
    };
    view! {
        <div class="agents">
            <AgentBox id="agent-local" info=local.0 report=local.1 age=local_age pcap=local_pcap open />
            <AgentBox id="agent-buddy" info=buddy.0 report=buddy.1 age=buddy_age pcap=buddy_pcap open />
        </div>
    }
    .into_any()
}

/// One agent: LED with its shape and word, name, addresses, mode, state (marked when Online),
/// and how old its report is.
#[component]
fn AgentBox(
    id: &'static str,
    info: Option<AgentInfo>,
    report: Option<Report>,
    /// How old the report was when the status was made (ms); none before the first.
    age: Option<u64>,
    /// Its packet-capture library, when known (the buddy's from its own API, `web.buddy`).
    pcap: Option<PacketCapture>,
    open: Callback<()>,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let name = info
        .as_ref()
        .map(|i| i.name.clone())
        .or_else(|| report.as_ref().map(|r| r.agent.clone()))
        .unwrap_or_default();
    let led = report.as_ref().map_or(Led::Transparent, |r| r.led);
    let state = report.as_ref().and_then(|r| r.state);
    let online = state == Some(FailoverState::Online);
    let state_text = match (state, &report) {
        (Some(s), _) => s.label(),
        (None, Some(r)) if r.rows.iter().any(|row| row.value == "Unreachable") => "Unreachable",
        _ => "Unknown",
    };
    let addresses = info
        .as_ref()
        .map(|i| i.addresses.join(", "))
        .unwrap_or_default();
    let mode = match info.as_ref().and_then(|i| i.mode) {
        Some(Mode::Automatic) => "automatic",
        Some(Mode::Manual) => "manual",
        None => "not reported yet",
    };
    let this_agent = id == "agent-local";
    let (data_agent, led_agent) = (name.clone(), name.clone());
    let age_text = move || {
        age.map_or_else(
            || "no report yet".to_string(),
            |age| {
                let now = age + ctx.since_received();
                if this_agent && ctx.down.get().is_none() {
                    format!("report {} old", duration_words(now))
                } else {
                    format!("last report {} ago", duration_words(now))
                }
            },
        )
    };
    view! {
        <div class="agent" class:online=online id=id data-agent=data_agent data-state=state_text>
            <LedView agent=led_agent led on_open=open />
            <div class="who">
                <span class="name">{name}</span>
                {this_agent.then(|| view! { <span class="muted">" (this agent)"</span> })}
                <span class="addresses">{addresses}</span>
                <span class="mode">"Mode: " {mode}</span>
                <span class="report-age">{age_text}</span>
            </div>
            {pcap.map(|pcap| view! {
                <PcapIcon id=if this_agent { "pcap-info" } else { "pcap-info-buddy" } pcap />
            })}
            <span class="state" class:online-badge=online>{state_text}</span>
        </div>
    }
}

/// "Why is agent-b Online?": what set it on its way (the takeover and its cause, the switch
/// and who), its last decision's reason, how long it has been in its state, the last switch;
/// a banner in manual mode.
fn decision_line(ctx: Ctx) -> Option<impl IntoView + use<>> {
    let overview = ctx.shown().0?.ok()?;
    let (question, answer) = overview.why()?;
    let decision = overview.status.decision?;
    let since = decision.state.since;
    let switched = decision.state.last_switch;
    let by = overview.cause.and_then(|c| c.by);
    let lease = overview.witness.map(|w| w.line());
    let manual = decision.state.mode == Mode::Manual;
    Some(view! {
        {manual.then(|| view! {
            <p class="banner" id="manual-banner" role="status">
                "Manual mode: failing heartbeats do not switch this agent; an operator decides."
            </p>
        })}
        <p class="reason" id="decision-reason">{question} " " <span>{answer}</span></p>
        <p class="muted" id="time-in-state">
            {format!("{} since ", decision.state.state.label())}
            <Ago at=since age_ms=Signal::derive(move || ctx.age(since)) />
            {switched.map(|at| view! {
                <span id="last-switch">
                    " · Last switch: "
                    <Ago at age_ms=Signal::derive(move || ctx.age(at)) />
                    {by.map(|by| format!(", by {by}"))}
                </span>
            })}
        </p>
        {lease.map(|line| view! {
            <p class="muted" id="witness-lease">{format!("Witness lease: {line}")}</p>
        })}
    })
}

/// An operator's command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Switch,
    ForceOnline,
    SetMode(Mode),
}

impl Command {
    fn id(self) -> &'static str {
        match self {
            Command::Switch => "switch",
            Command::ForceOnline => "force-online",
            Command::SetMode(_) => "mode",
        }
    }

    fn right(self) -> &'static str {
        match self {
            Command::Switch => "switch",
            Command::ForceOnline => "force_online",
            Command::SetMode(_) => "mode",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Command::Switch => "Switch",
            Command::ForceOnline => "Force online",
            Command::SetMode(Mode::Manual) => "Set manual mode",
            Command::SetMode(Mode::Automatic) => "Set automatic mode",
        }
    }

    fn body(self) -> String {
        match self {
            Command::SetMode(Mode::Manual) => r#"{"mode":"manual"}"#.into(),
            Command::SetMode(Mode::Automatic) => r#"{"mode":"automatic"}"#.into(),
            Command::Switch | Command::ForceOnline => "{}".into(),
        }
    }

    /// The question asked before the command is sent.
    fn question(self, local: &str, buddy: &str, local_online: bool) -> String {
        match self {
            Command::Switch if local_online => {
                format!("Switch: {local} hands over and {buddy} goes Online?")
            }
            Command::Switch => format!("Switch: {local} takes over and {buddy} goes Offline?"),
            Command::ForceOnline => {
                format!("Force {local} online? {buddy} is asked to go offline.")
            }
            Command::SetMode(Mode::Manual) => format!(
                "Set {local} to manual mode? Failing heartbeats will no longer switch it on their own."
            ),
            Command::SetMode(Mode::Automatic) => format!(
                "Set {local} to automatic mode? Failing heartbeats may switch it on their own."
            ),
        }
    }
}

/// Why `command` cannot happen now, or `None` when it can.
fn why_not(command: Command, session: Option<&Session>, status: Option<&Status>) -> Option<String> {
    let Some(session) = session else {
        return Some(format!(
            "Sign in with a token to use {}",
            command.label().to_lowercase()
        ));
    };
    if !session.rights.iter().any(|r| r == command.right()) {
        return Some(format!(
            "Token \"{}\" lacks the right {}",
            session.name,
            command.right()
        ));
    }
    let (Some(pair), Some(decision)) =
        status.map_or((None, None), |s| (s.pair.as_ref(), s.decision.as_ref()))
    else {
        return Some("Status information is being retrieved".into());
    };
    let state = decision.state.state;
    let buddy_state = pair.buddy.state;
    match command {
        Command::SetMode(_) => None,
        _ if !matches!(state, FailoverState::Online | FailoverState::Offline) => Some(format!(
            "{} is {}: wait until the transition ends",
            pair.local.agent,
            state.label()
        )),
        Command::Switch if buddy_state.is_none() => Some(format!(
            "{} is unreachable: there is no agent to switch to (Force online brings this agent up)",
            pair.buddy.agent
        )),
        Command::Switch => None,
        Command::ForceOnline if state == FailoverState::Online => {
            Some(format!("{} is already Online", pair.local.agent))
        }
        Command::ForceOnline if buddy_state == Some(FailoverState::Online) => Some(format!(
            "{} is Online and reachable: use Switch for a planned handover",
            pair.buddy.agent
        )),
        Command::ForceOnline => None,
    }
}

/// The command buttons, each disabled with its reason shown when it cannot happen; a
/// confirmation before anything is sent.
#[component]
fn Actions() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let pending = RwSignal::new(None::<Command>);
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let send = move |command: Command| {
        pending.set(None);
        let Some((token, _)) = ctx.session.get_untracked() else {
            outcome.set(Some(Err("sign in first".into())));
            return;
        };
        leptos::task::spawn_local(async move {
            let result = api::command(&token, command.id(), command.body()).await;
            outcome.set(Some(result.map(|accepted| {
                format!(
                    "{} accepted from {}: it runs on the next tick",
                    command.label(),
                    accepted.by
                )
            })));
            ctx.refresh();
        });
    };
    view! {
        <div class="actions" aria-label="Commands">
            {move || {
                let status = ctx.status.get().and_then(Result::ok).map(|o| o.status);
                let session = ctx.session.get().map(|(_, s)| s);
                let mode = status.as_ref().and_then(|s| s.decision.as_ref()).map(|d| d.state.mode);
                let other = if mode == Some(Mode::Manual) { Mode::Automatic } else { Mode::Manual };
                [Command::Switch, Command::ForceOnline, Command::SetMode(other)]
                    .into_iter()
                    .map(|command| {
                        let why = why_not(command, session.as_ref(), status.as_ref());
                        let disabled = why.is_some();
                        view! {
                            <div class="action">
                                <button
                                    id=command.id()
                                    disabled=disabled
                                    on:click=move |_| {
                                        if !disabled {
                                            outcome.set(None);
                                            pending.set(Some(command));
                                        }
                                    }
                                >
                                    {command.label()}
                                </button>
                                {why.map(|why| view! {
                                    <span class="why" id=format!("{}-why", command.id())>{why}</span>
                                })}
                            </div>
                        }
                    })
                    .collect_view()
            }}
        </div>
        {move || {
            let command = pending.get()?;
            let status = ctx.status.get_untracked().and_then(Result::ok).map(|o| o.status);
            let pair = status.as_ref().and_then(|s| s.pair.as_ref());
            let local = pair.map(|p| p.local.agent.clone()).unwrap_or_default();
            let buddy = pair.map(|p| p.buddy.agent.clone()).unwrap_or_default();
            let online = pair.is_some_and(|p| p.local.state == Some(FailoverState::Online));
            Some(view! {
                <div class="confirm" id="confirm" role="alertdialog" aria-label="Confirm">
                    <p>{command.question(&local, &buddy, online)}</p>
                    <button id="confirm-yes" on:click=move |_| send(command)>"Confirm"</button>
                    <button id="confirm-no" on:click=move |_| pending.set(None)>"Cancel"</button>
                </div>
            })
        }}
        {move || outcome.get().map(|result| match result {
            Ok(text) => view! { <p class="ok" id="command-outcome" role="status">{text}</p> }.into_any(),
            Err(message) => view! { <ErrorView message /> }.into_any(),
        })}
    }
}
