//! The plugins' compartment: each plugin runs on a thread of its own (a single-threaded tokio
//! runtime with its own few blocking I/O threads, at a lower scheduling priority), and all
//! plugins together share one CPU budget. A plugin's CPU time is measured on its thread; a
//! plugin needing more than its share has its interval stretched, and its row says so.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use duet_base::lock;

/// The longest a plugin's interval is stretched to.
pub const MAX_STRETCHED: Duration = Duration::from_secs(600);

/// Weight of the newest check in a plugin's CPU-per-check average.
const NEWEST: f64 = 0.5;

/// The CPU budget of all plugins together, shared max-min fairly: a plugin needing less than
/// an equal share gets what it needs, the rest is split among the others.
pub struct CpuBudget {
    /// Cores (1.0: one core busy all the time).
    cores: f64,
    percent: u32,
    /// What each plugin would use at its own interval, in cores.
    demands: Mutex<BTreeMap<String, f64>>,
}

/// How a plugin is to be scheduled after a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Time until its next check.
    pub interval: Duration,
    /// Why it is longer than the plugin's own interval.
    pub slowed: Option<String>,
}

impl CpuBudget {
    pub fn new(percent: u32) -> Self {
        CpuBudget {
            cores: f64::from(percent) / 100.0,
            percent,
            demands: Mutex::new(BTreeMap::new()),
        }
    }

    /// A plugin used `cpu` per check (averaged) at its own interval `every`: its next interval.
    pub fn schedule(&self, name: &str, cpu: Duration, every: Duration) -> Share {
        let demand = cpu.as_secs_f64() / every.as_secs_f64().max(1e-3);
        let allowed = {
            let mut demands = lock(&self.demands);
            demands.insert(name.to_string(), demand);
            share_of(self.cores, &demands, name)
        };
        if demand <= allowed {
            return Share {
                interval: every,
                slowed: None,
            };
        }
        let stretched = Duration::from_secs_f64(cpu.as_secs_f64() / allowed.max(1e-6))
            .clamp(every, MAX_STRETCHED);
        Share {
            interval: stretched,
            slowed: Some(format!(
                "slowed to every {}: it needs {:.0}% of a core, its share of the plugins' CPU budget ({}%, plugins.cpu_budget_percent) is {:.1}%",
                humantime::format_duration(round(stretched)),
                demand * 100.0,
                self.percent,
                allowed * 100.0
            )),
        }
    }

    /// The plugin stopped: its demand goes.
    pub fn remove(&self, name: &str) {
        lock(&self.demands).remove(name);
    }
}

/// Rounded to 100 ms, for the row.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100) as u64 * 100)
}

/// The max-min fair share of `name` among `demands` within `cores`.
fn share_of(cores: f64, demands: &BTreeMap<String, f64>, name: &str) -> f64 {
    let mut sorted: Vec<(&String, f64)> = demands.iter().map(|(n, d)| (n, *d)).collect();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut left = cores;
    let count = sorted.len();
    for (i, (n, d)) in sorted.iter().enumerate() {
        let fair = left / (count - i) as f64;
        if *d > fair {
            // Every plugin from here needs more than an equal share of what is left.
            return fair;
        }
        if *n == name {
            return *d;
        }
        left -= d;
    }
    left
}

/// The CPU-per-check average after a check that took `cpu`.
pub fn average(before: Option<Duration>, cpu: Duration) -> Duration {
    match before {
        None => cpu,
        Some(b) => b.mul_f64(1.0 - NEWEST) + cpu.mul_f64(NEWEST),
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux: per thread).
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority on our own thread id.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), nice, "cannot lower a plugin thread's priority");
    }
}

/// Runs `make()`'s future on a thread of its own: a single-threaded runtime with at most
/// `io_threads` blocking threads (the plugin's file I/O: a call blocked there pins only these),
/// all at `nice`. The receiver resolves when the thread ends.
pub fn spawn<F, Fut>(
    name: &str,
    io_threads: usize,
    nice: i32,
    make: F,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, ended) = tokio::sync::oneshot::channel();
    let thread = format!("plugin {name}");
    std::thread::Builder::new()
        .name(thread.clone())
        .stack_size(1 << 20)
        .spawn(move || {
            set_nice(nice);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(io_threads.max(1))
                .thread_keep_alive(Duration::from_secs(5))
                .thread_name(format!("{thread} io"))
                .thread_stack_size(1 << 20)
                .on_thread_start(move || set_nice(nice))
                .build();
            match runtime {
                Ok(rt) => {
                    rt.block_on(make());
                    // A blocking read still stuck is abandoned, not waited for.
                    rt.shutdown_background();
                }
                Err(e) => {
                    tracing::error!(error = %e, plugin = %thread, "cannot start a plugin's runtime")
                }
            }
            let _ = done.send(());
        })?;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_max_min_fairly() {
        let b = CpuBudget::new(50);
        let every = Duration::from_secs(1);
        // A small plugin alone gets what it needs.
        assert_eq!(
            b.schedule("canary", Duration::from_millis(5), every).slowed,
            None
        );
        // Two busy ones share what is left: (0.5 - 0.005) / 2 each.
        b.schedule("busy1", Duration::from_millis(900), every);
        let s = b.schedule("busy2", Duration::from_millis(900), every);
        let share = (0.5 - 0.005) / 2.0;
        let expected = 0.9 / share;
        assert!(
            (s.interval.as_secs_f64() - expected).abs() < 0.01,
            "{s:?}, expected {expected} s"
        );
        assert!(
            s.slowed
                .as_deref()
                .is_some_and(|w| w.contains("needs 90% of a core")),
            "{s:?}"
        );
        // The canary is never slowed by them.
        assert_eq!(
            b.schedule("canary", Duration::from_millis(5), every)
                .interval,
            every
        );
        // One gone: the other gets its share back.
        b.remove("busy1");
        let alone = b.schedule("busy2", Duration::from_millis(900), every);
        assert!(alone.interval < s.interval, "{alone:?}");
    }

    #[test]
    fn the_average_weighs_the_newest_check_by_half() {
        let a = average(None, Duration::from_millis(100));
        assert_eq!(a, Duration::from_millis(100));
        assert_eq!(
            average(Some(a), Duration::from_millis(300)),
            Duration::from_millis(200)
        );
    }
}
