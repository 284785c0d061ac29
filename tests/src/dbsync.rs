//! DB Sync: the event log forwarded between two real agents (`duet run` processes) over the
//! peer link, through kills, a switch and a database outage.
//!
//! - `hundred_thousand_events_survive_kills_and_a_switch`: ≥ 100,000 events posted to both
//!   agents while the receiver is killed (once by the fault point between its commit and its
//!   acknowledgement, twice with SIGKILL), one operator switch, and the sender SIGKILLed once;
//!   then both stores hold the same (id, hash) set, each origin's events without gaps and
//!   stored in origin order, and every acknowledged post is in both.
//! - `spooled_events_survive_kill_9`: the local database is unusable; posts go to the spool;
//!   kill -9; the database comes back; the restarted agent writes the spool, and forwards it.
//! - `stack_too_large_then_ok_and_sync_failing_when_the_buddy_is_gone`: the rows.
//! - `database_row_follows_postgresql`: a real PostgreSQL stopped and started (the row names
//!   the refused connection, not the pool's timeout); a bad query.
//! - `db_sync_follows_the_lan_path_while_the_sync_cable_is_cut`: two agents in network
//!   namespaces; with the sync cable cut, forwarding takes the agent heartbeat's LAN path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duet_core::api::Status;
use duet_core::{FailoverState, Row};
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::support::{AgentSpec, duet_bin, eventually, free_port, peer_port};

const TOKEN: &str = "duet_dbsync-test-token";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .expect("client")
}

/// One agent process of a test pair, restartable.
struct Agent {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    fn new(dir: &Path, spec: AgentSpec) -> Self {
        let config = spec.write(dir);
        Agent {
            name: spec.name.clone(),
            port: spec.port,
            log: dir.join(format!("{}.stderr", spec.name)),
            config,
            child: None,
        }
    }

    fn start(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let mut cmd = Command::new(duet_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("DUET_LOG", "info,duet::events=warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn duet"));
        let port = self.port;
        eventually(Duration::from_secs(20), "the agent's API", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process has ended by itself.
    fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            _ => false,
        }
    }

    fn db(&self) -> PathBuf {
        self.config
            .parent()
            .expect("config dir")
            .join(format!("{}-events.db", self.name))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} (last lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A pair on loopback with the event log's test settings, and `extra` TOML for both.
fn pair(dir: &Path, extra: &str) -> (Agent, Agent) {
    pair_with(dir, extra, "", "")
}

/// A pair whose `[database]` sections also get `only_a` and `only_b`.
fn pair_with(dir: &Path, extra: &str, only_a: &str, only_b: &str) -> (Agent, Agent) {
    let (pa, pb) = (free_port(), free_port());
    let common = format!(
        "[[api.token]]\nname = \"app\"\nsha256 = \"{}\"\nrights = [\"switch\", \"events\"]\n\
         [database]\nhealth_interval = \"300ms\"\nforward_interval = \"200ms\"\nforward_max_backoff = \"300ms\"\n{extra}\n",
        sha256_hex(TOKEN)
    );
    let mut a = AgentSpec::new("agent-a", "agent-b", 200, pa, pb);
    a.extra = format!("{common}{only_a}\n");
    let mut b = AgentSpec::new("agent-b", "agent-a", 100, pb, pa);
    b.extra = format!("{common}{only_b}\n");
    let _ = (peer_port(pa), peer_port(pb));
    (Agent::new(dir, a), Agent::new(dir, b))
}

/// Posts `n` events; the ids stored, or `None` if the agent did not take them.
async fn post(client: &reqwest::Client, port: u16, tag: &str, n: usize) -> Option<Value> {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"severity": "info", "code": "app", "message": format!("{tag} #{i}")}))
        .collect();
    let resp = client
        .post(format!("http://127.0.0.1:{port}/api/v1/events"))
        .bearer_auth(TOKEN)
        .json(&json!({ "events": events }))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn status(client: &reqwest::Client, port: u16) -> Option<Status> {
    client
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

fn state(s: &Status) -> Option<FailoverState> {
    s.decision.as_ref().map(|d| d.state.state)
}

fn row<'a>(s: &'a Status, key: &str) -> Option<&'a Row> {
    s.pair.as_ref()?.local.rows.iter().find(|r| r.key == key)
}

