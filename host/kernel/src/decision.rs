//! The decision path's own threads. The tick loop, the core calls, the peer link and its
//! heartbeats, the ICMP heartbeats, the virtual IPs, the state file and the failover log run
//! on a tokio runtime of their own — its own workers and its own small blocking pool — so
//! nothing else in the process (plugins, the API, the event log, NATS) can take a thread they
//! need. Where the process may, these threads run at a raised real-time priority (SCHED_RR,
//! like corosync and keepalived's `vrrp_rt_priority`): a saturated machine delays them last.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::{Handle, Runtime};

/// Worker threads: the tick loop and the peer link run side by side even when one is busy.
const WORKERS: usize = 2;
/// Blocking threads (core calls, ARP checks, file writes): a handful is all the path uses.
const BLOCKING: usize = 8;

/// The decision path's runtime. Dropping it stops its threads without waiting for them.
pub struct DecisionRuntime {
    runtime: Option<Runtime>,
}

impl DecisionRuntime {
    /// Starts the threads; `priority` is the SCHED_RR priority asked (0: ordinary).
    pub fn start(priority: u8) -> std::io::Result<DecisionRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .max_blocking_threads(BLOCKING)
            .thread_name("duet-decision")
            .on_thread_start(move || raise_priority(priority))
            .enable_all()
            .build()?;
        Ok(DecisionRuntime {
            runtime: Some(runtime),
        })
    }

    /// Where the decision path's tasks are spawned.
    pub fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until dropped")
            .handle()
    }
}

impl Drop for DecisionRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime waits for its blocking threads, which is not allowed from
            // async code: the agent ends from there.
            runtime.shutdown_background();
        }
    }
}

/// Whether the log already said that the priority could not be raised (said once).
static SAID: AtomicBool = AtomicBool::new(false);

/// Puts the calling thread under SCHED_RR at `priority` (0: leaves it as it is). Without the
/// right (CAP_SYS_NICE, or an RT budget in the cgroup) the thread keeps ordinary scheduling
/// and one log line says so.
pub fn raise_priority(priority: u8) {
    if priority == 0 {
        return;
    }
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if rc != 0 && !SAID.swap(true, Ordering::Relaxed) {
        let e = std::io::Error::last_os_error();
        tracing::warn!(
            error = %e,
            priority,
            "the decision threads run at ordinary priority: SCHED_RR was refused (needs CAP_SYS_NICE); a saturated machine can delay them"
        );
    }
}

/// The calling thread runs under SCHED_RR.
pub fn raised() -> bool {
    // SAFETY: sched_getscheduler on the calling thread has no preconditions.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_RR }
}
