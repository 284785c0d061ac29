//! The agent's file descriptors: the soft limit raised to the hard one at start, and read by
//! the parts that take a bounded share of it (the API's connections).

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let raised = super::raise_limit().expect("the limit can be read");
        assert_eq!(super::limit(), Some(raised));
        assert!(raised >= 64);
    }
}
