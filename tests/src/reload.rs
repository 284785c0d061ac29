//! Configuration reload against a real pair on loopback: SIGHUP and `duet reload` take new
//! heartbeat timings live without a state change, refuse a broken file keeping the running
//! configuration (both outcomes in `GET /api/v1/reload`), name what waits for a restart; a
//! shared setting reloaded on one agent only shows Configuration Invalid on both and the pair
//! does not move; the pair key rotated in three reload steps while the pair keeps talking.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use duet_core::FailoverState;
use duet_core::api::Reloads;

use duet_host::frame::{Hello, PairKey};

use crate::support::{AgentSpec, Agents, duet_bin, eventually, free_port, spawn, status_json};
use crate::support::{row, state};

/// The token with the right `reload` both test agents accept.
const TOKEN: &str = "reload-token";

/// `GET <path>` on 127.0.0.1:`port` with the reload token (HTTP/1.0: the whole body, no
/// chunks); `None` while the agent does not answer 200.
fn get(port: u16, path: &str) -> Option<String> {
    let (code, body) = get_as(port, path, Some(TOKEN))?;
    (code == "200").then_some(body)
}

/// `GET <path>`, with `token` if given: the status code and the body.
fn get_as(port: u16, path: &str, token: Option<&str>) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.to_string(), body.to_string()))
}

fn reloads(port: u16) -> Option<Reloads> {
    serde_json::from_str(&get(port, "/api/v1/reload")?).ok()
}

/// The sum of `family`'s samples in `/metrics` (with `label` in their labels, if given).
fn metric(port: u16, family: &str, label: &str) -> u64 {
    let text = get(port, "/metrics").expect("/metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A pair: agent-a (priority 200) Online, agent-b Offline, both with the reload token.
struct Pair {
    // Dropped first: the agents stop before their folder goes.
    agents: Agents,
    _dir: tempfile::TempDir,
    ports: [u16; 2],
    files: [PathBuf; 2],
}

impl Pair {
    fn start(specs: impl Fn(AgentSpec) -> AgentSpec) -> Pair {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pa, pb) = (free_port(), free_port());
        let token = format!(
            "[[api.token]]\nname = \"ops\"\nsha256 = \"{}\"\nrights = [\"reload\"]\n",
            crate::api::sha256_hex(TOKEN)
        );
        let spec = |name, buddy, priority, port, buddy_port| {
            specs(AgentSpec {
                extra: token.clone(),
                ..AgentSpec::new(name, buddy, priority, port, buddy_port)
            })
        };
        let files = [
            spec("agent-a", "agent-b", 200, pa, pb).write(dir.path()),
            spec("agent-b", "agent-a", 100, pb, pa).write(dir.path()),
        ];
        let agents = Agents(vec![spawn(&files[0]), spawn(&files[1])]);
        let pair = Pair {
            _dir: dir,
            agents,
            ports: [pa, pb],
            files,
        };
        eventually(
            Duration::from_secs(30),
            "agent-a Online, agent-b Offline, configurations equal",
            || {
                let (a, b) = (status_json(pa)?, status_json(pb)?);
                let settled = state(&a) == Some(FailoverState::Online)
                    && state(&b) == Some(FailoverState::Offline)
                    && [&a, &b]
                        .iter()
                        .all(|s| row(s, "configuration").is_some_and(|r| r.reason.is_none()));
                settled.then_some(())
            },
        );
        pair
    }

    /// Edits agent `i`'s file: `from` replaced by `to` (which must occur).
    fn edit(&self, i: usize, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.files[i]).expect("config");
        assert!(text.contains(from), "{from:?} not in {text}");
        std::fs::write(&self.files[i], text.replacen(from, to, 1)).expect("write config");
    }

    fn sighup(&self, i: usize) {
        let pid = self.agents.0[i].id();
        // SAFETY: kill(2) on the child this test started and still holds.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    }

    /// `duet reload` of agent `i`: exit code and what it printed.
    fn reload(&self, i: usize) -> (i32, String) {
        let out = Command::new(duet_bin())
            .args(["reload", "--api", &format!("127.0.0.1:{}", self.ports[i])])
            .env("DUET_TOKEN", TOKEN)
            .output()
            .expect("duet reload");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Waits for agent `i`'s reload endpoint to show a new last reload matching `pred`.
    fn reloaded(&self, i: usize, what: &str, pred: impl Fn(&Reloads) -> bool) -> Reloads {
        eventually(Duration::from_secs(10), what, || {
            reloads(self.ports[i]).filter(|r| pred(r))
        })
    }

    /// Watches both agents until the returned guard is dropped: any state change, any path
    /// declared dead, or any frame rejected for its key is recorded, and asserted on drop.
    fn watch(&self) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let ports = self.ports;
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (port, expected) in ports
                        .into_iter()
                        .zip([FailoverState::Online, FailoverState::Offline])
                    {
                        let Some(status) = status_json(port) else {
                            continue;
                        };
                        if state(&status) != Some(expected) {
                            seen.push(format!("{port}: state {:?}", state(&status)));
                        }
                        if let Some(hb) = row(&status, "heartbeat:hb0")
                            && hb.failures.unwrap_or(0) > 3
                        {
                            seen.push(format!("{port}: heartbeat declared dead: {:?}", hb.reason));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                seen
            }
        });
        Watch {
            stop,
            thread: Some(thread),
            ports,
            transitions: ports.map(|p| metric(p, "duet_transitions_total", "")),
        }
    }
}

