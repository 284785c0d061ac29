//! The plugins run in a process of their own: `duet plugin-host`, started by the agent from
//! its own executable ([`supervise`]) and serving the folder there ([`serve`]).
//!
//! Threads of one process share more than CPU: one address space, whose memory-map lock every
//! `mmap`, `mprotect` and heap growth takes for writing. Plugins instantiate, grow and drop
//! linear memories and start threads all the time (a hostile one can do nothing else), and a
//! decision thread that grows its heap behind them waited 0.6 s with 130 plugins loading —
//! past the fence bound, at raised priority (a lock has no priorities). In a process of its
//! own the plugins' memory, threads, allocator and crashes are theirs alone; what crosses is
//! one line of JSON: the rows.
//!
//! The protocol, over the child's standard streams: the agent writes the `[plugins]` section
//! as one JSON line to its stdin and keeps stdin open; the child writes every row as one JSON
//! line to its stdout when a row's shown part changed (gathered for [`GATHER`]) and at least
//! every [`REFRESH`]; its log goes to the agent's stderr. The child ends when its stdin
//! closes (the agent stopped or died). The agent restarts a child that exited, sent a report
//! it cannot read, or fell silent for [`SILENT`], with backoff; meanwhile every row says so.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use duet_core::Check;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::PluginsConfig;
use crate::loader::{OnChange, PluginStatus, PluginTable, run};
use crate::sandbox::PluginEngine;

/// The (hidden) command line subcommand that runs the child.
pub const SUBCOMMAND: &str = "plugin-host";

/// Row changes within this are sent as one report.
const GATHER: Duration = Duration::from_millis(20);
/// The child reports at least this often (counters, and a sign of life).
const REFRESH: Duration = Duration::from_secs(1);
/// A child silent this long is stuck: killed and restarted.
const SILENT: Duration = Duration::from_secs(10);
/// The largest report read: each row is bounded (output limit, metrics), this bounds them all.
const MAX_REPORT: u64 = 64 << 20;
/// The largest configuration line the child reads.
const MAX_CONFIG: u64 = 16 << 20;
/// The first wait before restarting a child that ended; doubled up to [`MAX_BACKOFF`], and
/// back to the first after a child that ran [`STEADY`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const STEADY: Duration = Duration::from_secs(60);

/// Runs the plugins of `config` in a child process until `shutdown`, mirroring its rows into
/// `table` (calling `changed` when what the Status window shows changed).
pub async fn supervise(
    config: PluginsConfig,
    table: PluginTable,
    changed: OnChange,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.dir.is_none() {
        return Ok(());
    }
    let line = config_line(&config)?;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        // Dropping the child (at shutdown) kills it.
        let ended = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ended = serve_child(&config, &line, &table, &changed) => ended,
        };
        if started.elapsed() >= STEADY {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(reason = %ended, retry_in = ?backoff, "the plugins' process ended; its plugins show a fault until it is back");
        let why = format!(
            "the plugins' process ended ({ended}); restarting in {}",
            humantime::format_duration(backoff)
        );
        if table.fault_all(&why) {
            changed();
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The configuration as the child reads it: one JSON line.
fn config_line(config: &PluginsConfig) -> anyhow::Result<Vec<u8>> {
    let mut line =
        serde_json::to_vec(config).context("cannot encode the plugins' configuration")?;
    line.push(b'\n');
    Ok(line)
}

/// Starts one child and mirrors its reports until it ends; why it ended.
async fn serve_child(
    config: &PluginsConfig,
    line: &[u8],
    table: &PluginTable,
    changed: &OnChange,
) -> String {
    let mut child = match spawn(config.nice) {
        Ok(child) => child,
        Err(e) => return format!("cannot start it: {e}"),
    };
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return "its standard streams are missing".into();
    };
    if let Err(e) = stdin.write_all(line).await {
        return ended(&mut child, format!("cannot pass it its configuration: {e}")).await;
    }
    // `stdin` stays open while this runs: its end tells the child to stop.
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let mut limited = (&mut reader).take(MAX_REPORT + 1);
        let read = limited.read_until(b'\n', &mut buf);
        let why = match tokio::time::timeout(SILENT, read).await {
            Err(_) => format!(
                "sent no report for {}: stuck",
                humantime::format_duration(SILENT)
            ),
            Ok(Err(e)) => format!("reading its reports failed: {e}"),
            Ok(Ok(0)) => return ended(&mut child, "it closed its output".into()).await,
            Ok(Ok(_)) if buf.last() != Some(&b'\n') => {
                format!("sent a report over {MAX_REPORT} bytes or cut short")
            }
            Ok(Ok(_)) => match serde_json::from_slice::<Vec<PluginStatus>>(&buf) {
                Ok(rows) => {
                    if table.replace(rows) {
                        changed();
                    }
                    continue;
                }
                Err(e) => format!("sent a report that is not valid: {e}"),
            },
        };
        return ended(&mut child, why).await;
    }
    // `stdin` dropped here, after the child ended.
}

/// Kills the child (if it still runs) and says how it ended, after `why`.
async fn ended(child: &mut Child, why: String) -> String {
    let _ = child.start_kill();
    match child.wait().await {
        Ok(status) => format!("{why}; {status}"),
        Err(e) => format!("{why}; cannot wait for it: {e}"),
    }
}

