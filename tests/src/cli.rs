//! The `duet` binary: `check-config`, `--version`, and a real two-agent pair on loopback.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{AgentSpec, Agents, duet_bin, free_port, spawn, status, workspace};

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("duet.toml");
    std::fs::write(&file, text).expect("write config");
    let out = Command::new(duet_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run duet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    std::fs::read_to_string(workspace().join("docs/duet.example.toml"))
        .expect("docs/duet.example.toml")
}

#[test]
fn check_config_accepts_the_documented_example() {
    let file = workspace().join("docs/duet.example.toml");
    let out = Command::new(duet_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run duet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_rejects_mistakes_naming_the_key_path() {
    let cases: [(&str, String, &str); 12] = [
        (
            "unknown key",
            example().replace(
                "mode = \"automatic\"",
                "mode = \"automatic\"\ncolour = \"red\"",
            ),
            "agent.colour: unknown field `colour`",
        ),
        (
            "wrong type",
            example().replace("priority = 100", "priority = \"high\""),
            "agent.priority: invalid type",
        ),
        (
            "bad duration",
            example().replace("interval = \"200ms\"", "interval = \"fast\""),
            "heartbeat[0].interval: \"fast\" is not a duration",
        ),
        (
            "timeout over interval",
            example().replace("timeout = \"200ms\"", "timeout = \"2s\""),
            "heartbeat[0].timeout: 2s is longer than the interval",
        ),
        (
            "no agent heartbeat",
            example().replace("kind = \"agent\"", "kind = \"ping\""),
            "heartbeat: at least one heartbeat with kind = \"agent\"",
        ),
        (
            "same names",
            example().replace("name = \"agent-b\"", "name = \"agent-a\""),
            "buddy.name: the buddy must have another name",
        ),
        (
            "bad address",
            example().replace("listen = \"127.0.0.1:7101\"", "listen = \"localhost\""),
            "api.listen: \"localhost\" is not an address:port",
        ),
        (
            "API on port 0",
            example().replace("listen = \"127.0.0.1:7101\"", "listen = \"127.0.0.1:0\""),
            "api.listen: \"127.0.0.1:0\" has port 0",
        ),
        (
            "heartbeat to port 0",
            example().replace("target = \"127.0.0.1:7202\"", "target = \"127.0.0.1:0\""),
            "heartbeat[0].target: \"127.0.0.1:0\" has port 0",
        ),
        (
            "out of range",
            example().replace("memory_limit_mib = 64", "memory_limit_mib = 0"),
            "core.memory_limit_mib: 0 is out of range",
        ),
        (
            "token stored in clear",
            example().replace(
                "0000000000000000000000000000000000000000000000000000000000000000",
                "duet_my-secret",
            ),
            "api.token[0].sha256: expected the 64 hex digits",
        ),
        (
            "missing section",
            example().replace("[buddy]\nname = \"agent-b\"", ""),
            "missing field `buddy`",
        ),
    ];
    for (kind, text, expected) in cases {
        let (code, stderr) = check_config(&text);
        assert_eq!(code, 1, "{kind}: exit code; stderr: {stderr}");
        assert!(
            stderr.contains(expected),
            "{kind}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(duet_bin())
        .arg("--version")
        .output()
        .expect("run duet");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("duet {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn two_agents_on_loopback_elect_exactly_one_online_and_report_green() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa).write(dir.path());
    let mut agents = Agents(vec![spawn(&a), spawn(&b)]);

    // Poll with a deadline: both green, agent-a (higher priority) Online, agent-b Offline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let states = loop {
        let (ca, ja) = status(pa, true);
        let (cb, jb) = status(pb, true);
        let state_of = |json: &str| {
            serde_json::from_str::<duet_core::api::Status>(json)
                .ok()
                .and_then(|s| s.decision)
                .map(|d| d.state.state)
        };
        let states = (state_of(&ja), state_of(&jb));
        if ca == 0
            && cb == 0
            && states
                == (
                    Some(duet_core::FailoverState::Online),
                    Some(duet_core::FailoverState::Offline),
                )
        {
            break states;
        }
        assert!(
            Instant::now() < deadline,
            "pair did not settle: a={ca} {states:?}\n{ja}\n{jb}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(states.0, Some(duet_core::FailoverState::Online));

    // The terminal view shows both columns with their state and age, and why this agent is
    // where it is.
    let (code, text) = status(pb, false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("agent-a") && text.contains("agent-b") && text.contains("Heartbeat"),
        "{text}"
    );
    assert!(text.contains("Why is agent-b Offline?"), "{text}");
    assert!(
        text.contains("agent-a — Online") && text.contains("last report "),
        "{text}"
    );

    // The failover log of the winner has the transitions, in the reference's words.
    let log =
        std::fs::read_to_string(dir.path().join("agent-a-failover.log")).expect("failover log");
    assert!(
        log.contains("Failover Status => Preparing to go online"),
        "{log}"
    );
    assert!(log.contains("Failover Status => Online"), "{log}");

    // Kill the Online agent: the backup's status turns red with the buddy Unreachable (exit 1),
    // and it takes over once its heartbeats exceed their allowed failures.
    let mut online = agents.0.remove(0);
    online.kill().expect("kill agent-a");
    online.wait().expect("reap agent-a");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, json) = status(pb, true);
        let s: duet_core::api::Status = serde_json::from_str(&json).expect("status json");
        let online =
            s.decision.as_ref().map(|d| d.state.state) == Some(duet_core::FailoverState::Online);
        let unreachable = s
            .pair
            .as_ref()
            .is_some_and(|p| p.buddy.rows.iter().any(|r| r.value == "Unreachable"));
        if online && unreachable {
            assert_eq!(code, 2, "an unreachable buddy gives exit code 2");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backup did not take over: {json}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // An agent whose API does not answer: exit code 2.
    let (code, _) = status(pa, false);
    assert_eq!(code, 2);
}

#[test]
fn check_config_names_the_line_of_a_byte_that_is_not_utf8_and_cuts_long_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("duet.toml");
    let mut bytes = example().into_bytes();
    let at = bytes
        .iter()
        .position(|b| *b == b'\n')
        .expect("a first line")
        + 2;
    bytes[at] = 0xfe;
    std::fs::write(&file, bytes).expect("write config");
    let out = Command::new(duet_bin())
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run duet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2, column 2: byte 0xfe is not UTF-8"),
        "{stderr}"
    );

    // TOML's own escape: the value read holds a real ESC.
    let huge = format!("\\u001b[2J{}", "9".repeat(10_000_000));
    let (code, stderr) =
        check_config(&example().replace("\"127.0.0.1:7101\"", &format!("\"{huge}\"")));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("api.listen: \"\\x1b[2J999"), "{stderr}");
    assert!(stderr.len() < 1_000, "{} bytes printed back", stderr.len());
    assert!(!stderr.contains('\x1b'));
}

/// A loopback server that greets every client with an escape sequence: clear the screen, red,
/// and a line rewritten.
fn hostile_banner_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, b"\x1b[2J\x1b[31mowned\rOK\x07");
        }
    });
    port
}

