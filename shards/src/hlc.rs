//! Hybrid logical clock (HLC) timestamps.
//!
//! Every write record carries an [`Hlc`]; last-write-wins merge compares them. An HLC
//! is a physical wall-clock reading in milliseconds plus a logical counter that
//! breaks ties and keeps the clock monotonic when the wall clock stalls or steps
//! back. Packed into one `u64` (48 bits of milliseconds — enough until the year
//! 10889 — and 16 bits of counter) so it compares with a single integer compare and
//! travels in a record as eight bytes.
//!
//! # Protocol
//! - [`HlcClock::now`] is called for every local write with the node's current
//!   physical time; the result is strictly greater than every timestamp this clock
//!   has issued or accepted before.
//! - [`HlcClock::update`] is called for every timestamp received from a peer (a
//!   replicated record or a merge input). A remote timestamp more than
//!   `max_clock_drift_ms` ahead of the local physical clock is refused with
//!   [`HlcError::ClockDrift`]: accepting it would drag every later local write into
//!   the future and make that peer's writes win every LWW comparison.
//!
//! # Invariants
//! - Monotonic: successive `now` results strictly increase, whatever the physical
//!   clock does.
//! - Causal: after `update(r)` succeeds, the next `now` is greater than `r`.
//! - The clock never reads physical time itself; the caller passes it in, so tests
//!   and the simulator drive it with virtual time.

use thiserror::Error;

/// Bits of the packed timestamp that hold the logical counter.
const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest physical milliseconds value that fits in the 48 high bits.
pub const MAX_PHYSICAL_MS: u64 = (1 << (64 - LOGICAL_BITS)) - 1;

/// A hybrid logical clock timestamp: physical milliseconds (high 48 bits) and a
/// logical counter (low 16 bits). Ordering is the integer order of the packed value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc(u64);

impl Hlc {
    /// The smallest timestamp; older than every real write.
    pub const ZERO: Hlc = Hlc(0);

    /// Builds a timestamp from its parts. Physical time is clamped to 48 bits.
    pub fn new(physical_ms: u64, logical: u16) -> Hlc {
        Hlc((physical_ms.min(MAX_PHYSICAL_MS) << LOGICAL_BITS) | u64::from(logical))
    }

    /// Rebuilds a timestamp from its packed form (as stored in a record).
    pub fn from_raw(raw: u64) -> Hlc {
        Hlc(raw)
    }

    /// The packed form, for encoding.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Physical milliseconds part.
    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// Logical counter part.
    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

/// Why a timestamp could not be issued or accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HlcError {
    /// A remote timestamp is further ahead of our physical clock than allowed.
    #[error("remote HLC {remote_ms} ms is {ahead_ms} ms ahead of local clock {local_ms} ms (max drift {max_ms} ms)")]
    ClockDrift {
        remote_ms: u64,
        local_ms: u64,
        ahead_ms: u64,
        max_ms: u64,
    },
    /// The logical counter overflowed within one millisecond (65536 events in one
    /// ms on one clock without the physical clock advancing).
    #[error("HLC logical counter exhausted at {physical_ms} ms")]
    LogicalOverflow { physical_ms: u64 },
}

/// One node's hybrid logical clock.
#[derive(Clone, Debug)]
pub struct HlcClock {
    last: Hlc,
    max_clock_drift_ms: u64,
}

impl HlcClock {
    /// A clock that refuses remote timestamps more than `max_clock_drift_ms` ahead.
    pub fn new(max_clock_drift_ms: u64) -> HlcClock {
        HlcClock {
            last: Hlc::ZERO,
            max_clock_drift_ms,
        }
    }

    /// The latest timestamp issued or accepted.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a timestamp for a local event at physical time `physical_ms`.
    pub fn now(&mut self, physical_ms: u64) -> Result<Hlc, HlcError> {
        let physical_ms = physical_ms.min(MAX_PHYSICAL_MS);
        let next = if physical_ms > self.last.physical_ms() {
            Hlc::new(physical_ms, 0)
        } else {
            self.bump(self.last)?
        };
        self.last = next;
        Ok(next)
    }

