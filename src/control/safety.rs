//! The safety check: no in-sync replica, no promotion.
//!
//! # Protocol
//! Each election round that finds no eligible candidate (every live replica is
//! behind a commit point, or too far behind the old primary) counts as a failed
//! round. After `safety_retries` failed rounds the database pauses writes — reads
//! go on — and stays paused until a round finds an eligible candidate again, at
//! which point writes resume and the election proceeds. An operator can still force
//! a failover; that path is explicit and logged ([`Action::ForcedFailover`]).
//!
//! # Invariant
//! Leadership is never handed to a replica that is missing acknowledged data
//! unless an operator forced it.

use super::messages::Action;

/// Counts failed rounds and owns the paused flag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SafetyCheck {
    retries: u32,
    failed_rounds: u32,
    paused: bool,
}

impl SafetyCheck {
    /// A check that pauses writes after `retries` rounds with no eligible candidate.
    pub fn new(retries: u32) -> SafetyCheck {
        SafetyCheck {
            retries,
            failed_rounds: 0,
            paused: false,
        }
    }

    /// Whether writes are paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// An election round found no eligible candidate.
    pub fn no_eligible_round(&mut self) -> Option<Action> {
        self.failed_rounds = self.failed_rounds.saturating_add(1);
        if self.failed_rounds >= self.retries && !self.paused {
            self.paused = true;
            return Some(Action::PauseWrites);
        }
        None
    }

    /// A round found an eligible candidate (or a primary opened).
    pub fn eligible_seen(&mut self) -> Option<Action> {
        self.failed_rounds = 0;
        if self.paused {
            self.paused = false;
            return Some(Action::ResumeWrites);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_only_after_the_configured_retries_and_resumes_once() {
        let mut s = SafetyCheck::new(3);
        assert_eq!(s.no_eligible_round(), None);
        assert_eq!(s.no_eligible_round(), None);
        assert_eq!(s.no_eligible_round(), Some(Action::PauseWrites));
        assert!(s.paused());
        assert_eq!(s.no_eligible_round(), None);
        assert_eq!(s.eligible_seen(), Some(Action::ResumeWrites));
        assert_eq!(s.eligible_seen(), None);
        assert!(!s.paused());
    }
}