#[tokio::test]
async fn outside_text_is_escaped_in_duet_status_and_duet_events_and_far_times_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    std::fs::copy(crate::support::HOSTILE_PLUGIN, plugins.join("greeter.wasm")).expect("copy");
    let banner = hostile_banner_server();
    let port = free_port();
    let spec = AgentSpec {
        extra: format!(
            "[[api.token]]\nname = \"app\"\nsha256 = \"{}\"\nrights = [\"events\"]\n\
             [plugins]\ndir = \"plugins\"\n[plugins.plugin.greeter]\ninterval = \"1s\"\n\
             connect = [\"127.0.0.1:{banner}\"]\n\
             config = {{ mode = \"connect\", target = \"127.0.0.1:{banner}\" }}\n",
            crate::api::sha256_hex("app-token")
        ),
        ..AgentSpec::new("agent-a", "agent-b", 200, port, free_port())
    };
    let _agents = Agents(vec![spawn(&spec.write(dir.path()))]);
    // The plugin's row carries the banner as the server sent it.
    crate::support::eventually(Duration::from_secs(30), "the greeter's row", || {
        let json = status(port, true).1;
        json.contains("owned").then_some(())
    });

    let post = |at: Option<u64>| {
        let mut event = serde_json::json!({
            "severity": "warning",
            "code": "\u{1b}]0;pwned\u{7}code",
            "message": "\u{1b}[2Jcleared\u{202e}txet",
        });
        if let Some(at) = at {
            event["at"] = at.into();
        }
        crate::api::client()
            .post(format!("http://127.0.0.1:{port}/api/v1/events"))
            .bearer_auth("app-token")
            .json(&serde_json::json!({ "events": [event] }))
            .send()
    };
    assert_eq!(post(None).await.expect("post").status(), 201);
    for far in [253_402_300_800_000, u64::MAX, 1] {
        let refused = post(Some(far)).await.expect("post");
        assert_eq!(refused.status(), 400, "at = {far}");
        let body = refused.text().await.expect("body");
        assert!(body.contains("events[0].at"), "{body}");
    }

    let (_, text) = status(port, false);
    assert!(text.contains("\\x1b[2J\\x1b[31mowned\\rOK\\x07"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    let out = Command::new(duet_bin())
        .args(["events", "--api", &format!("127.0.0.1:{port}")])
        .output()
        .expect("duet events");
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{events}");
    assert!(events.contains("\\x1b]0;pwned\\x07code"), "{events}");
    assert!(events.contains("\\x1b[2Jcleared\\u{202e}txet"), "{events}");
    assert!(
        !events.contains('\x1b') && !events.contains('\u{202e}'),
        "{events:?}"
    );
}

#[test]
fn check_config_accepts_a_witness_and_names_its_bad_timings() {
    let dir = tempfile::tempdir().expect("dir");
    let witness = |timings: &str| {
        format!(
            "{}\n[nats_connection]\nservers = [\"nats://10.0.0.11:4222\", \"nats://10.0.0.12:4222\", \"nats://10.0.0.13:4222\"]\n[witness]\nkey = \"pair-a\"\n{timings}\n",
            example()
        )
    };
    let check = |text: String| {
        let file = dir.path().join("witness.toml");
        std::fs::write(&file, text).expect("write config");
        let out = Command::new(duet_bin())
            .arg("check-config")
            .arg(&file)
            .output()
            .expect("run duet");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = check(witness(""));
    assert!(ok, "{err}");
    let (ok, err) = check(witness("lease = \"2s\"\nrenew = \"1s\"\nkey2 = 1"));
    assert!(!ok);
    assert!(err.contains("witness.key2: unknown field"), "{err}");
    let (ok, err) = check(witness("lease = \"2s\"\nrenew = \"1s\""));
    assert!(!ok);
    assert!(
        err.contains("witness.renew: 1s is too long for witness.lease 2s"),
        "{err}"
    );
    assert!(err.contains("witness.margin"), "{err}");

    // One NATS section for the probe and the witness; the probe's old url alone still works,
    // beside [nats_connection] it is an error; mistakes name their key.
    let (ok, err) = check(format!("{}\n[witness]\nkey = \"pair-a\"\n", example()));
    assert!(!ok);
    assert!(err.contains("witness: needs [nats_connection]"), "{err}");
    let (ok, err) = check(format!(
        "{}\n[nats]\nurl = \"nats://10.0.0.1:4222\"\n",
        example()
    ));
    assert!(ok, "{err}");
    let (ok, err) = check(witness("[nats]\nurl = \"nats://10.0.0.1:4222\""));
    assert!(!ok);
    assert!(err.contains("nats.url: is deprecated"), "{err}");
    let (ok, err) = check(format!(
        "{}\n[nats_connection]\nservers = [\"10.0.0.1:4222\"]\nuser = \"u\"\ntls_ca = \"missing.pem\"\n[nats]\n",
        example()
    ));
    assert!(!ok);
    for key in [
        "nats_connection.servers[0]",
        "nats_connection.user",
        "nats_connection.tls_ca",
    ] {
        assert!(err.contains(key), "{key} not in {err}");
    }
}
