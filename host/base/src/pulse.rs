//! The decision loop's pulse: when it last completed a tick, the gaps between its ticks, and
//! whether it is late — silent for longer than the fence bound, past which the buddy may
//! declare this agent dead. Read from any thread, without locks; measured on the real
//! monotonic clock (a process stop counts, as it does for the buddy).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The decision loop's pulse.
#[derive(Debug)]
pub struct Pulse {
    origin: Instant,
    /// Milliseconds from `origin` to the end of the last tick (0: none yet, counted from
    /// `origin`).
    last: AtomicU64,
    /// The last gap between two completed ticks, and the largest since start (ms).
    gap: AtomicU64,
    max_gap: AtomicU64,
    /// Silence longer than this is late (ms); `u64::MAX`: never (fencing off).
    bound: u64,
}

impl Pulse {
    /// A pulse that is late after `bound` of silence; `None`: never late (the simulation, on
    /// virtual time, where the real clock says nothing about the agent).
    pub fn new(bound: Option<Duration>) -> Pulse {
        Pulse {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            gap: AtomicU64::new(0),
            max_gap: AtomicU64::new(0),
            bound: bound.map_or(u64::MAX, crate::millis),
        }
    }

    fn elapsed(&self) -> u64 {
        crate::millis(self.origin.elapsed())
    }

    /// A tick completed.
    pub fn beat(&self) {
        let now = self.elapsed();
        let gap = now.saturating_sub(self.last.swap(now, Ordering::AcqRel));
        self.gap.store(gap, Ordering::Relaxed);
        self.max_gap.fetch_max(gap, Ordering::Relaxed);
    }

    /// How long since the last tick completed (since start, before the first).
    pub fn silence(&self) -> Duration {
        Duration::from_millis(
            self.elapsed()
                .saturating_sub(self.last.load(Ordering::Acquire)),
        )
    }

    /// Silent past the bound.
    pub fn late(&self) -> bool {
        crate::millis(self.silence()) > self.bound
    }

    /// The bound, if fencing is on.
    pub fn bound(&self) -> Option<Duration> {
        (self.bound != u64::MAX).then(|| Duration::from_millis(self.bound))
    }

    /// The last gap between two completed ticks.
    pub fn gap(&self) -> Duration {
        Duration::from_millis(self.gap.load(Ordering::Relaxed))
    }

    /// The largest gap between two completed ticks since start.
    pub fn max_gap(&self) -> Duration {
        Duration::from_millis(self.max_gap.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_measured_between_beats_and_silence_past_the_bound_is_late() {
        let pulse = Pulse::new(Some(Duration::from_millis(30)));
        pulse.beat();
        assert!(!pulse.late());
        std::thread::sleep(Duration::from_millis(50));
        assert!(pulse.late(), "50 ms of silence past a 30 ms bound");
        pulse.beat();
        assert!(!pulse.late());
        assert!(pulse.gap() >= Duration::from_millis(50));
        assert_eq!(pulse.max_gap(), pulse.gap());
        pulse.beat();
        assert!(pulse.gap() < Duration::from_millis(50));
        assert!(
            pulse.max_gap() >= Duration::from_millis(50),
            "the largest stays"
        );
    }

    #[test]
    fn without_a_bound_it_is_never_late() {
        let pulse = Pulse::new(None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!pulse.late());
        assert_eq!(pulse.bound(), None);
    }
}
