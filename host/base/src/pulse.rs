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
    /// Milliseconds from `origin` to the last sign of life: a completed tick, or the loop
    /// waiting idle for its next one ([`Pulse::alive`]). Silence counts from here.
    alive: AtomicU64,
    /// The last gap between two completed ticks, and the largest since start (ms).
    gap: AtomicU64,
    max_gap: AtomicU64,
    /// Silence longer than this is late (ms); `u64::MAX`: never (fencing off). Changed by a
    /// configuration reload ([`Pulse::set_bound`]).
    bound: AtomicU64,
}

impl Pulse {
    /// A pulse that is late after `bound` of silence; `None`: never late (the simulation, on
    /// virtual time, where the real clock says nothing about the agent).
    pub fn new(bound: Option<Duration>) -> Pulse {
        Pulse {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            alive: AtomicU64::new(0),
            gap: AtomicU64::new(0),
            max_gap: AtomicU64::new(0),
            bound: AtomicU64::new(bound.map_or(u64::MAX, crate::millis)),
        }
    }

    fn bound_ms(&self) -> u64 {
        self.bound.load(Ordering::Relaxed)
    }

    /// A new bound (the heartbeats' timings were reloaded); nothing when fencing is off.
    pub fn set_bound(&self, bound: Duration) {
        let ms = crate::millis(bound).min(u64::MAX - 1);
        let _ = self
            .bound
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b != u64::MAX).then_some(ms)
            });
    }

    fn elapsed(&self) -> u64 {
        crate::millis(self.origin.elapsed())
    }

    /// A tick completed.
    pub fn beat(&self) {
        let now = self.elapsed();
        let gap = now.saturating_sub(self.last.swap(now, Ordering::AcqRel));
        self.alive.fetch_max(now, Ordering::AcqRel);
        self.gap.store(gap, Ordering::Relaxed);
        self.max_gap.fetch_max(gap, Ordering::Relaxed);
    }

    /// The loop is waiting, idle, for its next tick or change: alive, though no tick completed.
    /// Without it a stop's silence would include the idle part of the tick it fell in (up to a
    /// whole tick), and a stop well short of detection could fence the agent.
    pub fn alive(&self) {
        self.alive.fetch_max(self.elapsed(), Ordering::AcqRel);
    }

    /// How long since the last sign of life (since start, before the first).
    pub fn silence(&self) -> Duration {
        Duration::from_millis(
            self.elapsed()
                .saturating_sub(self.alive.load(Ordering::Acquire)),
        )
    }

    /// How often an idle loop says it is alive: a tenth of the bound (a stop's silence is then
    /// at most its length plus a tenth), at least every millisecond, at most every `tick`;
    /// `None` with fencing off.
    pub fn idle_period(&self, tick: Duration) -> Option<Duration> {
        let bound = self.bound_ms();
        (bound != u64::MAX).then(|| Duration::from_millis((bound / 10).max(1)).min(tick))
    }

    /// Silent past the bound.
    pub fn late(&self) -> bool {
        crate::millis(self.silence()) > self.bound_ms()
    }

    /// The bound, if fencing is on.
    pub fn bound(&self) -> Option<Duration> {
        let bound = self.bound_ms();
        (bound != u64::MAX).then(|| Duration::from_millis(bound))
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
    fn an_idle_loop_alive_is_not_late_and_keeps_its_tick_gap() {
        let pulse = Pulse::new(Some(Duration::from_millis(30)));
        pulse.beat();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(10));
            pulse.alive();
        }
        assert!(!pulse.late(), "50 ms without a tick, but alive every 10 ms");
        assert!(pulse.silence() < Duration::from_millis(30));
        pulse.beat();
        assert!(
            pulse.gap() >= Duration::from_millis(50),
            "the tick gap counts ticks only"
        );
        assert_eq!(
            pulse.idle_period(Duration::from_millis(250)),
            Some(Duration::from_millis(3))
        );
        assert_eq!(
            Pulse::new(None).idle_period(Duration::from_millis(250)),
            None
        );
    }

    #[test]
    fn without_a_bound_it_is_never_late() {
        let pulse = Pulse::new(None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!pulse.late());
        assert_eq!(pulse.bound(), None);
        pulse.set_bound(Duration::from_millis(1));
        assert_eq!(pulse.bound(), None, "a reload does not turn fencing on");
    }

    #[test]
    fn a_reloaded_bound_takes_effect_at_once() {
        let pulse = Pulse::new(Some(Duration::from_secs(60)));
        pulse.beat();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!pulse.late());
        pulse.set_bound(Duration::from_millis(10));
        assert_eq!(pulse.bound(), Some(Duration::from_millis(10)));
        assert!(pulse.late(), "20 ms of silence past the new 10 ms bound");
    }
}
