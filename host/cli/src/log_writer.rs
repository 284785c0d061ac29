//! The log's writer: every thread hands its formatted line to a queue and goes on; one thread
//! of its own writes them to stderr. A thread of the decision path that logs never waits for
//! stderr's lock (held by a thread the scheduler has preempted) or for a slow disk or pipe
//! behind it. A full queue drops lines and counts them; the count is written once there is
//! room again.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Lines waiting at most: about 1 MB of log.
const QUEUE: usize = 4096;

enum Message {
    Line(Vec<u8>),
    /// Answered once every line before it is written.
    Flush(SyncSender<()>),
}

/// Where the log's lines go (the `MakeWriter` of the subscriber).
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

static QUEUE_HANDLE: OnceLock<Queue> = OnceLock::new();

/// Starts the writer thread; the returned queue is the subscriber's writer.
pub fn start() -> Queue {
    QUEUE_HANDLE
        .get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let dropped = Arc::new(AtomicU64::new(0));
            let count = dropped.clone();
            let spawned = std::thread::Builder::new()
                .name("duet-log".into())
                .spawn(move || write_all(&rx, &count));
            if let Err(e) = spawned {
                eprintln!("duet: cannot start the log writer thread: {e}");
            }
            Queue { tx, dropped }
        })
        .clone()
}

/// Waits (at most a second) until the lines queued so far are written: before the process
/// exits.
pub fn flush() {
    let Some(queue) = QUEUE_HANDLE.get() else {
        return;
    };
    let (tx, rx) = sync_channel(1);
    if queue.tx.send(Message::Flush(tx)).is_ok() {
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }
}

fn write_all(rx: &Receiver<Message>, dropped: &AtomicU64) {
    let stderr = std::io::stderr();
    while let Ok(message) = rx.recv() {
        let mut out = stderr.lock();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                out,
                "duet: {lost} log lines dropped: the log's output did not keep up"
            );
        }
        match message {
            Message::Line(line) => {
                let _ = out.write_all(&line);
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

impl std::io::Write for Queue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.tx.try_send(Message::Line(buf.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer is gone: nothing to do but lose the line.
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = sync_channel(2);
        let mut queue = Queue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..5 {
            assert_eq!(queue.write(b"line\n").expect("never fails"), 5);
        }
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 3);
        drop(rx);
    }
}