/// Polls an async condition every 100 ms.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which of the two is Online (waits for one).
async fn online(client: &reqwest::Client, a: &Agent, b: &Agent) -> u16 {
    until(Duration::from_secs(20), "an Online agent", || async {
        for port in [a.port, b.port] {
            if status(client, port)
                .await
                .is_some_and(|s| state(&s) == Some(FailoverState::Online))
            {
                return Some(port);
            }
        }
        None
    })
    .await
}

/// (seq, hash) of `origin`'s events in the store at `db`, in the order they were stored
/// (SQLite's rowid).
async fn stored(db: &Path, origin: &str) -> Vec<(i64, String)> {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    let rows = sqlx::query("SELECT seq, hash FROM duet_events WHERE origin = ? ORDER BY rowid")
        .bind(origin)
        .fetch_all(&pool)
        .await
        .expect("read the store");
    pool.close().await;
    rows.iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
        .collect()
}

/// How many of `origin`'s events the agent on `port` holds.
async fn held(client: &reqwest::Client, port: u16, origin: &str) -> Option<u64> {
    let page: Value = client
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/events?origin={origin}&limit=0"
        ))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    page["total"].as_u64()
}

/// Waits until the buddy holds all of `origin`'s events that `from` holds.
async fn caught_up(client: &reqwest::Client, from: u16, to: u16, origin: &str, within: Duration) {
    until(within, &format!("{origin}'s events forwarded"), || async {
        let (f, t) = (
            held(client, from, origin).await?,
            held(client, to, origin).await?,
        );
        (f == t).then_some(())
    })
    .await;
}

/// The DB Sync Stack row of the agent (shown while it is Online).
async fn backlog(client: &reqwest::Client, port: u16) -> Option<String> {
    let s = status(client, port).await?;
    row(&s, "db-sync-stack").map(|r| r.value.clone())
}

/// Events the agents took, and the ids of those committed.
#[derive(Default)]
struct Tally {
    posted: usize,
    acknowledged: Vec<String>,
}