/// What [`Pair::watch`] saw.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
    ports: [u16; 2],
    transitions: [u64; 2],
}

impl Watch {
    /// Stops watching and asserts nothing moved.
    fn nothing_moved(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.thread.take().expect("once").join().expect("watcher");
        assert!(seen.is_empty(), "the pair moved: {seen:?}");
        for (port, before) in self.ports.into_iter().zip(self.transitions) {
            assert_eq!(
                metric(port, "duet_transitions_total", ""),
                before,
                "transitions on {port}"
            );
            assert_eq!(
                metric(
                    port,
                    "duet_peer_frames_rejected_total",
                    "reason=\"bad_mac\""
                ),
                0,
                "frames rejected for their key on {port}"
            );
            assert_eq!(metric(port, "duet_peer_auth_failures", ""), 0);
        }
    }
}

fn configuration(port: u16) -> Option<duet_core::Row> {
    row(&status_json(port)?, "configuration")
}

#[test]
fn sighup_takes_new_timings_live_refuses_a_broken_file_and_a_one_sided_shared_change_moves_nothing()
{
    let pair = Pair::start(|s| s);
    let [pa, pb] = pair.ports;
    let watch = pair.watch();

    // agent-a alone gets a new heartbeat interval: taken live, and since the paths' timings
    // are shared settings, both agents show Configuration Invalid naming it.
    pair.edit(0, "interval = \"200ms\"", "interval = \"300ms\"");
    pair.sighup(0);
    let a = pair.reloaded(0, "agent-a's reload", |r| r.last.is_some());
    let last = a.last.expect("a reload");
    assert_eq!(last.by, "SIGHUP");
    assert_eq!(last.error, None);
    assert_eq!(last.applied, ["heartbeat[0].interval"]);
    assert!(last.restart.is_empty(), "{last:?}");
    for (port, here, there, buddy) in [
        (pa, "300ms", "200ms", "agent-b"),
        (pb, "200ms", "300ms", "agent-a"),
    ] {
        // Until the buddy's settings arrive the row says only that they differ; then it
        // names the key with both values.
        let named = format!(
            "heartbeat (kind = \"agent\") timing differs: every {here}, 150ms timeout, 3 failures allowed here, every {there}, 150ms timeout, 3 failures allowed on {buddy}"
        );
        eventually(Duration::from_secs(10), &named, || {
            configuration(port).filter(|r| r.reason.as_deref() == Some(named.as_str()))
        });
    }
    // The pair holds on through more than a detection time (4 × 300 ms) of disagreement.
    let since = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        assert!(configuration(pa).is_some_and(|r| r.reason.is_some()));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A broken file is refused whole, naming the key; the running settings stay (still
    // 300 ms: agent-b catching up makes the pair agree again).
    pair.edit(0, "interval = \"300ms\"", "interval = \"fast\"");
    pair.sighup(0);
    let a = pair.reloaded(0, "the refusal", |r| {
        r.last.as_ref().is_some_and(|l| l.error.is_some())
    });
    let error = a
        .last
        .as_ref()
        .and_then(|l| l.error.clone())
        .expect("an error");
    assert!(error.contains("heartbeat[0].interval"), "{error}");
    assert_eq!(metric(pa, "duet_config_reload_refused", ""), 1);
    assert_eq!(
        a.last_applied.expect("the earlier reload").applied,
        ["heartbeat[0].interval"]
    );
    pair.edit(1, "interval = \"200ms\"", "interval = \"300ms\"");
    let (code, out) = pair.reload(1);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "reloaded\napplied: heartbeat[0].interval\nwaiting for a restart: none\n"
        )
    );
    for port in [pa, pb] {
        eventually(
            Duration::from_secs(10),
            "Configuration agreeing again",
            || configuration(port).filter(|r| r.reason.is_none()),
        );
    }

    // `duet reload` of a file that does not parse: refused, exit code 1, the running
    // configuration kept; a setting read only at start is named as waiting for a restart.
    pair.edit(0, "[[heartbeat]]", "[[heartbeat");
    let (code, out) = pair.reload(0);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("refused: the running configuration is kept\n"),
        "{out}"
    );
    pair.edit(0, "[[heartbeat", "[core]\ntick = \"200ms\"\n[[heartbeat]]");
    pair.edit(0, "interval = \"fast\"", "interval = \"300ms\"");
    let (code, out) = pair.reload(0);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "reloaded\napplied: none\nwaiting for a restart: core.tick\n"
        )
    );
    let a = reloads(pa).expect("reloads");
    assert_eq!(a.last, a.last_applied);
    assert_eq!(metric(pa, "duet_config_reload_refused", ""), 0);
    assert_eq!(metric(pa, "duet_config_restart_pending", ""), 1);
    // A refusal may quote the file: the reloads are shown only with the right.
    let (code, _) = get_as(pa, "/api/v1/reload", None).expect("an answer");
    assert_eq!(code, "401");
    assert!(configuration(pa).is_some_and(|r| r.reason.is_none()));
    watch.nothing_moved();
}

