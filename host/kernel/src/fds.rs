//! A few file descriptors the decision path keeps in reserve. When the process's table is full
//! (a plugin or a flood of API clients took the rest), the peer link and the ICMP heartbeats
//! give one of them back and open their socket in its place, instead of failing — which the
//! buddy would read as this agent's death. The reserve is refilled whenever descriptors are
//! free again. It is a last resort: the API's and the plugins' shares are capped where they
//! are opened.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use duet_base::lock;

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
pub(crate) fn opening<T>(mut open: impl FnMut() -> io::Result<T>) -> io::Result<T> {
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
