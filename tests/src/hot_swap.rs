//! Replacing core.wasm under a running agent: a valid core, a broken file, a core that loops
//! forever, then a valid one again. Every numbered tick must get a decision, counted in ticks.

use std::time::Duration;

use duet_host::runtime::{CoreOrigin, EMBEDDED_CORE};
use duet_host::{CoreEvent, RunOptions, TickRecord};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::support::{HOSTILE_CORE, free_port};

/// Generous bound for anything to happen; the test counts ticks, this only stops a hang.
const PATIENCE: Duration = Duration::from_secs(60);

struct Ticks {
    rx: UnboundedReceiver<TickRecord>,
    seen: Vec<TickRecord>,
}

impl Ticks {
    /// Reads ticks until one satisfies `pred` (at most 1,000 ticks) and returns it.
    async fn until(&mut self, what: &str, pred: impl Fn(&TickRecord) -> bool) -> TickRecord {
        for _ in 0..1_000 {
            let t = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("ticks stopped")
                .expect("agent ended");
            self.seen.push(t.clone());
            if pred(&t) {
                return t;
            }
        }
        panic!("no tick where {what} within 1,000 ticks");
    }

    /// Waits for `n` more ticks.
    async fn more(&mut self, n: usize) -> &[TickRecord] {
        let start = self.seen.len();
        while self.seen.len() < start + n {
            let t = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .expect("ticks stopped")
                .expect("agent ended");
            self.seen.push(t);
        }
        &self.seen[start..]
    }
}

async fn event(rx: &mut UnboundedReceiver<CoreEvent>) -> CoreEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no core event")
        .expect("agent ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_swaps_under_running_tick_loop_never_lose_a_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core_path = dir.path().join("core.wasm");
    std::fs::write(&core_path, EMBEDDED_CORE).expect("write core");
    let text = format!(
        r#"
        [agent]
        name = "a"
        [buddy]
        name = "b"
        [api]
        listen = "127.0.0.1:{}"
        [peer]
        listen = "127.0.0.1:{}"
        pair_key = "{}"
        [core]
        path = "{}"
        tick = "20ms"
        watch_interval = "10ms"
        deadline = "100ms"
        [[heartbeat]]
        kind = "agent"
        target = "127.0.0.1:{}"
        "#,
        free_port(),
        free_port(),
        crate::support::PAIR_KEY,
        core_path.display(),
        free_port()
    );
    let config = duet_host::config::parse(&text, dir.path()).expect("config");
    let (tick_tx, tick_rx) = tokio::sync::mpsc::unbounded_channel();
    let (event_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let options = RunOptions {
        ticks: Some(tick_tx),
        core_events: Some(event_tx),
        runtime: None,
        bound: None,
        ..RunOptions::default()
    };
    let agent = tokio::spawn(duet_host::run(config, options, shutdown.clone()));
    let mut ticks = Ticks {
        rx: tick_rx,
        seen: Vec::new(),
    };
    let file = CoreOrigin::File(core_path.clone());

    // 1. The valid core from the file answers.
    assert!(matches!(event(&mut events).await, CoreEvent::Installed(o) if o == file));
    ticks
        .until("the file's core answers", |t| t.by == file)
        .await;
    assert!(
        ticks.more(3).await.iter().all(|t| t.by == file),
        "the file's core keeps answering"
    );

    // 2. A broken replacement is refused and the old core keeps answering.
    replace(&core_path, b"\0asm garbage");
    assert!(matches!(event(&mut events).await, CoreEvent::Rejected(o, _) if o == file));
    assert!(
        ticks
            .more(5)
            .await
            .iter()
            .all(|t| t.by == file && t.failed.is_none()),
        "the old core keeps answering"
    );

    // 3. A core that loops forever: cut at its deadline, the embedded core answers that tick.
    replace(
        &core_path,
        &std::fs::read(HOSTILE_CORE).expect("hostile core"),
    );
    assert!(matches!(event(&mut events).await, CoreEvent::Installed(o) if o == file));
    let cut = ticks
        .until("the looping core was cut", |t| t.failed.is_some())
        .await;
    assert_eq!(
        cut.by,
        CoreOrigin::Embedded,
        "the embedded core answered the tick the looping core failed"
    );
    assert!(
        cut.failed
            .as_ref()
            .is_some_and(|(o, why)| *o == file && why.contains("deadline")),
        "{:?}",
        cut.failed
    );
    assert!(
        ticks
            .more(3)
            .await
            .iter()
            .all(|t| t.by == CoreOrigin::Embedded && t.failed.is_none()),
        "the looping core was replaced"
    );

    // 4. A valid core again takes over.
    replace(&core_path, EMBEDDED_CORE);
    assert!(matches!(event(&mut events).await, CoreEvent::Installed(o) if o == file));
    ticks
        .until("the file's core answers again", |t| t.by == file)
        .await;
    assert!(ticks.more(3).await.iter().all(|t| t.by == file));

    shutdown.cancel();
    agent.await.expect("agent task").expect("agent ran cleanly");
    let numbers: Vec<u64> = ticks.seen.iter().map(|t| t.tick).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "every numbered tick got exactly one decision"
    );
}

/// Replaces a file atomically (write beside, rename over), as an operator's deploy should.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