/// The pair keys of the rotation: the one the pair starts with, and the next.
const OLD_KEY: &str = crate::support::PAIR_KEY;
const NEW_KEY: &str = "the-next-pair-key-0123456789abcdef";

/// Writes agent `i`'s key lines: `keys` in place of the `pair_key` line and any
/// `accepted_pair_key` line of the step before.
fn set_keys(pair: &Pair, i: usize, keys: &str) {
    let text = std::fs::read_to_string(&pair.files[i]).expect("config");
    let next: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("accepted_pair_key"))
        .map(|l| {
            if l.trim_start().starts_with("pair_key = ") {
                format!("{keys}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(next.contains(keys), "no pair_key line in {text}");
    std::fs::write(&pair.files[i], next).expect("write config");
}

#[test]
fn the_pair_key_rotates_in_three_reloads_while_the_pair_keeps_talking() {
    let pair = Pair::start(|s| s);
    let watch = pair.watch();
    // 1. Both accept the new key, still sealing with the old; 2. both seal with the new and
    // still accept the old; 3. both drop the old. Each step on both agents before the next.
    let steps = [
        (
            format!("pair_key = \"{OLD_KEY}\"\naccepted_pair_key = \"{NEW_KEY}\""),
            vec!["peer.accepted_pair_key"],
        ),
        (
            format!("pair_key = \"{NEW_KEY}\"\naccepted_pair_key = \"{OLD_KEY}\""),
            vec!["peer.pair_key", "peer.accepted_pair_key"],
        ),
        (
            format!("pair_key = \"{NEW_KEY}\""),
            vec!["peer.accepted_pair_key"],
        ),
    ];
    for (keys, applied) in &steps {
        for i in 0..2 {
            set_keys(&pair, i, keys);
            let (code, out) = pair.reload(i);
            assert_eq!(code, 0, "{out}");
            assert_eq!(
                out,
                format!(
                    "reloaded\napplied: {}\nwaiting for a restart: none\n",
                    applied.join(", ")
                )
            );
            // Both agents heard each other since the step was in force.
            let at = reloads(pair.ports[i])
                .and_then(|r| r.last)
                .expect("the reload")
                .at;
            for port in pair.ports {
                eventually(
                    Duration::from_secs(5),
                    "the pair talking after the step",
                    || {
                        let hb = row(&status_json(port)?, "heartbeat:hb0")?;
                        hb.last_success.filter(|t| *t > at + 200).map(drop)
                    },
                );
            }
        }
    }
    watch.nothing_moved();
    // agent-a now seals with the new key only, and refuses a hello sealed with the old one.
    let (old, new) = (
        PairKey::new(OLD_KEY.as_bytes()),
        PairKey::new(NEW_KEY.as_bytes()),
    );
    let peer = crate::support::peer_port(pair.ports[0]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", peer)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let hello = Hello::new("agent-b").expect("hello").seal(&old);
    stream
        .write_all(&(hello.len() as u32).to_be_bytes())
        .expect("send");
    stream.write_all(&hello).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("agent-a's hello");
    let mut theirs = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut theirs).expect("agent-a's hello");
    assert!(
        Hello::open(&new, &theirs).is_ok(),
        "sealed with the new key"
    );
    assert!(Hello::open(&old, &theirs).is_err());
    eventually(
        Duration::from_secs(5),
        "the old key's hello rejected",
        || {
            (metric(
                pair.ports[0],
                "duet_peer_frames_rejected_total",
                "reason=\"bad_mac\"",
            ) == 1)
                .then_some(())
        },
    );
}