/// `duet plugin-host` from this very executable (`/proc/self/exe`: the running file even if
/// an upgrade replaced it on disk), at the plugins' nice value, without the agent's
/// capabilities (plugins need neither NET_ADMIN nor NET_RAW).
fn spawn(nice: i32) -> std::io::Result<Child> {
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("duet")
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls (three syscalls), touching
    // no memory of the parent's.
    unsafe {
        command.pre_exec(move || {
            // A group of its own: Ctrl-C in the agent's terminal is the agent's to handle (a
            // handover first); the child ends when the agent does.
            libc::setpgid(0, 0);
            // Threads inherit the nice value of the thread that starts them: the whole child
            // runs below the agent (its plugin threads set theirs again).
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            // Ambient capabilities would survive the exec for a non-root agent; for root the
            // effective set stays (the agent's own tests run as root).
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    command.spawn()
}

/// The child: reads the configuration from stdin, runs the plugins folder, writes the rows to
/// stdout, and ends when stdin closes.
pub async fn serve() -> anyhow::Result<()> {
    // `ps` and `top` show "duet-plugins", not the "exe" of /proc/self/exe.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"duet-plugins".as_ptr(), 0, 0, 0) };
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    (&mut stdin)
        .take(MAX_CONFIG)
        .read_until(b'\n', &mut line)
        .await
        .context("cannot read the plugins' configuration from the agent")?;
    let config: PluginsConfig = serde_json::from_slice(&line).context(
        "the plugins' configuration from the agent is not valid (run by the agent, not by hand)",
    )?;
    let engine = Arc::new(PluginEngine::standalone(config.cache_dir.clone())?);
    let table = PluginTable::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let changed: OnChange = {
        let wake = wake.clone();
        Arc::new(move || wake.notify_one())
    };
    let shutdown = CancellationToken::new();
    let folder = tokio::spawn(run(
        engine,
        duet_base::Clock::system(),
        config,
        table.clone(),
        changed,
        shutdown.clone(),
    ));
    let agent_gone = async move {
        let mut rest = [0u8; 512];
        while matches!(stdin.read(&mut rest).await, Ok(n) if n > 0) {}
    };
    tokio::pin!(agent_gone);
    let mut out = tokio::io::stdout();
    let mut refresh = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            () = &mut agent_gone => break,
            () = wake.notified() => tokio::time::sleep(GATHER).await,
            _ = refresh.tick() => {}
        }
        let mut report = serde_json::to_vec(&table.snapshot()).context("cannot encode the rows")?;
        report.push(b'\n');
        if out.write_all(&report).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
    shutdown.cancel();
    // Plugins stop at their next await; one stuck in a blocking call is left to the exit.
    let _ = tokio::time::timeout(Duration::from_secs(1), folder).await;
    Ok(())
}

impl PluginTable {
    /// Puts the child's rows in place of these; whether what the Status window shows changed.
    pub(crate) fn replace(&self, rows: Vec<PluginStatus>) -> bool {
        let rows: std::collections::BTreeMap<String, PluginStatus> =
            rows.into_iter().map(|r| (r.name.clone(), r)).collect();
        // The tick loop takes this lock: compare in place, without copying.
        fn shown(r: &PluginStatus) -> (&String, &Check, &String, &Option<String>) {
            (&r.name, &r.check, &r.value, &r.fault)
        }
        let mut all = duet_base::lock(&self.0);
        let changed = !all.values().map(shown).eq(rows.values().map(shown));
        *all = rows;
        changed
    }

    /// Marks every row as faulted for `why` (the plugins' process is gone); whether any row
    /// changed.
    pub(crate) fn fault_all(&self, why: &str) -> bool {
        let mut all = duet_base::lock(&self.0);
        for row in all.values_mut() {
            row.check = Check::Failing(why.to_string());
            row.value = "Failing".into();
            row.fault = Some(why.to_string());
        }
        !all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::PluginSettings;
    use crate::loader::rejected_row;

    fn row(name: &str, check: Check) -> PluginStatus {
        PluginStatus {
            check,
            ..rejected_row(name, Path::new("x.wasm"), "", &PluginSettings::default())
        }
    }

    #[test]
    fn a_report_round_trips_and_only_shown_changes_wake_the_loop() {
        let table = PluginTable::default();
        let report = vec![row("a", Check::Ok), row("b", Check::Failing("down".into()))];
        let line = serde_json::to_vec(&report).expect("encode");
        let read: Vec<PluginStatus> = serde_json::from_slice(&line).expect("decode");
        assert_eq!(read, report);
        assert!(table.replace(read), "new rows are a change");
        let mut counted = report.clone();
        counted[0].checks += 1;
        assert!(!table.replace(counted.clone()), "a counter is not shown");
        assert_eq!(table.snapshot()[0].checks, 1, "but it is kept");
        assert!(
            table.replace(vec![counted[0].clone()]),
            "a row gone is a change"
        );
    }

    #[test]
    fn a_process_gone_faults_every_row_without_counting_a_failure() {
        let table = PluginTable::default();
        assert!(!table.fault_all("gone"), "no rows: nothing changed");
        table.replace(vec![row("a", Check::Ok)]);
        assert!(table.fault_all("the plugins' process ended (killed)"));
        let a = &table.snapshot()[0];
        assert_eq!(
            a.check,
            Check::Failing("the plugins' process ended (killed)".into())
        );
        assert_eq!(a.failures, 0);
        assert_eq!(table.faults(), 1);
        assert!(table.triggers().is_empty());
    }
}