impl Tally {
    fn take(&mut self, answer: Option<Value>) {
        if let Some(v) = answer {
            self.posted += v["accepted"].as_u64().unwrap_or(0) as usize;
            for id in v["ids"].as_array().into_iter().flatten() {
                self.acknowledged
                    .push(id.as_str().unwrap_or_default().to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_survive_kills_and_a_switch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, mut b) = pair(dir.path(), "forward_batch = 1000\nforward_in_flight = 4");
    let client = client();
    a.start(&[]);
    // The receiver dies right after committing its third batch, before acknowledging it.
    b.start(&[("DUET_FAULT_ABORT_AFTER_COMMIT", "3")]);
    let first = online(&client, &a, &b).await;
    assert_eq!(first, a.port, "agent-a (higher priority) goes online");

    let mut tally = Tally::default();
    const BATCH: usize = 2_000;
    // Phase 1: 20,000 events on agent-a; agent-b aborts between commit and ack.
    for i in 0..10 {
        tally.take(post(&client, a.port, &format!("a1.{i}"), BATCH).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.exited() {
        assert!(
            Instant::now() < deadline,
            "the fault point did not abort agent-b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains("aborting after committing batch 3"),
        "agent-b aborted at the fault point, between commit and acknowledgement"
    );
    b.start(&[]);
    // Phase 2: 30,000 more, agent-b SIGKILLed twice while receiving.
    for i in 0..15 {
        tally.take(post(&client, a.port, &format!("a2.{i}"), BATCH).await);
        if i == 4 || i == 10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let backlog = backlog(&client, a.port).await;
            println!("SIGKILL agent-b with {backlog:?} of agent-a's events not yet acknowledged");
            b.kill();
            tally.take(post(&client, a.port, &format!("a2.{i}.dead"), BATCH).await);
            b.start(&[]);
        }
    }
    // Phase 3: one switch mid-stream (the operator's, on the Online agent-a); both agents
    // take events meanwhile.
    let switched = client
        .post(format!(
            "http://127.0.0.1:{}/api/v1/commands/switch",
            a.port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("switch");
    assert_eq!(switched.status().as_u16(), 202);
    // The switch waited for the outbox to drain: agent-b holds every event agent-a took.
    let apps = |port: u16| {
        let client = client.clone();
        async move {
            let page: Value = client
                .get(format!(
                    "http://127.0.0.1:{port}/api/v1/events?origin=agent-a&code=app&limit=0"
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            page["total"].as_u64()
        }
    };
    assert_eq!(
        apps(b.port).await,
        apps(a.port).await,
        "the switch waited for the outbox to drain"
    );
    for i in 0..5 {
        tally.take(post(&client, a.port, &format!("a3.{i}"), BATCH).await);
        tally.take(post(&client, b.port, &format!("b3.{i}"), BATCH).await);
    }
    until(
        Duration::from_secs(20),
        "agent-b Online after the switch",
        || async {
            status(&client, b.port)
                .await
                .filter(|s| state(s) == Some(FailoverState::Online))
        },
    )
    .await;
    // Phase 4: the sender agent-a SIGKILLed with its outbox full, restarted.
    for i in 0..3 {
        tally.take(post(&client, a.port, &format!("a4.{i}"), BATCH).await);
    }
    let (on_a, on_b) = (
        held(&client, a.port, "agent-a").await,
        held(&client, b.port, "agent-a").await,
    );
    println!("SIGKILL agent-a holding {on_a:?} of its events, agent-b {on_b:?}");
    a.kill();
    for i in 0..3 {
        tally.take(post(&client, b.port, &format!("b4.{i}"), BATCH).await);
    }
    a.start(&[]);
    let mut round = 0;
    while tally.posted < 100_000 {
        round += 1;
        tally.take(post(&client, a.port, &format!("a5.{round}"), BATCH).await);
        tally.take(post(&client, b.port, &format!("b5.{round}"), BATCH).await);
    }
    let acknowledged = std::mem::take(&mut tally.acknowledged);

    caught_up(&client, a.port, b.port, "agent-a", Duration::from_secs(60)).await;
    caught_up(&client, b.port, a.port, "agent-b", Duration::from_secs(60)).await;
    a.kill();
    b.kill();

    let mut total = 0;
    let mut ids = std::collections::HashSet::new();
    for origin in ["agent-a", "agent-b"] {
        let (on_a, on_b) = (stored(&a.db(), origin).await, stored(&b.db(), origin).await);
        let by_seq = |v: &[(i64, String)]| v.iter().cloned().collect::<BTreeMap<_, _>>();
        assert_eq!(
            by_seq(&on_a),
            by_seq(&on_b),
            "both logs hold the same (id, hash) set of {origin}"
        );
        for store in [&on_a, &on_b] {
            let seqs: Vec<i64> = store.iter().map(|(s, _)| *s).collect();
            let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
            assert!(
                seqs == expected,
                "{origin}'s events must be stored once each, in origin order"
            );
        }
        total += on_a.len();
        ids.extend(on_a.iter().map(|(seq, _)| format!("{origin}:{seq}")));
    }
    assert!(total >= 100_000, "only {total} events");
    println!(
        "{total} events in both logs ({} posted and acknowledged, {} taken in all)",
        acknowledged.len(),
        tally.posted
    );
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !ids.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The switch is in both logs, with who asked for it.
    for agent in [&a, &b] {
        let switches = count(
            &agent.db(),
            "code = 'switch' AND message LIKE '%Switch by app%'",
        )
        .await;
        assert!(
            switches >= 1,
            "{}: the operator's switch is in the event log",
            agent.name
        );
    }
}

/// Events in the store at `db` matching `filter`.
async fn count(db: &Path, filter: &str) -> i64 {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open the store");
    let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM duet_events WHERE {filter}"))
        .fetch_one(&pool)
        .await
        .expect("count")
        .get(0);
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The database cannot be opened: its folder is a file.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "not a folder").expect("write");
    let url = format!("url = \"sqlite://{}/a.db?mode=rwc\"", blocked.display());
    let (mut a, mut b) = pair_with(dir.path(), "", &url, "");
    let client = client();
    a.start(&[]);
    let failing = until(Duration::from_secs(10), "Database Failing", || async {
        let s = status(&client, a.port).await?;
        let r = row(&s, "database")?;
        (r.value == "Failing").then(|| r.reason.clone().unwrap_or_default())
    })
    .await;
    assert!(!failing.is_empty(), "the Database row gives a reason");
    for i in 0..3 {
        let answer = post(&client, a.port, &format!("spooled.{i}"), 1_000)
            .await
            .expect("the agent takes events while its database is down");
        assert_eq!(answer["outcome"], "spooled", "{answer}");
    }
    a.kill();
    // The database comes back; the restarted agent writes the spool into it.
    std::fs::remove_file(&blocked).expect("rm");
    std::fs::create_dir(&blocked).expect("mkdir");
    a.start(&[]);
    let apps = |port: u16| {
        let client = client.clone();
        async move {
            let page: Value = client
                .get(format!(
                    "http://127.0.0.1:{port}/api/v1/events?origin=agent-a&code=app&limit=1000&order=asc"
                ))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(page)
        }
    };
    let page = until(Duration::from_secs(20), "the spool written", || async {
        apps(a.port).await.filter(|p| p["total"] == 3_000)
    })
    .await;
    assert_eq!(
        page["events"][0]["message"], "spooled.0 #0",
        "in posting order"
    );
    // And forwarded once the buddy is there.
    b.start(&[]);
    until(
        Duration::from_secs(20),
        "the spooled events forwarded",
        || async { apps(b.port).await.filter(|p| p["total"] == 3_000) },
    )
    .await;
    assert!(
        std::fs::read_dir(dir.path().join("agent-a-events-spool"))
            .expect("spool folder")
            .next()
            .is_none(),
        "a written spool file is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_too_large_then_ok_and_sync_failing_when_the_buddy_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, mut b) = pair(
        dir.path(),
        "stack_too_large = 1000\nforward_batch = 100\nforward_in_flight = 1",
    );
    let client = client();
    a.start(&[]);
    // A slow receiver: 100 ms per batch of 100, about 1,000 events/s.
    b.start(&[("DUET_FAULT_RECEIVE_DELAY_MS", "100")]);
    assert_eq!(online(&client, &a, &b).await, a.port);
    let active = until(Duration::from_secs(10), "DB Sync Active", || async {
        let s = status(&client, a.port).await?;
        row(&s, "db-sync").filter(|r| r.value == "Active").cloned()
    })
    .await;
    assert!(active.last_success.is_some());
    for i in 0..2 {
        post(&client, a.port, &format!("burst.{i}"), 2_000)
            .await
            .expect("posted");
    }
    let too_large = until(
        Duration::from_secs(10),
        "DB Sync Stack Too Large",
        || async {
            let s = status(&client, a.port).await?;
            row(&s, "db-sync-stack")
                .filter(|r| r.value.starts_with("Too Large ("))
                .cloned()
        },
    )
    .await;
    assert!(too_large.turns_led_red, "{too_large:?}");
    assert!(
        too_large
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("more than 1000"),
        "{too_large:?}"
    );
    until(
        Duration::from_secs(30),
        "DB Sync Stack back to OK",
        || async {
            let s = status(&client, a.port).await?;
            row(&s, "db-sync-stack")
                .filter(|r| r.value == "OK (0)")
                .cloned()
        },
    )
    .await;
    // The buddy is gone: Failing, with the reason.
    b.kill();
    let failing = until(Duration::from_secs(10), "DB Sync Failing", || async {
        let s = status(&client, a.port).await?;
        row(&s, "db-sync").filter(|r| r.value == "Failing").cloned()
    })
    .await;
    let reason = failing.reason.unwrap_or_default();
    assert!(
        reason.contains("refused") || reason.contains("closed") || reason.contains("failed"),
        "{reason}"
    );
    assert!(failing.last_success.is_some(), "the last success is kept");
    // Only the Online agent shows the rows.
    let s = status(&client, a.port).await.expect("status");
    assert!(row(&s, "db-sync").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_row_follows_postgresql_and_a_bad_query_is_a_reason() {
    let pg = crate::pg::Postgres::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, mut b) = pair_with(
        dir.path(),
        "health_timeout = \"1s\"",
        &format!("url = \"{}\"", pg.url()),
        "health_query = \"SELECT nonsense FROM nowhere\"",
    );
    let client = client();
    a.start(&[]);
    b.start(&[]);
    let database = |port: u16| {
        let client = client.clone();
        async move { row(&status(&client, port).await?, "database").cloned() }
    };
    until(
        Duration::from_secs(20),
        "Database OK on PostgreSQL",
        || async { database(a.port).await.filter(|r| r.value == "OK") },
    )
    .await;
    // Events go into PostgreSQL, and are forwarded from it.
    post(&client, a.port, "pg", 500).await.expect("posted");
    caught_up(&client, a.port, b.port, "agent-a", Duration::from_secs(20)).await;
    pg.stop();
    let failing = until(Duration::from_secs(20), "Database Failing", || async {
        database(a.port).await.filter(|r| r.value == "Failing")
    })
    .await;
    assert!(failing.turns_led_red);
    // The row names the cause: PostgreSQL refuses connections, at its address. (The first
    // failure may be the broken pooled connection; the next check tries a new one.)
    let refused = format!(
        "cannot connect to 127.0.0.1:{}: connection refused",
        pg.port
    );
    let failing = until(
        Duration::from_secs(20),
        "Database Failing: connection refused",
        || async {
            database(a.port).await.filter(|r| {
                r.value == "Failing" && r.reason.as_deref().is_some_and(|w| w.contains(&refused))
            })
        },
    )
    .await;
    let reason = failing.reason.unwrap_or_default();
    assert!(
        !reason.contains("pool timed out") && !reason.contains("postgres://"),
        "the cause, not the pool's timeout, and never the URL: {reason}"
    );
    // The default: a failing database never switches.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = status(&client, a.port)
        .await
        .expect("agent-a keeps running");
    assert_eq!(
        state(&s),
        Some(FailoverState::Online),
        "no switch: {reason}"
    );
    pg.run();
    until(Duration::from_secs(20), "Database OK again", || async {
        database(a.port).await.filter(|r| r.value == "OK")
    })
    .await;
    // A query that cannot run: Failing with the database's words; the agent keeps running.
    let bad = until(
        Duration::from_secs(10),
        "Database Failing on a bad query",
        || async { database(b.port).await.filter(|r| r.value == "Failing") },
    )
    .await;
    let reason = bad.reason.unwrap_or_default();
    assert!(
        reason.contains("health query") && reason.contains("nowhere"),
        "{reason}"
    );
    assert!(!b.exited(), "agent-b keeps running");
}

/// The DB Sync row of agent `i` of a namespace pair (shown while it is Online).
fn ns_db_sync(t: &crate::netns::Topology, i: usize) -> Option<Row> {
    t.status(i)?
        .pair?
        .local
        .rows
        .into_iter()
        .find(|r| r.key == "db-sync")
}

/// Whether agent `at`'s event log holds an event of `origin` with this code.
fn ns_holds(t: &crate::netns::Topology, at: usize, origin: &str, code: &str) -> bool {
    t.events(at, code)
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|page| {
            page["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["origin"] == origin)
        })
}

#[test]
fn db_sync_follows_the_lan_path_while_the_sync_cable_is_cut() {
    use crate::netns::{AGENTS, FAST, Topology};
    if !crate::support::is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    t.configure(FAST);
    let (p, q) = t.start_pair();
    eventually(Duration::from_secs(15), "DB Sync Active", || {
        ns_db_sync(&t, p).filter(|r| r.value == "Active")
    });

    // The sync cable cut: the Online agent raises `sync_failing` (its own event), which must
    // reach the buddy over the LAN path while the cable is still cut. Before, forwarding
    // waited 15 s for an acknowledgement on the dead connection, then kept dialling the sync
    // target.
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    t.link(p, "sync", false);
    eventually(
        Duration::from_secs(8),
        "the Online agent's sync_failing event on the buddy, over the LAN",
        || ns_holds(&t, q, AGENTS[p], "sync_failing").then_some(()),
    );
    // DB Sync stayed Active, and keeps succeeding after the cut.
    let row = eventually(
        Duration::from_secs(5),
        "a DB Sync success after the cut",
        || ns_db_sync(&t, p).filter(|r| r.last_success.is_some_and(|at| at > cut)),
    );
    assert_eq!(row.value, "Active", "{row:?}\n{}", t.logs());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let row = ns_db_sync(&t, p).expect("the DB Sync row");
        assert_eq!(row.value, "Active", "{row:?}\n{}", t.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The cable back: forwarding returns to it.
    t.link(p, "sync", true);
    let out = t.dir.path().join(format!("{}.out", AGENTS[p]));
    // The buddy's address on the sync cable (netns.rs: agent i is 10.78.0.<i + 1>).
    let back = format!(
        "the sync connection to 10.78.0.{}:7201 works again: forwarding over it",
        q + 1
    );
    eventually(
        Duration::from_secs(10),
        "forwarding back on the sync cable",
        || {
            std::fs::read_to_string(&out)
                .ok()?
                .contains(&back)
                .then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_api_pages_filters_guards_and_matches_the_openapi_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut a, _b) = pair(dir.path(), "");
    let client = client();
    a.start(&[]);
    let url = format!("http://127.0.0.1:{}/api/v1/events", a.port);
    // No token, a bad body: refused, nothing stored.
    let r = client
        .post(&url)
        .json(&json!({"events": []}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"events": [{"severity": "loud", "code": "x", "message": "m"}]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    // Posted before the store is open, events go to the spool (nothing is lost; the spool's
    // own test covers that): this test pages through stored events, so it waits for the store.
    until(Duration::from_secs(20), "Database OK", || async {
        let s = status(&client, a.port).await?;
        (row(&s, "database")?.value == "OK").then_some(())
    })
    .await;
    let answer = post(&client, a.port, "page", 250).await.expect("posted");
    assert_eq!(answer["outcome"], "stored");
    assert_eq!(answer["ids"][0], "agent-a:1");
    let doc: Value = client
        .get(format!("http://127.0.0.1:{}/api/v1/openapi.json", a.port))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    crate::api::validate(&doc, "Posted", &answer);
    let page: Value = client
        .get(format!("{url}?code=app&limit=100&offset=200&order=asc"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    crate::api::validate(&doc, "EventPage", &page);
    assert_eq!(page["total"], 250);
    assert_eq!(page["events"].as_array().map(Vec::len), Some(50));
    assert_eq!(page["events"][0]["message"], "page #200");
    let r = client
        .get(format!("{url}?severity=loud"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 400);
    // `duet events` shows the same.
    let out = Command::new(duet_bin())
        .args([
            "events",
            "--api",
            &format!("127.0.0.1:{}", a.port),
            "--code",
            "app",
            "-n",
            "3",
        ])
        .output()
        .expect("duet events");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("page #249") && text.contains("-- 3 of 250 events"),
        "{text}"
    );
}

/// `cargo xtask bench`: events per second end to end over loopback — posted to agent-a's API,
/// committed there, forwarded, committed by agent-b — on SQLite and on PostgreSQL. Writes
/// `target/dbsync-bench.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: run by `cargo xtask bench`"]
async fn forwarding_bench() {
    const EVENTS: usize = 200_000;
    const POSTERS: usize = 4;
    const BATCH: usize = 5_000;
    let mut figures = serde_json::Map::new();
    for backend in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let pg = (backend == "postgres").then(crate::pg::Postgres::start);
        let (url_a, url_b) = match &pg {
            Some(pg) => {
                pg.createdb("a");
                pg.createdb("b");
                (
                    format!("url = \"{}\"", pg.url_of("a")),
                    format!("url = \"{}\"", pg.url_of("b")),
                )
            }
            None => (String::new(), String::new()),
        };
        let (mut a, mut b) = pair_with(
            dir.path(),
            "forward_batch = 2000\nforward_in_flight = 8\nstack_too_large = 10000000",
            &url_a,
            &url_b,
        );
        let client = client();
        a.start(&[]);
        b.start(&[]);
        until(Duration::from_secs(20), "DB Sync Active", || async {
            let s = status(&client, a.port).await?;
            row(&s, "db-sync").filter(|r| r.value == "Active").cloned()
        })
        .await;
        let count = |port: u16| {
            let client = client.clone();
            async move {
                let page: Value = client
                    .get(format!(
                        "http://127.0.0.1:{port}/api/v1/events?origin=agent-a&code=app&limit=0"
                    ))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                page["total"].as_u64()
            }
        };
        let started = Instant::now();
        let mut posters = Vec::new();
        for p in 0..POSTERS {
            let client = client.clone();
            let port = a.port;
            posters.push(tokio::spawn(async move {
                for i in 0..EVENTS / POSTERS / BATCH {
                    post(&client, port, &format!("bench.{p}.{i}"), BATCH)
                        .await
                        .expect("posted");
                }
            }));
        }
        for p in posters {
            p.await.expect("poster");
        }
        let posted = started.elapsed();
        until(Duration::from_secs(300), "all events forwarded", || async {
            (count(b.port).await? == EVENTS as u64).then_some(())
        })
        .await;
        let forwarded = started.elapsed();
        let rate = EVENTS as f64 / forwarded.as_secs_f64();
        println!(
            "{backend}: {EVENTS} events posted in {posted:?}, on the buddy after {forwarded:?}: {rate:.0} events/s"
        );
        figures.insert(
            backend.into(),
            json!({
                "events": EVENTS,
                "posted_s": posted.as_secs_f64(),
                "forwarded_s": forwarded.as_secs_f64(),
                "events_per_s": rate,
            }),
        );
        a.kill();
        b.kill();
    }
    let out = crate::support::workspace().join("target/dbsync-bench.json");
    std::fs::write(&out, Value::Object(figures).to_string()).expect("write the figures");
}
