//! The peer link against real agents on loopback: a pair with mismatched keys shows
//! "Configuration Invalid: pair key mismatch" on both sides (and neither takes over), a pair
//! with different failover settings shows Configuration Invalid too; frames
//! that are garbled, too large, signed with another key, forged inside a session or replayed
//! are rejected and counted in `/metrics`, and change nothing (so is a batch of events that
//! holds no events); garbage from senders that close
//! at once is counted frame by frame, and the refusals are logged rate-limited.

use std::time::Duration;

use duet_core::FailoverState;
use duet_core::api::Status;
use duet_host::frame::{Hello, PairKey, Session, read_frame, write_frame};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::{
    AgentSpec, Agents, PAIR_KEY, duet_bin, eventually, free_port, peer_port, spawn, status_json,
};
use crate::support::{row, state};

#[test]
fn mismatched_pair_keys_show_configuration_invalid_and_nobody_takes_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let b = AgentSpec {
        pair_key: "another-pair-key-0123456789".into(),
        ..AgentSpec::new("agent-b", "agent-a", 100, pb, pa)
    }
    .write(dir.path());
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    for port in [pa, pb] {
        let status = eventually(
            Duration::from_secs(20),
            "Configuration Invalid: pair key mismatch",
            || {
                let s = status_json(port)?;
                let r = row(&s, "configuration")?;
                (r.value == "Invalid").then_some(s)
            },
        );
        let config = row(&status, "configuration").expect("configuration row");
        assert_eq!(config.reason.as_deref(), Some("pair key mismatch"));
        let hb = row(&status, "heartbeat:hb0").expect("heartbeat row");
        assert!(
            hb.reason
                .as_deref()
                .is_some_and(|r| r.contains("pair key mismatch")),
            "the heartbeat row says why: {hb:?}"
        );
        assert_eq!(hb.failures, Some(0), "a key mismatch is not a dead buddy");
    }
    // Past the start-up wait (3 s): a buddy that answers with the wrong key is not dead, so
    // nobody takes over and there is no split brain.
    std::thread::sleep(Duration::from_secs(4));
    for port in [pa, pb] {
        let s = status_json(port).expect("status");
        assert_eq!(state(&s), Some(FailoverState::Offline), "{s:?}");
    }
}

#[test]
fn different_failover_settings_show_configuration_invalid_on_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa).write(dir.path());
    let text = std::fs::read_to_string(&b).expect("config");
    let changed = text.replace(
        "startup_wait = \"3s\"",
        "startup_wait = \"3s\"\nmin_switch_interval = \"10s\"",
    );
    assert_ne!(text, changed, "the setting was changed");
    std::fs::write(&b, changed).expect("config");
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    for (port, ours, theirs, buddy) in
        [(pa, "30s", "10s", "agent-b"), (pb, "10s", "30s", "agent-a")]
    {
        let config = eventually(Duration::from_secs(20), "Configuration Invalid", || {
            row(&status_json(port)?, "configuration").filter(|r| r.value == "Invalid")
        });
        assert_eq!(
            config.reason,
            Some(format!(
                "failover.min_switch_interval differs: {ours} here, {theirs} on {buddy}"
            ))
        );
    }
}

/// The rejected-frame counters of the agent whose API is on `port`, summed over reasons.
async fn rejected(port: u16) -> std::collections::BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let metrics = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text");
    metrics
        .samples
        .iter()
        .filter(|s| s.metric == "duet_peer_frames_rejected_total")
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => Some((s.labels["reason"].to_string(), v)),
            _ => None,
        })
        .collect()
}

/// Opens a session to `peer` as `agent`, with `key`.
async fn session(peer: u16, agent: &str, key: &PairKey) -> (TcpStream, Session) {
    let mut stream = TcpStream::connect(("127.0.0.1", peer))
        .await
        .expect("connect");
    let ours = Hello::new(agent).expect("hello");
    write_frame(&mut stream, &ours.seal(key))
        .await
        .expect("send hello");
    let frame = read_frame(&mut stream)
        .await
        .expect("read hello")
        .expect("a frame");
    let theirs = Hello::open(key, &frame).expect("the agent's hello verifies");
    (stream, Session::new(key.clone(), &ours, &theirs, true))
}

