//! Hook commands run on state changes (online, offline, fault, vip-acquired, vip-released),
//! one at a time in the order decided, each bounded by `hooks.timeout`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use duet_core::Hook;
use tokio::sync::mpsc;

use super::config::HooksConfig;

/// The hook's name, as passed to the command and in `DUET_HOOK`.
pub fn name(hook: Hook) -> &'static str {
    match hook {
        Hook::Online => "online",
        Hook::Offline => "offline",
        Hook::Fault => "fault",
        Hook::VipAcquired => "vip-acquired",
        Hook::VipReleased => "vip-released",
    }
}

/// A queued hook and its environment.
type Queued = (Hook, Vec<(String, String)>);

/// Queues hooks for one runner task; [`Hooks::run`] never waits.
pub struct Hooks {
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<Queued>>>,
    runner: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    timeout: Duration,
}

/// How a hook run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(Option<i32>),
    TimedOut,
    Failed(String),
}

/// In words, for the log: "exited with status 1", never `Exited(Some(1))`.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(Some(code)) => write!(f, "exited with status {code}"),
            Outcome::Exited(None) => f.write_str("killed by a signal"),
            Outcome::TimedOut => f.write_str("timed out and was killed"),
            Outcome::Failed(why) => f.write_str(why),
        }
    }
}

impl Hooks {
    /// Starts the runner (when any hook is configured).
    pub fn start(config: HooksConfig, agent: String) -> Self {
        let any = [
            &config.online,
            &config.offline,
            &config.fault,
            &config.vip_acquired,
            &config.vip_released,
        ]
        .iter()
        .any(|p| p.is_some());
        if !any {
            return Hooks {
                tx: std::sync::Mutex::new(None),
                runner: std::sync::Mutex::new(None),
                timeout: config.timeout,
            };
        }
        let timeout = config.timeout;
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let runner = tokio::spawn(async move {
            while let Some((hook, env)) = rx.recv().await {
                let path = match hook {
                    Hook::Online => config.online.clone(),
                    Hook::Offline => config.offline.clone(),
                    Hook::Fault => config.fault.clone(),
                    Hook::VipAcquired => config.vip_acquired.clone(),
                    Hook::VipReleased => config.vip_released.clone(),
                };
                let Some(path) = path else { continue };
                let timeout = config.timeout;
                let agent = agent.clone();
                let shown = path.display().to_string();
                let outcome = tokio::task::spawn_blocking(move || {
                    let mut env = env;
                    env.push(("DUET_AGENT".into(), agent));
                    run(&path, hook, &env, timeout)
                })
                .await
                .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
                match outcome {
                    Outcome::Exited(Some(0)) => {
                        tracing::info!(hook = name(hook), command = %shown, "hook done");
                    }
                    other => {
                        tracing::warn!(hook = name(hook), command = %shown, outcome = %other, "hook failed");
                    }
                }
            }
        });
        Hooks {
            tx: std::sync::Mutex::new(Some(tx)),
            runner: std::sync::Mutex::new(Some(runner)),
            timeout,
        }
    }

    /// Queues `hook` with these environment variables.
    pub fn run(&self, hook: Hook, env: Vec<(String, String)>) {
        if let Some(tx) = duet_base::lock(&self.tx).as_ref() {
            let _ = tx.send((hook, env));
        }
    }

    /// At shutdown: runs what is queued (each within its timeout, all within 4 timeouts),
    /// then stops the runner.
    pub async fn close(&self) {
        drop(duet_base::lock(&self.tx).take());
        let runner = duet_base::lock(&self.runner).take();
        if let Some(runner) = runner
            && tokio::time::timeout(self.timeout * 4, runner)
                .await
                .is_err()
        {
            tracing::warn!("hooks still queued at shutdown were not run");
        }
    }
}

/// Runs one hook command: `<path> <hook-name>`, environment `DUET_HOOK` and `env`; killed
/// after `timeout`.
pub fn run(
    path: &std::path::Path,
    hook: Hook,
    env: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let mut child = match Command::new(path)
        .arg(name(hook))
        .env("DUET_HOOK", name(hook))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start {}: {e}", path.display())),
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Outcome::Exited(status.code()),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn a_hook_gets_its_name_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let p = script(
            dir.path(),
            &format!("echo \"$1 $DUET_HOOK $DUET_STATE\" > {}", out.display()),
        );
        let env = vec![("DUET_STATE".to_string(), "Online".to_string())];
        assert_eq!(
            run(&p, Hook::VipAcquired, &env, Duration::from_secs(5)),
            Outcome::Exited(Some(0))
        );
        let text = std::fs::read_to_string(out).unwrap();
        assert_eq!(text.trim(), "vip-acquired vip-acquired Online");
    }

    #[test]
    fn a_failed_hook_is_logged_in_words_not_as_debug() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "exit 3");
        let outcome = run(&p, Hook::Offline, &[], Duration::from_secs(5));
        assert_eq!(outcome.to_string(), "exited with status 3");
        for o in [Outcome::Exited(None), Outcome::TimedOut] {
            let text = o.to_string();
            assert!(!text.contains("Some(") && !text.contains("None"), "{text}");
        }
    }

    #[test]
    fn a_hook_that_hangs_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "sleep 30");
        let started = Instant::now();
        assert_eq!(
            run(&p, Hook::Online, &[], Duration::from_millis(200)),
            Outcome::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
