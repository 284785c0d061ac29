//! The agent's file descriptors: the soft limit raised to the hard one at start, read by the
//! parts that take a bounded share of it (the API's connections), and a few kept in reserve
//! for the decision path's sockets.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use crate::lock;

/// The soft limit on open file descriptors (`RLIMIT_NOFILE`), if it can be read.
pub fn limit() -> Option<u64> {
    read().ok().map(|now| now.rlim_cur)
}

/// The soft and hard limits now.
fn read() -> std::io::Result<libc::rlimit> {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut now) } == 0 {
        Ok(now)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft limit on open file descriptors to the hard limit and says so in one log
/// line: a default soft limit (often 1,024) is far below what a busy agent may hold. Returns
/// the soft limit in force afterwards.
pub fn raise_limit() -> Option<u64> {
    let now = match read() {
        Ok(now) => now,
        Err(error) => {
            tracing::warn!(%error, "cannot read the file descriptor limit");
            return None;
        }
    };
    let before = now.rlim_cur;
    if before >= now.rlim_max {
        tracing::info!(
            limit = before,
            "file descriptor limit: {before} (already the hard limit)"
        );
        return Some(before);
    }
    let raised = libc::rlimit {
        rlim_cur: now.rlim_max,
        rlim_max: now.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(limit = before, hard = now.rlim_max, %error, "file descriptor limit: {before}; cannot raise it to the hard limit");
        return Some(before);
    }
    tracing::info!(
        limit = raised.rlim_cur,
        before,
        "file descriptor limit raised from {before} to {} (the hard limit)",
        raised.rlim_cur
    );
    Some(raised.rlim_cur)
}

// --- the decision path's reserve ---------------------------------------------------------
//
// A few descriptors the decision path keeps in reserve. When the process's table is full
// (a plugin or a flood of API clients took the rest), the peer link and the ICMP heartbeats
// give one of them back and open their socket in its place, instead of failing — which the
// buddy would read as this agent's death. The reserve is refilled whenever descriptors are
// free again: a last resort beside the caps on the API's and the plugins' shares.

/// Descriptors kept: one per path and a few to spare.
const KEPT: usize = 16;
/// How many times one operation may draw on the reserve (another thread can take a freed
/// descriptor first).
const DRAWS: usize = 3;

static RESERVE: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Fills the reserve up to [`KEPT`] while descriptors are free.
pub fn refill() {
    let mut kept = lock(&RESERVE);
    while kept.len() < KEPT {
        match std::fs::File::open("/dev/null") {
            Ok(file) => kept.push(file.into()),
            Err(_) => return,
        }
    }
}

/// How many descriptors are held in reserve now.
pub fn held() -> usize {
    lock(&RESERVE).len()
}

/// The process or the system has no descriptor left.
fn exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Runs `open`; when it fails for want of a descriptor, gives one from the reserve back and
/// tries again (at most [`DRAWS`] times).
pub fn opening<T>(mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut draws = 0;
    loop {
        match open() {
            Err(e) if exhausted(&e) && draws < DRAWS => {
                let Some(fd) = lock(&RESERVE).pop() else {
                    return Err(e);
                };
                drop(fd);
                draws += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let raised = raise_limit().expect("the limit can be read");
        assert_eq!(limit(), Some(raised));
        assert!(raised >= 64);
    }

    #[test]
    fn an_exhausted_table_draws_on_the_reserve() {
        refill();
        assert_eq!(held(), KEPT);
        let mut calls = 0;
        let opened = opening(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(opened.expect("opened on the third try"), 3);
        assert_eq!(held(), KEPT - 2, "two descriptors given back");
        let refused = opening::<()>(|| Err(io::Error::from_raw_os_error(libc::EACCES)));
        assert!(refused.is_err(), "other errors are not retried");
        assert_eq!(held(), KEPT - 2);
        refill();
        assert_eq!(held(), KEPT);
    }
}