/// Whether the server closed the connection (it does after any rejected frame).
async fn closed(stream: &mut TcpStream) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(5), read_frame(stream)).await,
        Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_garbled_frames_are_rejected_counted_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa).write(dir.path());
    let _agents = Agents(vec![spawn(&a), spawn(&b)]);
    let healthy = |s: &Status| {
        state(s) == Some(FailoverState::Online)
            && s.pair
                .as_ref()
                .is_some_and(|p| p.buddy.state == Some(FailoverState::Offline))
    };
    tokio::task::spawn_blocking(move || {
        eventually(
            Duration::from_secs(20),
            "agent-a Online, agent-b Offline",
            || status_json(pa).filter(healthy),
        )
    })
    .await
    .expect("wait");
    let before = crate::support::history(pa).await.len();
    let peer = peer_port(pa);
    let key = PairKey::new(PAIR_KEY.as_bytes());

    // Garbage where a hello belongs.
    let mut s = TcpStream::connect(("127.0.0.1", peer))
        .await
        .expect("connect");
    write_frame(&mut s, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    let _ = read_frame(&mut s).await; // the agent's hello
    assert!(closed(&mut s).await, "garbage closes the connection");

    // A length over the limit: refused before reading it.
    let mut s = TcpStream::connect(("127.0.0.1", peer))
        .await
        .expect("connect");
    s.write_all(&u32::MAX.to_be_bytes()).await.expect("send");
    let _ = read_frame(&mut s).await;
    assert!(
        closed(&mut s).await,
        "an oversized frame closes the connection"
    );

    // A hello signed with another key.
    let mut s = TcpStream::connect(("127.0.0.1", peer))
        .await
        .expect("connect");
    let wrong = PairKey::new(b"not-the-pair-key-at-all");
    write_frame(&mut s, &Hello::new("agent-b").expect("hello").seal(&wrong))
        .await
        .expect("send");
    let _ = read_frame(&mut s).await;
    assert!(closed(&mut s).await, "a hello with another key is refused");

    // A dangerous claim: agent-b is Online and asks agent-a to go offline.
    let claim = serde_json::to_vec(&serde_json::json!({"report": {
        "agent": "agent-b", "boot": 1, "fingerprint": "", "priority": 100,
        "state": "online", "mode": "automatic", "isolated": false,
        "report": {"agent": "agent-b", "generated_at": 0, "state": "online",
                   "led": "green", "rows": []},
        "tick": 1_000_000, "tick_ms": 250, "was_online": true, "yielding": null,
        "request": [1, "takeover"], "answer": null}}))
    .expect("json");

    // Forged: inside a real session, the claim with one bit of its MAC flipped.
    let (mut stream, mut session1) = session(peer, "agent-b", &key).await;
    let mut forged = session1.seal(&claim).expect("seal");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    write_frame(&mut stream, &forged).await.expect("send");
    assert!(
        closed(&mut stream).await,
        "a forged frame closes the session"
    );

    // Replayed: the claim sealed on one session (as an eavesdropper would record it) and sent
    // on another.
    let (_recorded_on, mut session2) = session(peer, "agent-b", &key).await;
    let recorded = session2.seal(&claim).expect("seal");
    let (mut stream, _) = session(peer, "agent-b", &key).await;
    write_frame(&mut stream, &recorded).await.expect("send");
    assert!(
        closed(&mut stream).await,
        "a frame recorded on another session is rejected"
    );

    // Authentic but not a message.
    let (mut stream, mut session3) = session(peer, "agent-b", &key).await;
    let odd = session3.seal(br#"{"not": "a message"}"#).expect("seal");
    write_frame(&mut stream, &odd).await.expect("send");
    assert!(
        closed(&mut stream).await,
        "an unreadable message closes the session"
    );
    // Authentic, a batch of events by its name, but no events inside: unreadable too (the
    // event log reads the batch; the peer link counts and ends it like any unreadable one).
    let (mut stream, mut session4) = session(peer, "agent-b", &key).await;
    let batch = br#"{"events": {"origin": "agent-b", "events": [{"not": "an event"}]}}"#;
    let not_events = session4.seal(batch).expect("seal");
    write_frame(&mut stream, &not_events).await.expect("send");
    assert!(
        closed(&mut stream).await,
        "a batch that holds no events closes the session"
    );

    let counts = rejected(pa).await;
    for reason in ["bad_magic", "too_large", "bad_mac", "unreadable"] {
        assert!(
            counts.get(reason).copied().unwrap_or(0.0) >= 1.0,
            "{reason} counted: {counts:?}"
        );
    }
    assert!(
        counts.get("unreadable").copied().unwrap_or(0.0) >= 2.0,
        "both unreadable messages counted: {counts:?}"
    );
    // Nothing changed: agent-a is still Online with agent-b Offline, and no decision since
    // (a new reason on a loaded machine is possible) left Online.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = tokio::task::spawn_blocking(move || status_json(pa))
        .await
        .expect("status")
        .expect("agent-a answers");
    assert!(healthy(&s), "{s:?}");
    let since: Vec<_> = crate::support::history(pa)
        .await
        .into_iter()
        .skip(before)
        .collect();
    assert!(
        since
            .iter()
            .all(|e| e.decision.state.state == FailoverState::Online),
        "agent-a stayed Online: {since:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_senders_that_close_at_once_is_counted_frame_by_frame_and_logged_rate_limited()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (pa, pb) = (free_port(), free_port());
    // One agent (its buddy never runs): nothing else rejects frames on its peer port.
    let a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb).write(dir.path());
    let stderr = dir.path().join("agent-a.stderr");
    let child = std::process::Command::new(duet_bin())
        .arg("run")
        .arg("--config")
        .arg(&a)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn duet");
    let _agents = Agents(vec![child]);
    tokio::task::spawn_blocking(move || {
        eventually(Duration::from_secs(20), "agent-a's API", || status_json(pa))
    })
    .await
    .expect("wait");
    let peer = peer_port(pa);

    // 100 senders, each: connect, one garbage frame, close at once (before the agent's hello
    // can be read, so the agent's hello meets a closed socket).
    const SENDERS: usize = 100;
    for _ in 0..SENDERS {
        let mut s = TcpStream::connect(("127.0.0.1", peer))
            .await
            .expect("connect");
        write_frame(&mut s, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("send");
        drop(s);
        // Paced a little, so the per-host connection limit (8) is rarely what refuses one.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = |counts: &std::collections::BTreeMap<String, f64>| counts.values().sum::<f64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = rejected(pa).await;
        // A sender that closes with the agent's hello unread resets the connection (RST),
        // and the kernel may drop what the agent had not read yet: that frame arrives cut
        // (counted as `truncated`) or not at all. 95 still proves the fix (4 of 100 before it).
        if total(&counts) >= (SENDERS - 5) as f64 {
            break counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {SENDERS} garbage frames counted: {counts:?}",
            total(&counts)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Each frame once: the unjudged ones can only be those the connection limit refused, and
    // those are counted too; a frame cut by its sender's reset is `truncated`.
    assert!(total(&counts) <= SENDERS as f64, "{counts:?}");
    assert!(
        counts
            .keys()
            .all(|r| r == "bad_magic" || r == "too_many_connections" || r == "truncated"),
        "{counts:?}"
    );
    assert!(
        counts.get("bad_magic").copied().unwrap_or(0.0) >= 1.0,
        "{counts:?}"
    );

    // A hundred refusals within a few seconds, one source address: one log line (at most one
    // per 10 s), not a hundred.
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    let lines = log
        .lines()
        .filter(|l| l.contains("peer port: connection refused"))
        .count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} refusal lines for {SENDERS} refused connections:\n{log}"
    );
}
