//! The status surface against running agents: the JSON API validated against the OpenAPI
//! document the agent serves, named tokens guarding every command, the event stream, the
//! Prometheus metrics, and `duet status` output and exit codes.

use std::time::{Duration, Instant};

use duet_core::api::Status;
use duet_core::{FailoverState, Mode};
use serde_json::Value;

use crate::support::{AgentSpec, Agents, eventually, free_port, spawn, status};

/// Tokens of the test pair: alice may do everything, viewer may only force online.
pub(crate) const ALICE: &str = "duet_alice-test-token";
const VIEWER: &str = "duet_viewer-test-token";

/// The SHA-256 the configuration stores, as `duet token new` prints it.
pub(crate) fn sha256_hex(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn tokens() -> String {
    format!(
        "[[api.token]]\nname = \"alice\"\nsha256 = \"{}\"\nrights = [\"switch\", \"force_online\", \"mode\"]\n\
         [[api.token]]\nname = \"viewer\"\nsha256 = \"{}\"\nrights = [\"force_online\"]\n",
        sha256_hex(ALICE),
        sha256_hex(VIEWER)
    )
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client")
}

/// What is wrong with `instance` per `#/components/schemas/<name>` of the served document.
fn schema_errors(doc: &Value, name: &str, instance: &Value) -> Vec<String> {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}"), "components": doc["components"] });
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI schemas compile");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Asserts that `instance` matches `#/components/schemas/<name>` of the served document.
pub(crate) fn validate(doc: &Value, name: &str, instance: &Value) {
    let errors = schema_errors(doc, name, instance);
    assert!(
        errors.is_empty(),
        "{name} does not match the OpenAPI document:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

pub(crate) async fn get_json(client: &reqwest::Client, port: u16, path: &str) -> Value {
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

async fn post(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value, Option<String>) {
    let mut req = client
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("POST");
    let code = resp.status().as_u16();
    let auth = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (code, resp.json().await.expect("JSON body"), auth)
}

fn mode_of(s: &Status) -> Option<Mode> {
    s.decision.as_ref().map(|d| d.state.mode)
}

fn state_of(s: &Status) -> Option<FailoverState> {
    s.decision.as_ref().map(|d| d.state.state)
}

async fn status_of(client: &reqwest::Client, port: u16) -> Status {
    serde_json::from_value(get_json(client, port, "/api/v1/status").await).expect("status")
}

/// Reads server-sent events until `pred` accepts a status, within `within`.
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    within: Duration,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let deadline = Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if event.lines().any(|l| l == "event: status") {
                let s: Status = serde_json::from_str(&data).expect("a status event");
                if pred(&s) {
                    return s;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching event within {within:?}");
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(bytes))) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(other) => panic!("the event stream ended: {other:?}"),
            Err(_) => panic!("no matching event within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_matches_its_openapi_document_tokens_guard_commands_and_events_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let extra = tokens();
    let a = AgentSpec {
        extra: extra.clone(),
        ..AgentSpec::new("agent-a", "agent-b", 200, pa, pb)
    }
    .write(dir.path());
    let b = AgentSpec {
        extra,
        ..AgentSpec::new("agent-b", "agent-a", 100, pb, pa)
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    let c = client();

    // The pair settles: agent-a Online, both green (exit 0).
    tokio::task::spawn_blocking(move || {
        eventually(
            Duration::from_secs(30),
            "a green pair with agent-a Online",
            || (status(pa, false).0 == 0 && status(pb, false).0 == 0).then_some(()),
        )
    })
    .await
    .expect("poll");
    assert_eq!(
        state_of(&status_of(&c, pa).await),
        Some(FailoverState::Online)
    );

    // Every body validates against the document the agent serves.
    let doc = get_json(&c, pa, "/api/v1/openapi.json").await;
    let bogus = serde_json::json!({ "pair": null, "decision": null, "core": "x", "surprise": 1 });
    assert!(
        !schema_errors(&doc, "Status", &bogus).is_empty(),
        "the document is strict: unknown fields fail"
    );
    assert!(!schema_errors(&doc, "Status", &serde_json::json!({ "core": 3 })).is_empty());
    validate(&doc, "Status", &get_json(&c, pa, "/api/v1/status").await);
    validate(&doc, "Status", &get_json(&c, pb, "/api/v1/status").await);
    validate(
        &doc,
        "History",
        &get_json(&c, pa, "/api/v1/history?limit=5").await,
    );

    // Without a token, with a wrong one, or with one lacking the right: refused, nothing changes.
    let body = r#"{"mode":"manual"}"#;
    let (code, err, auth) = post(&c, pa, "/api/v1/commands/mode", None, body).await;
    assert_eq!((code, auth.as_deref()), (401, Some("Bearer")));
    validate(&doc, "ApiError", &err);
    let (code, err, _) = post(
        &c,
        pa,
        "/api/v1/commands/mode",
        Some("duet_not-a-token"),
        body,
    )
    .await;
    assert_eq!(code, 401, "{err}");
    let (code, err, _) = post(&c, pa, "/api/v1/commands/mode", Some(VIEWER), body).await;
    assert_eq!(code, 403, "{err}");
    validate(&doc, "ApiError", &err);
    let (code, _, _) = post(&c, pa, "/api/v1/commands/switch", Some(VIEWER), "").await;
    assert_eq!(code, 403);
    // Force online without the witness on a pair without one: refused (409), and a body that
    // is not a force-online body is a 400 naming what it expected.
    let force = "/api/v1/commands/force-online";
    let (code, err, _) = post(&c, pa, force, Some(VIEWER), r#"{"without_witness":true}"#).await;
    assert_eq!(code, 409, "{err}");
    validate(&doc, "ApiError", &err);
    assert!(
        err.to_string().contains("no witness is configured"),
        "{err}"
    );
    let (code, err, _) = post(&c, pa, force, Some(VIEWER), r#"{"without":true}"#).await;
    assert_eq!(code, 400, "{err}");
    assert!(err.to_string().contains("without_witness"), "{err}");
    tokio::time::sleep(Duration::from_millis(600)).await; // a few ticks
    let s = status_of(&c, pa).await;
    assert_eq!(
        (mode_of(&s), state_of(&s)),
        (Some(Mode::Automatic), Some(FailoverState::Online)),
        "refused calls changed nothing"
    );
    let history = get_json(&c, pa, "/api/v1/history").await;
    assert!(
        history["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["by"].is_null()),
        "no command was recorded: {history}"
    );

    // The event stream sends the status now, and the change within 5 s of a command.
    let mut stream = c
        .get(format!("http://127.0.0.1:{pa}/api/v1/stream"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    next_event(&mut stream, &mut buf, Duration::from_secs(5), |_| true).await;
    let (code, accepted, _) = post(&c, pa, "/api/v1/commands/mode", Some(ALICE), body).await;
    assert_eq!(code, 202, "{accepted}");
    validate(&doc, "CommandAccepted", &accepted);
    let changed = Instant::now();
    next_event(&mut stream, &mut buf, Duration::from_secs(5), |s| {
        mode_of(s) == Some(Mode::Manual)
    })
    .await;
    assert!(changed.elapsed() < Duration::from_secs(5));

    // A planned switch with alice's token: agent-b takes over, and the history says who.
    let (code, _, _) = post(&c, pa, "/api/v1/commands/switch", Some(ALICE), "").await;
    assert_eq!(code, 202);
    next_event(&mut stream, &mut buf, Duration::from_secs(15), |s| {
        state_of(s) == Some(FailoverState::Offline)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while state_of(&status_of(&c, pb).await) != Some(FailoverState::Online) {
        assert!(Instant::now() < deadline, "agent-b did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let history = get_json(&c, pa, "/api/v1/history").await;
    validate(&doc, "History", &history);
    let by_alice: Vec<&Value> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["by"] == "alice")
        .collect();
    assert_eq!(
        by_alice.len(),
        2,
        "the mode change and the switch, both by alice: {history:#}"
    );

    // /metrics parses as Prometheus text and carries state, LEDs, rows, heartbeats, decisions.
    let text = c
        .get(format!("http://127.0.0.1:{pa}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let value = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| s.value.clone())
    };
    assert!(
        matches!(value("duet_failover_state", ("state", "offline")), Some(prometheus_parse::Value::Gauge(v)) if v == 1.0),
        "{text}"
    );
    assert!(
        matches!(
            value("duet_led", ("column", "local")),
            Some(prometheus_parse::Value::Gauge(_))
        ),
        "{text}"
    );
    assert!(
        value("duet_row_healthy", ("key", "heartbeat:hb0")).is_some(),
        "{text}"
    );
    assert!(
        matches!(value("duet_heartbeat_rtt_seconds", ("id", "hb0")), Some(prometheus_parse::Value::Gauge(v)) if v > 0.0),
        "{text}"
    );
    assert!(
        matches!(value("duet_decisions_total", ("reason", "operator")), Some(prometheus_parse::Value::Counter(v)) if v >= 2.0),
        "{text}"
    );
    assert!(
        matches!(value("duet_transitions_total", ("to", "going_offline")), Some(prometheus_parse::Value::Counter(v)) if v >= 1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_lists_the_buddys_agent_paths_and_sync_target_not_the_pinged_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let buddy_peer = crate::support::peer_port(pb);
    // One agent is enough: /api/v1/pair is the pair as configured. Its sync connection goes
    // to the buddy over 127.0.0.2, its inverted heartbeat to a "gateway" and a ping to a
    // router, all on loopback.
    let a = AgentSpec {
        extra: format!(
            "[sync]\ntarget = \"127.0.0.2:{buddy_peer}\"\n\
             [[heartbeat]]\nkind = \"inverted\"\ntarget = \"127.0.0.254\"\n\
             [[heartbeat]]\nkind = \"ping\"\ntarget = \"127.0.0.3\"\n"
        ),
        ..AgentSpec::new("agent-a", "agent-b", 200, pa, pb)
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&a)]);
    let c = client();
    let pair = {
        let c = c.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = c
                .get(format!("http://127.0.0.1:{pa}/api/v1/pair"))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                break v;
            }
            assert!(Instant::now() < deadline, "the agent's API did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let doc = get_json(&c, pa, "/api/v1/openapi.json").await;
    validate(&doc, "PairInfo", &pair);
    assert_eq!(
        pair["buddy"]["addresses"],
        serde_json::json!([
            format!("127.0.0.1:{buddy_peer}"),
            format!("127.0.0.2:{buddy_peer}")
        ]),
        "the agent heartbeat's and the sync connection's targets, not the gateway nor the pinged host: {pair:#}"
    );
}

#[test]
fn status_exit_codes_red_and_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb, nobody) = (free_port(), free_port(), free_port());
    // agent-b has a second heartbeat path to a port nobody listens on: its LED is red. Agent
    // paths must be symmetric (or both agents show Configuration Invalid): agent-a's second
    // path goes to agent-b, and works.
    let path = |port: u16| {
        format!(
            "[[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:{}\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n",
            crate::support::peer_port(port)
        )
    };
    let a = AgentSpec {
        extra: path(pb),
        ..AgentSpec::new("agent-a", "agent-b", 200, pa, pb)
    }
    .write(dir.path());
    let b = AgentSpec {
        extra: path(nobody),
        ..AgentSpec::new("agent-b", "agent-a", 100, pb, pa)
    }
    .write(dir.path());
    // agent-c's configured buddy never answers.
    let (pc, silent) = (free_port(), free_port());
    let c = AgentSpec::new("agent-c", "agent-d", 100, pc, silent).write(dir.path());
    let _agents = Agents(vec![spawn(&a), spawn(&b), spawn(&c)]);

    let text = eventually(
        Duration::from_secs(30),
        "agent-b red with its buddy green",
        || {
            let (code, text) = status(pb, false);
            (code == 1 && text.contains("Failing") && text.contains("LED green")).then_some(text)
        },
    );
    assert!(
        text.contains("agent-b") && text.contains("LED red: A problem has been detected"),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when the output is not a terminal: {text:?}"
    );

    let text = eventually(
        Duration::from_secs(30),
        "agent-c's buddy unreachable",
        || {
            let (code, text) = status(pc, false);
            (code == 2).then_some(text)
        },
    );
    assert!(
        text.contains("Agent Status") && text.contains("Unreachable"),
        "{text}"
    );
}
