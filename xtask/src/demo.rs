//! `cargo xtask demo`: two agents on loopback (no virtual IP), each with its web UI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

struct Agent {
    name: &'static str,
    port: u16,
}

/// The demo's agents, on fixed ports so the URLs are always the same.
const AGENTS: [Agent; 2] = [
    Agent {
        name: "agent-a",
        port: 7101,
    },
    Agent {
        name: "agent-b",
        port: 7102,
    },
];

/// `--check` (run by `cargo xtask test`) uses ports and a folder of its own, so it never
/// collides with a demo someone has running.
const CHECK_AGENTS: [Agent; 2] = [
    Agent {
        name: "agent-a",
        port: 17101,
    },
    Agent {
        name: "agent-b",
        port: 17102,
    },
];

/// Stops the agents when the demo ends, however it ends.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    crate::setup()?;
    // The same package selection as `cargo xtask test`'s build: building `-p duet-cli` alone
    // would resolve features differently and compile wasmtime a second time.
    crate::run(crate::cargo(root).args(["build", "--locked", "--bins"]))?;
    let duet = root.join("target/debug/duet");
    let (agents, dir) = if check {
        (&CHECK_AGENTS, root.join("target/demo-check"))
    } else {
        (&AGENTS, root.join("target/demo"))
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    ports_free(agents)?;
    let (token, token_config) = demo_token(&duet)?;

    let mut running = Running(Vec::new());
    for (i, agent) in agents.iter().enumerate() {
        let buddy = &agents[1 - i];
        let priority = if i == 0 { 200 } else { 100 };
        let config = write_config(&dir, agent, buddy, priority, &token_config)?;
        let log = std::fs::File::create(dir.join(format!("{}.log", agent.name)))
            .context("failed to create the agent's log")?;
        let child = Command::new(&duet)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", duet.display()))?;
        running.0.push(child);
    }

    // Both APIs answer and exactly one agent is Online, within a bounded time.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Our own agents first: an answer on the port may come from someone else's.
        for (child, agent) in running.0.iter_mut().zip(agents) {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}); its log is {}",
                    agent.name,
                    dir.join(format!("{}.log", agent.name)).display()
                );
            }
        }
        let states: Vec<Option<String>> = agents.iter().map(|a| state_of(&duet, a.port)).collect();
        let online = states
            .iter()
            .filter(|s| s.as_deref() == Some("online"))
            .count();
        if states.iter().all(Option::is_some) && online == 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the demo pair did not settle in 60 s (states {states:?}); logs in {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for agent in agents {
        println!(
            "{}: web UI http://127.0.0.1:{}/  (API /api/v1/status)",
            agent.name, agent.port
        );
    }
    let first = agents[0].port;
    println!(
        "API token \"demo\" (rights switch, force_online, mode, events, reload): {token}\n\
         sign in with it on the web UI to try every button, or:\n  \
         DUET_TOKEN={token} {} switch --api 127.0.0.1:{first}",
        duet.display()
    );
    if check {
        println!("demo: both agents answer on their API, exactly one is Online");
        return Ok(());
    }
    println!(
        "demo pair running; logs and failover logs in {}. Ctrl-C stops it.",
        dir.display()
    );
    for child in &mut running.0 {
        child.wait()?;
    }
    Ok(())
}

/// Fails, naming the port, when another program holds one of the demo's ports: the demo
/// would otherwise report a pair that is someone else's.
fn ports_free(agents: &[Agent]) -> anyhow::Result<()> {
    for agent in agents {
        for (port, what) in [
            (agent.port, "API"),
            (agent.port + PEER_PORT_OFFSET, "peer port"),
        ] {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "port 127.0.0.1:{port} ({}'s {what}) is taken ({e}): stop what holds it \
                     (another demo?) and try again",
                    agent.name
                );
            }
        }
    }
    Ok(())
}

/// A fresh API token for the demo (`duet token new`), and its `[[api.token]]` lines.
fn demo_token(duet: &Path) -> anyhow::Result<(String, String)> {
    let out = Command::new(duet)
        .args(["token", "new", "demo", "--rights"])
        .arg("switch,force_online,mode,events,reload")
        .output()
        .context("failed to run duet token new")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let token = text
        .lines()
        .find_map(|l| l.split_once("): ").map(|(_, t)| t.trim().to_string()))
        .filter(|t| !t.is_empty())
        .with_context(|| format!("duet token new printed no token: {text}"))?;
    let config = text
        .find("[[api.token]]")
        .map(|at| text[at..].to_string())
        .with_context(|| format!("duet token new printed no [[api.token]]: {text}"))?;
    Ok((token, config))
}

fn write_config(
    dir: &Path,
    agent: &Agent,
    buddy: &Agent,
    priority: u32,
    token: &str,
) -> anyhow::Result<PathBuf> {
    let text = format!(
        "# Written by `cargo xtask demo`.\n\
         [agent]\nname = \"{}\"\npriority = {priority}\n\n\
         [buddy]\nname = \"{}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{}\"\n\n\
         [peer]\nlisten = \"127.0.0.1:{}\"\npair_key = \"{DEMO_PAIR_KEY}\"\n\n\
         [failover]\nstartup_wait = \"5s\"\n\n\
         [[heartbeat]]\nkind = \"agent\"\ntarget = \"127.0.0.1:{}\"\ninterval = \"500ms\"\n\n\
         [log]\nfailover_log = \"{}-failover.log\"\n\n\
         [web]\nbuddy = \"127.0.0.1:{}\"\n\n\
         {token}",
        agent.name,
        buddy.name,
        agent.port,
        agent.port + PEER_PORT_OFFSET,
        buddy.port + PEER_PORT_OFFSET,
        agent.name,
        buddy.port
    );
    let path = dir.join(format!("{}.toml", agent.name));
    std::fs::write(&path, text).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Each demo agent's peer port is its API port plus this.
const PEER_PORT_OFFSET: u16 = 100;
/// The demo pair's shared secret: fine for a demo on loopback, never for a real pair.
const DEMO_PAIR_KEY: &str = "duet-demo-pair-key-not-secret";

/// The agent's failover state from `duet status --json`, or none if it does not answer.
fn state_of(duet: &Path, port: u16) -> Option<String> {
    let out = Command::new(duet)
        .args(["status", "--json", "--api", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status
        .pointer("/decision/state/state")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_stops_the_demo_and_is_named() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = holder.local_addr().expect("its address").port();
        let agents = [Agent {
            name: "agent-a",
            port,
        }];
        let error = ports_free(&agents)
            .expect_err("the port is taken")
            .to_string();
        assert!(
            error.contains(&format!("127.0.0.1:{port}")) && error.contains("agent-a's API"),
            "{error}"
        );
    }
}
