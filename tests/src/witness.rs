//! The witness lease against a real three-node nats-server cluster with JetStream
//! (`crate::cluster`), and through the witness client the agents run.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use duet_witness::client::{Availability, Client};
use duet_witness::config::WitnessConfig;
use tokio_util::sync::CancellationToken;

use crate::cluster::{BUCKET, Cluster, PAIRS};

mod bench;

fn config(cluster: &Cluster, pair: usize, key: &str) -> WitnessConfig {
    let dir = cluster.dir.path();
    let password = dir.join(format!("{}.password", PAIRS[pair].user));
    std::fs::write(&password, PAIRS[pair].password).expect("password file");
    WitnessConfig {
        connection: duet_nats::Connection {
            servers: cluster.servers(),
            user: Some(PAIRS[pair].user.into()),
            password_file: Some(password),
            tls: None,
        },
        bucket: BUCKET.into(),
        key: key.into(),
        lease: duet_witness::config::LEASE,
        renew: duet_witness::config::RENEW,
        margin: duet_witness::config::MARGIN,
        timeout: duet_witness::config::TIMEOUT,
    }
}

/// Polls `f` every 50 ms until it answers, or fails naming `what` after `within`.
async fn until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(client: &Arc<Client>, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(client.clone().run(stop.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_racing_for_one_lease_have_exactly_one_winner_in_each_of_1000_rounds() {
    let cluster = Cluster::start();
    cluster.bucket().await;
    let user = &PAIRS[0];
    // Each agent on its own node: the writes race through different servers to the leader.
    let connect = |i: usize| {
        let servers = [cluster.servers()[i].clone()];
        async move {
            let client = async_nats::ConnectOptions::new()
                .user_and_password(user.user.into(), user.password.into())
                .request_timeout(Some(Duration::from_secs(5)))
                .connect(servers.as_slice())
                .await
                .expect("connect");
            async_nats::jetstream::new(client)
                .get_key_value(BUCKET)
                .await
                .expect("the bucket")
        }
    };
    let (a, b) = (connect(0).await, connect(2).await);
    let mut revision = a
        .create(user.key, "{\"holder\":null}".into())
        .await
        .expect("create the key");
    let (mut wins_a, mut wins_b, mut both_refused) = (0, 0, 0);
    let mut round = 0;
    while round < 1000 {
        let (ra, rb) = tokio::join!(
            a.update(user.key, "{\"holder\":\"a\"}".into(), revision),
            b.update(user.key, "{\"holder\":\"b\"}".into(), revision),
        );
        let lost = |r: &Result<u64, kv::UpdateError>| matches!(r, Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision || duet_witness::client::refused(e));
        revision = match (&ra, &rb) {
            (Ok(r), _) if lost(&rb) => {
                wins_a += 1;
                *r
            }
            (_, Ok(r)) if lost(&ra) => {
                wins_b += 1;
                *r
            }
            // Both refused ("wrong last sequence" while the previous write is still in flight
            // at the leader): nobody holds it, which is safe; the key must be unchanged, and
            // the round is raced again (the client reads and tries again the same way).
            _ if lost(&ra) && lost(&rb) => {
                let entry = a.entry(user.key).await.expect("read").expect("the key");
                assert_eq!(
                    entry.revision, revision,
                    "round {round}: both refused, yet written"
                );
                both_refused += 1;
                assert!(
                    both_refused <= 100,
                    "too many rounds where both were refused"
                );
                continue;
            }
            _ => panic!("round {round}: not exactly one winner: {ra:?} {rb:?}"),
        };
        round += 1;
    }
    assert_eq!(wins_a + wins_b, 1000);
    println!(
        "1000 rounds: a won {wins_a}, b won {wins_b}; both refused and raced again {both_refused} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_survives_its_stream_leader_killed_and_the_whole_cluster_down_is_not_available() {
    let mut cluster = Cluster::start();
    cluster.bucket().await;
    let stop = CancellationToken::new();
    let a = Client::new(config(&cluster, 0, PAIRS[0].key), "agent-a".into());
    let b = Client::new(config(&cluster, 0, PAIRS[0].key), "agent-b".into());
    let tasks = [start(&a, &stop), start(&b, &stop)];
    a.want(true);
    until(Duration::from_secs(20), "agent-a holds the lease", || {
        a.view().held.then_some(())
    })
    .await;
    until(
        Duration::from_secs(10),
        "agent-b sees agent-a hold it",
        || (b.view().holder.as_deref() == Some("agent-a")).then_some(()),
    )
    .await;
    // Kill the node that leads the bucket's stream: after the election agent-a renews again,
    // and agent-b never holds the lease nor sees another holder.
    let leader = cluster.stream_leader().await;
    let before = a.row().revision.expect("a revision");
    cluster.kill(cluster.index(&leader));
    let renewed = until(
        Duration::from_secs(30),
        "a renewal after the election",
        || {
            assert!(!b.view().held, "agent-b took the lease");
            let holder = b.view().holder;
            assert!(
                holder.as_deref().is_none_or(|h| h == "agent-a"),
                "holder {holder:?}"
            );
            let row = a.row();
            (a.view().held && row.revision.is_some_and(|r| r > before + 1)).then_some(row)
        },
    )
    .await;
    assert_eq!(renewed.availability, Availability::Available);
    // The whole witness down: the row says Not Available, the lease runs out on agent-a's
    // own clock, and agent-b sees nothing free to take.
    for i in 0..3 {
        cluster.kill(i);
    }
    let row = until(
        Duration::from_secs(15),
        "the row says Not Available",
        || {
            let row = a.row();
            matches!(row.availability, Availability::NotAvailable(_)).then_some(row)
        },
    )
    .await;
    assert!(row.server_version.is_some());
    until(
        Duration::from_secs(10),
        "agent-a's lease past its deadline",
        || (!a.view().held).then_some(()),
    )
    .await;
    let seen = b.view();
    assert!(!seen.free && !seen.held && !seen.reachable, "{seen:?}");
    stop.cancel();
    for t in tasks {
        t.await.expect("client task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pairs_user_cannot_read_or_write_another_pairs_lease() {
    let cluster = Cluster::start();
    let admin = cluster.bucket().await;
    let (a, b) = (&PAIRS[0], &PAIRS[1]);
    let revision = admin
        .create(a.key, "{\"holder\":\"agent-a\"}".into())
        .await
        .expect("pair A's key");
    let js = async_nats::jetstream::new(cluster.connect(b.user, b.password).await);
    let store = js
        .get_key_value(BUCKET)
        .await
        .expect("pair B sees the bucket");
    // Its own key: created, updated, read.
    let own = store
        .create(b.key, "{\"holder\":\"agent-c\"}".into())
        .await
        .expect("pair B writes its own key");
    store
        .update(b.key, "{\"holder\":null}".into(), own)
        .await
        .expect("pair B updates its own key");
    assert!(store.entry(b.key).await.expect("read").is_some());
    // Pair A's key: neither written (at the right revision, or blindly) nor read.
    assert!(
        store
            .update(a.key, "{\"holder\":\"agent-c\"}".into(), revision)
            .await
            .is_err()
    );
    assert!(
        store
            .put(a.key, "{\"holder\":\"agent-c\"}".into())
            .await
            .is_err()
    );
    assert!(store.entry(a.key).await.is_err());
    let entry = admin
        .entry(a.key)
        .await
        .expect("admin read")
        .expect("pair A's key");
    assert_eq!(entry.revision, revision, "pair A's lease was touched");
    // The witness client with pair B's user on pair A's key says why in its row.
    let stop = CancellationToken::new();
    let c = Client::new(config(&cluster, 1, a.key), "agent-c".into());
    let task = start(&c, &stop);
    c.want(true);
    let row = until(Duration::from_secs(15), "the row says Invalid", || {
        let row = c.row();
        matches!(row.availability, Availability::Invalid(_)).then_some(row)
    })
    .await;
    let Availability::Invalid(why) = row.availability else {
        unreachable!()
    };
    assert!(why.contains("Permissions Violation"), "{why}");
    assert!(!c.view().held && !c.view().free);
    stop.cancel();
    task.await.expect("client task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_older_than_the_cas_fixes_makes_the_witness_invalid() {
    // Debian's nats-server 2.9.10 (nats-server #4320: two concurrent writes could both win).
    let port = crate::support::free_port();
    let dir = tempfile::tempdir().expect("dir");
    let mut server = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start nats-server (Debian package nats-server; cargo xtask test installs it)");
    let stop = CancellationToken::new();
    let client = Client::new(
        WitnessConfig {
            connection: duet_nats::Connection {
                servers: vec![format!("nats://127.0.0.1:{port}")],
                user: None,
                password_file: None,
                tls: None,
            },
            bucket: BUCKET.into(),
            key: "pair-a".into(),
            lease: duet_witness::config::LEASE,
            renew: duet_witness::config::RENEW,
            margin: duet_witness::config::MARGIN,
            timeout: duet_witness::config::TIMEOUT,
        },
        "agent-a".into(),
    );
    let task = start(&client, &stop);
    client.want(true);
    let row = until(Duration::from_secs(15), "the row says Invalid", || {
        let row = client.row();
        matches!(row.availability, Availability::Invalid(_)).then_some(row)
    })
    .await;
    assert!(
        format!("{:?}", row.availability).contains("2.9.10 is too old"),
        "{row:?}"
    );
    assert!(!client.view().held);
    stop.cancel();
    task.await.expect("client task");
    let _ = server.kill();
    let _ = server.wait();
}

/// Cuts (or heals) every path between the agents of `t` — the LAN between them (a blackhole
/// route to each other's address) and the sync cable — while both keep their gateway and the
/// witness.
fn cut_between(t: &crate::netns::Topology, cut: bool) {
    let verb = if cut { "add" } else { "del" };
    for (i, buddy) in [(0, "10.77.0.2/32"), (1, "10.77.0.1/32")] {
        crate::support::ip(&["-n", &t.agent_ns(i), "route", verb, "blackhole", buddy]);
        t.link(i, "sync", !cut);
    }
}

/// The witness timings of the namespaces test: lease 3 s, renewal 500 ms.
const TEST_TIMINGS: &str =
    "lease = \"3s\"\nrenew = \"500ms\"\nmargin = \"500ms\"\ntimeout = \"400ms\"\n";

/// A pair in namespaces with the witness cluster on the gateway's host (10.77.0.254);
/// `timings`: the `[witness]` lines beyond the key (empty: the defaults).
fn pair_with_witness(t: &mut crate::netns::Topology, timings: &str) -> Cluster {
    let cluster = Cluster::start_at("10.77.0.254", Some(t.ns("gw")));
    let password = t.dir.path().join("witness.password");
    std::fs::write(&password, crate::cluster::ADMIN.1).expect("password file");
    let servers = cluster
        .servers()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let section = format!(
        r#"
[nats_connection]
servers = [{servers}]
user = "{}"
password_file = "{}"
[witness]
key = "pair-1"
{timings}
{}"#,
        crate::cluster::ADMIN.0,
        password.display(),
        crate::api::tokens(),
    );
    t.extra = [section.clone(), section];
    cluster
}

/// The Witness row of agent i's own column.
fn witness_row(t: &crate::netns::Topology, i: usize) -> Option<duet_core::Row> {
    let status = t.status(i)?;
    status
        .pair?
        .local
        .rows
        .into_iter()
        .find(|r| r.key == "witness")
}

/// The value of agent i's `/metrics` sample `name` (its only series), if served.
fn metric(t: &crate::netns::Topology, i: usize, name: &str) -> Option<f64> {
    let text = crate::vip::in_ns(&t.agent_ns(i), || {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(crate::netns::API).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: duet\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })?;
    let prefix = format!("{name}{{");
    text.lines()
        .find(|l| l.starts_with(&prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// `duet status` of agent i, as text.
fn status_text(t: &crate::netns::Topology, i: usize) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &t.agent_ns(i)])
        .arg(crate::support::duet_bin())
        .args(["status", "--api", crate::netns::API])
        .output()
        .expect("duet status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `duet force-online` (with `--without-witness`) on agent i, as alice.
fn force_online(t: &crate::netns::Topology, i: usize, without_witness: bool) {
    let mut command = std::process::Command::new("ip");
    command
        .args(["netns", "exec", &t.agent_ns(i)])
        .arg(crate::support::duet_bin())
        .args(["force-online", "--api", crate::netns::API, "--token"])
        .arg(crate::api::ALICE);
    if without_witness {
        command.arg("--without-witness");
    }
    let out = command.output().expect("duet force-online");
    assert!(out.status.success(), "duet force-online: {out:?}");
}

#[test]
fn with_a_witness_a_cut_between_the_agents_leaves_exactly_one_online_and_without_it_two() {
    use crate::netns::{FAST, ONLINE, Topology, with};
    if !crate::support::is_root() {
        eprintln!("skipped: needs root for network namespaces (CI runs as root)");
        return;
    }
    let mut t = Topology::new();
    let mut cluster = pair_with_witness(&mut t, TEST_TIMINGS);
    t.configure(FAST);
    let (p, q) = t.start_pair();
    let holder = crate::support::eventually(Duration::from_secs(20), "the lease held", || {
        witness_row(&t, q).filter(|r| r.value.starts_with("Available; held by agent-"))
    });
    assert!(holder.value.contains(crate::netns::AGENTS[p]), "{holder:?}");
    for round in 0..3 {
        cut_between(&t, true);
        // Longer than detection + a whole lease: the buddy would have taken a lapsed lease.
        t.steady(
            Duration::from_secs(6),
            &format!("round {round}: cut with a witness"),
            with(p),
        );
        let why = t
            .status(q)
            .and_then(|s| s.decision)
            .expect("the Offline agent's decision");
        assert_eq!(why.reason.code, duet_core::ReasonCode::Witness, "{why:?}");
        cut_between(&t, false);
        // Healed: the agents see each other again; no switch.
        crate::support::eventually(Duration::from_secs(10), "healed", || {
            t.status(q)
                .and_then(|s| s.decision)
                .filter(|d| d.reason.code != duet_core::ReasonCode::Witness)
        });
        t.steady(Duration::from_secs(1), "healed: no switch", with(p));
    }

    // The whole witness down while the agents see each other: no switch for longer than a
    // lease, and the row says Not Available.
    for i in 0..3 {
        cluster.kill(i);
    }
    t.steady(Duration::from_secs(5), "witness down: no switch", with(p));
    let row = witness_row(&t, p).expect("the Witness row");
    assert!(row.value.starts_with("Not Available"), "{row:?}");

    // The Online agent killed while the witness is down: no takeover; an operator's force
    // online waits for the lease too; only force online *without the witness* brings the
    // backup up, logged and raised with who gave it.
    t.signal(p, "-KILL");
    let alone = |s: [Option<duet_core::FailoverState>; 2]| s[p].is_none() && s[q] != ONLINE;
    let steady_alone = |during: Duration, what: &str| {
        let start = std::time::Instant::now();
        while start.elapsed() < during {
            assert!(alone(t.states()), "{what}: {:?}\n{}", t.states(), t.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    steady_alone(
        Duration::from_secs(5),
        "witness down, Online agent killed: no takeover",
    );
    force_online(&t, q, false);
    steady_alone(
        Duration::from_secs(3),
        "force online with the witness down waits",
    );
    let waiting = t.status(q).and_then(|s| s.decision).expect("a decision");
    assert!(
        waiting.reason.text.contains("witness"),
        "force online waits for the witness lease: {waiting:?}"
    );
    force_online(&t, q, true);
    t.until(
        Duration::from_secs(10),
        "force online without the witness",
        |s| s[q] == ONLINE,
    );
    let raised = t.events(q, "witness_overridden").unwrap_or_default();
    assert!(
        raised.contains("without the witness by alice"),
        "the override raised with who: {raised}"
    );
    assert_eq!(metric(&t, q, "duet_witness_override"), Some(1.0));
    let text = status_text(&t, q);
    assert!(
        text.contains("witness lease: held by ")
            && text.contains(
                "(the witness cannot be reached); forced online without the witness by alice"
            ),
        "{text}"
    );
    assert_eq!(metric(&t, q, "duet_witness_lease_held"), Some(0.0));
    assert_eq!(metric(&t, q, "duet_witness_available"), Some(0.0));
    let log = std::fs::read_to_string(
        t.dir
            .path()
            .join(format!("{}-failover.log", crate::netns::AGENTS[q])),
    )
    .expect("failover log");
    assert!(
        log.contains("forced online without the witness by alice"),
        "{log}"
    );

    // The witness back: the override ends once the backup holds the lease (the killed agent's
    // lease lapsed), and the pair is on the witness's rules again.
    for i in 0..3 {
        cluster.start_node(i);
    }
    crate::support::eventually(
        Duration::from_secs(30),
        "the backup holds the lease",
        || {
            witness_row(&t, q).filter(|r| {
                r.value
                    .starts_with(&format!("Available; held by {}", crate::netns::AGENTS[q]))
                    && r.value.contains("renewed")
            })
        },
    );
    crate::support::eventually(Duration::from_secs(5), "the override ended", || {
        t.events(q, "witness_override_ended")
            .filter(|e| e.contains("holds the witness lease"))
    });
    assert_eq!(metric(&t, q, "duet_witness_override"), Some(0.0));
    let text = status_text(&t, q);
    assert!(
        text.contains(&format!(
            "witness lease: held by {}\n",
            crate::netns::AGENTS[q]
        )),
        "{text}"
    );
    assert_eq!(metric(&t, q, "duet_witness_lease_held"), Some(1.0));
    assert!(metric(&t, q, "duet_witness_renewals_total").is_some_and(|n| n >= 1.0));
    assert!(metric(&t, q, "duet_witness_revision").is_some_and(|r| r >= 1.0));
    assert!(
        metric(&t, q, "duet_witness_last_renewal_age_seconds").is_some_and(|a| a < 3.0),
        "renewed within the lease"
    );
    t.start(p);
    t.until(
        Duration::from_secs(20),
        "the killed agent back, Offline",
        |s| s == with(q),
    );

    // kill -9 of the Online agent: its buddy is Online within detection + a lease (+ the
    // claim and a loaded machine's slack).
    t.signal(q, "-KILL");
    let took = t.until(
        Duration::from_secs(15),
        "kill -9 with a witness: the buddy Online",
        |s| s[p] == ONLINE,
    );
    println!("kill -9 with a witness: the buddy Online after {took:?}");
    drop(t);

    // The same cut without the witness: two Online.
    let mut t = Topology::new();
    t.configure(FAST);
    t.start_pair();
    cut_between(&t, true);
    let start = std::time::Instant::now();
    while t.states() != [ONLINE; 2] {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "without a witness the cut did not make two Online: {:?}\n{}",
            t.states(),
            t.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