    /// Accepts a timestamp received from a peer, at local physical time
    /// `physical_ms`. Refuses it when it is too far ahead; otherwise the clock moves
    /// past it so later local writes order after it.
    pub fn update(&mut self, remote: Hlc, physical_ms: u64) -> Result<(), HlcError> {
        self.check_drift(remote, physical_ms)?;
        if remote > self.last {
            self.last = remote;
        }
        Ok(())
    }

    /// Moves the clock to at least `t`, without the drift check: for times
    /// from this shard's own past (a loaded snapshot), which the clock must
    /// never issue again.
    pub fn advance_to(&mut self, t: Hlc) {
        if t > self.last {
            self.last = t;
        }
    }

    /// Checks a remote timestamp against the drift bound without moving the clock.
    pub fn check_drift(&self, remote: Hlc, physical_ms: u64) -> Result<(), HlcError> {
        let remote_ms = remote.physical_ms();
        if remote_ms > physical_ms.saturating_add(self.max_clock_drift_ms) {
            return Err(HlcError::ClockDrift {
                remote_ms,
                local_ms: physical_ms,
                ahead_ms: remote_ms - physical_ms,
                max_ms: self.max_clock_drift_ms,
            });
        }
        Ok(())
    }

    fn bump(&self, at: Hlc) -> Result<Hlc, HlcError> {
        if at.logical() == u16::MAX {
            // Borrow the next millisecond rather than fail: the physical part is
            // only a hint, and monotonicity matters more than its accuracy.
            if at.physical_ms() == MAX_PHYSICAL_MS {
                return Err(HlcError::LogicalOverflow {
                    physical_ms: at.physical_ms(),
                });
            }
            return Ok(Hlc::new(at.physical_ms() + 1, 0));
        }
        Ok(Hlc::new(at.physical_ms(), at.logical() + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn packs_and_unpacks_parts() {
        let h = Hlc::new(1_700_000_000_000, 42);
        assert_eq!(h.physical_ms(), 1_700_000_000_000);
        assert_eq!(h.logical(), 42);
        assert_eq!(Hlc::from_raw(h.raw()), h);
    }

    #[test]
    fn stalled_clock_still_advances() {
        let mut c = HlcClock::new(1000);
        let a = c.now(100).unwrap();
        let b = c.now(100).unwrap();
        let d = c.now(50).unwrap();
        assert!(a < b && b < d);
        assert_eq!(d.physical_ms(), 100);
    }

    #[test]
    fn update_moves_past_remote() {
        let mut c = HlcClock::new(1000);
        c.now(100).unwrap();
        let remote = Hlc::new(600, 7);
        c.update(remote, 100).unwrap();
        assert!(c.now(100).unwrap() > remote);
    }

    #[test]
    fn far_future_remote_is_rejected_and_clock_unchanged() {
        let mut c = HlcClock::new(500);
        let before = c.now(1000).unwrap();
        let err = c.update(Hlc::new(1501, 0), 1000).unwrap_err();
        assert_eq!(
            err,
            HlcError::ClockDrift {
                remote_ms: 1501,
                local_ms: 1000,
                ahead_ms: 501,
                max_ms: 500
            }
        );
        assert_eq!(c.last(), before);
        assert!(c.update(Hlc::new(1500, 0), 1000).is_ok());
    }

    #[test]
    fn logical_overflow_borrows_next_millisecond() {
        let mut c = HlcClock::new(0);
        c.update(Hlc::new(10, u16::MAX), 10).unwrap();
        let n = c.now(10).unwrap();
        assert_eq!((n.physical_ms(), n.logical()), (11, 0));
    }

    proptest! {
        #[test]
        fn now_is_strictly_monotonic(steps in proptest::collection::vec((0u64..10_000, any::<bool>(), 0u64..12_000), 1..200)) {
            let mut c = HlcClock::new(1_000);
            let mut prev = Hlc::ZERO;
            for (phys, remote, rms) in steps {
                if remote {
                    let r = Hlc::new(rms, 0);
                    if c.update(r, phys).is_ok() {
                        let n = c.now(phys).unwrap();
                        prop_assert!(n > r);
                        prop_assert!(n > prev);
                        prev = n;
                    }
                } else {
                    let n = c.now(phys).unwrap();
                    prop_assert!(n > prev);
                    prev = n;
                }
            }
        }
    }
}
