//! The admission lifecycle as a pure function: an agent's stored state, what
//! trust says of it now, the time → the next step. No clock, no I/O; the
//! controller reads the inputs, applies the step with its audit entry and
//! publishes the event.
//!
//! ```text
//!             quarantine(reason) by an alert
//!   (admitted) ──────────────────────────────▶ quarantined ──cool-down over──▶ probation
//!       ▲                                          ▲   (agents.probation_every > 0)  │
//!       │ trust >= readmit_above after             │ trust < readmit_above after     │
//!       │ probation_outcomes new outcomes          │ probation_outcomes (failed < max)│
//!       └──────────────────────────────────────────┼─────────────────────────────────┤
//!                                                  │          failed == max          ▼
//!                                                  └──────────────────────────── held (until an operator acts)
//! ```
//!
//! An operator's re-enable leaves every state for "admitted" with a grace of
//! `agents.disable_min_samples` observations; [`step`] ends the grace once
//! they are reached.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{Admission, OverrideGrace, Quarantine, QuarantineConfig, QuarantineState};

/// What trust says of the agent now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Its overall trust; `None` before its first observation.
    pub trust: Option<f64>,
    /// Its observations: evaluated outcomes plus recorded failures.
    pub outcomes: u64,
}

/// The next step of one agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to do yet.
    Stay,
    /// The cool-down is over: probation starts (audit `agent.probation`).
    Probation(Quarantine),
    /// The probation succeeded: back in fan-outs, the row is removed
    /// (audit `agent.readmit`).
    Readmit {
        /// Overall trust at the decision.
        trust: f64,
        /// New observations during the probation.
        new_outcomes: u64,
    },
    /// The probation failed: quarantined again with a new cool-down (audit
    /// `agent.quarantine`).
    Requarantine(Quarantine),
    /// The probation failed for the `max_probations`-th time: held until an
    /// operator acts (audit `agent.hold`).
    Hold(Quarantine),
    /// The operator's grace reached its observation count: the row is
    /// removed (bookkeeping: the re-enable itself was audited).
    GraceOver,
}

/// A new quarantine at `now` for `reason` (alert `alert_id`): cool-down
/// until `now + cool_down_secs`.
pub fn quarantine(
    reason: &str,
    alert_id: Uuid,
    seen: Seen,
    now: DateTime<Utc>,
    cfg: &QuarantineConfig,
) -> Quarantine {
    Quarantine {
        state: QuarantineState::Quarantined,
        reason: reason.to_owned(),
        since: now,
        alert_id,
        until: Some(cool_down_end(now, cfg)),
        probations: 0,
        outcomes_at_start: seen.outcomes,
        hold: false,
    }
}

/// The grace an operator's re-enable at `now` grants: `grace_outcomes` new
/// observations (`agents.disable_min_samples`).
pub fn grace(by: &str, seen: Seen, now: DateTime<Utc>, grace_outcomes: u64) -> OverrideGrace {
    OverrideGrace {
        since: now,
        by: by.to_owned(),
        outcomes_at_start: seen.outcomes,
        until_outcomes: seen.outcomes.saturating_add(grace_outcomes),
    }
}

fn cool_down_end(now: DateTime<Utc>, cfg: &QuarantineConfig) -> DateTime<Utc> {
    let secs = i64::try_from(cfg.cool_down_secs).unwrap_or(i64::MAX);
    now.checked_add_signed(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The next step of an agent in `current` state, given what trust says of
/// it (`seen`) at `now`. `probation_every` is `agents.probation_every`: 0
/// means no probation, a quarantined agent stays out until an operator acts.
pub fn step(
    current: &Admission,
    seen: Seen,
    now: DateTime<Utc>,
    cfg: &QuarantineConfig,
    probation_every: u64,
) -> Step {
    let q = match current {
        Admission::Grace(g) => {
            return if g.active(seen.outcomes) {
                Step::Stay
            } else {
                Step::GraceOver
            }
        }
        Admission::Quarantine(q) => q,
    };
    match q.state {
        QuarantineState::Quarantined => {
            if q.hold || probation_every == 0 || q.until.is_some_and(|u| now < u) {
                return Step::Stay;
            }
            Step::Probation(Quarantine {
                state: QuarantineState::Probation,
                since: now,
                until: None,
                outcomes_at_start: seen.outcomes,
                ..q.clone()
            })
        }
        QuarantineState::Probation => {
            let new_outcomes = seen.outcomes.saturating_sub(q.outcomes_at_start);
            let Some(trust) = seen.trust else {
                return Step::Stay;
            };
            if new_outcomes < cfg.probation_outcomes {
                return Step::Stay;
            }
            if trust >= cfg.readmit_above {
                return Step::Readmit {
                    trust,
                    new_outcomes,
                };
            }
            let failed = q.probations.saturating_add(1);
            let again = Quarantine {
                state: QuarantineState::Quarantined,
                since: now,
                probations: failed,
                outcomes_at_start: seen.outcomes,
                ..q.clone()
            };
            if failed >= cfg.max_probations {
                Step::Hold(Quarantine {
                    until: None,
                    hold: true,
                    ..again
                })
            } else {
                Step::Requarantine(Quarantine {
                    until: Some(cool_down_end(now, cfg)),
                    ..again
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn cfg() -> QuarantineConfig {
        QuarantineConfig::default()
    }

    fn seen(trust: f64, outcomes: u64) -> Seen {
        Seen {
            trust: Some(trust),
            outcomes,
        }
    }

    fn quarantined_at_0() -> Quarantine {
        quarantine(
            "trust 0.12 < 0.30",
            Uuid::nil(),
            seen(0.12, 60),
            t(0),
            &cfg(),
        )
    }

    fn probation_after(q: &Quarantine, at: i64, outcomes: u64) -> Quarantine {
        match step(
            &Admission::Quarantine(q.clone()),
            seen(0.1, outcomes),
            t(at),
            &cfg(),
            20,
        ) {
            Step::Probation(p) => p,
            other => panic!("expected probation, got {other:?}"),
        }
    }

    #[test]
    fn a_new_quarantine_cools_down_for_cool_down_secs() {
        let q = quarantined_at_0();
        assert_eq!(q.state, QuarantineState::Quarantined);
        assert_eq!(q.until, Some(t(3600)));
        assert_eq!((q.probations, q.outcomes_at_start, q.hold), (0, 60, false));
    }

    #[test]
    fn stays_quarantined_until_the_cool_down_ends_then_probation() {
        let q = Admission::Quarantine(quarantined_at_0());
        assert_eq!(step(&q, seen(0.1, 70), t(3599), &cfg(), 20), Step::Stay);
        let Step::Probation(p) = step(&q, seen(0.1, 70), t(3600), &cfg(), 20) else {
            panic!("cool-down over: probation");
        };
        assert_eq!(p.state, QuarantineState::Probation);
        assert_eq!((p.since, p.until, p.outcomes_at_start), (t(3600), None, 70));
        assert_eq!(p.reason, "trust 0.12 < 0.30");
    }

    #[test]
    fn no_probation_when_probation_every_is_zero() {
        let q = Admission::Quarantine(quarantined_at_0());
        assert_eq!(step(&q, seen(0.9, 500), t(999_999), &cfg(), 0), Step::Stay);
    }

    #[test]
    fn probation_waits_for_probation_outcomes_new_outcomes() {
        let p = Admission::Quarantine(probation_after(&quarantined_at_0(), 3600, 70));
        // 19 new outcomes, trust recovered: not yet.
        assert_eq!(step(&p, seen(0.9, 89), t(4000), &cfg(), 20), Step::Stay);
        assert_eq!(
            step(&p, seen(0.9, 90), t(4000), &cfg(), 20),
            Step::Readmit {
                trust: 0.9,
                new_outcomes: 20
            }
        );
    }

    #[test]
    fn readmit_threshold_is_inclusive_and_above_the_disable_threshold() {
        let p = Admission::Quarantine(probation_after(&quarantined_at_0(), 3600, 70));
        assert!(matches!(
            step(&p, seen(0.4, 90), t(4000), &cfg(), 20),
            Step::Readmit { .. }
        ));
        // 0.35 clears agents.disable_below_trust (0.3) but not readmit_above.
        assert!(matches!(
            step(&p, seen(0.35, 90), t(4000), &cfg(), 20),
            Step::Requarantine(_)
        ));
    }

    #[test]
    fn a_failed_probation_quarantines_again_with_a_new_cool_down() {
        let p = Admission::Quarantine(probation_after(&quarantined_at_0(), 3600, 70));
        let Step::Requarantine(q) = step(&p, seen(0.2, 95), t(5000), &cfg(), 20) else {
            panic!("failed probation");
        };
        assert_eq!(q.state, QuarantineState::Quarantined);
        assert_eq!((q.probations, q.outcomes_at_start, q.hold), (1, 95, false));
        assert_eq!((q.since, q.until), (t(5000), Some(t(8600))));
    }

    #[test]
    fn the_max_probations_th_failure_holds_until_an_operator_acts() {
        let mut q = quarantined_at_0();
        let mut now = 0;
        let mut outcomes = 60;
        for failed in 1..=3 {
            now += 3600;
            let p = probation_after(&q, now, outcomes);
            outcomes += 20;
            now += 100;
            match step(
                &Admission::Quarantine(p),
                seen(0.1, outcomes),
                t(now),
                &cfg(),
                20,
            ) {
                Step::Requarantine(next) if failed < 3 => {
                    assert_eq!(next.probations, failed);
                    q = next;
                }
                Step::Hold(held) if failed == 3 => {
                    assert!(held.hold);
                    assert_eq!(held.probations, 3);
                    assert_eq!(held.until, None);
                    assert_eq!(held.state, QuarantineState::Quarantined);
                    // Held: nothing moves it, however long or good.
                    let h = Admission::Quarantine(held);
                    assert_eq!(
                        step(&h, seen(1.0, 10_000), t(now + 10_000_000), &cfg(), 20),
                        Step::Stay
                    );
                }
                other => panic!("failure {failed}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn probation_without_a_trust_card_waits() {
        let p = Admission::Quarantine(probation_after(&quarantined_at_0(), 3600, 70));
        let none = Seen {
            trust: None,
            outcomes: 1_000,
        };
        assert_eq!(step(&p, none, t(9000), &cfg(), 20), Step::Stay);
    }

    #[test]
    fn observation_counts_that_go_down_do_not_underflow() {
        let p = Admission::Quarantine(probation_after(&quarantined_at_0(), 3600, 70));
        assert_eq!(step(&p, seen(0.9, 3), t(9000), &cfg(), 20), Step::Stay);
    }

    #[test]
    fn grace_lasts_until_its_observation_count() {
        let g = grace("admin", seen(0.1, 60), t(0), 20);
        assert_eq!(g.until_outcomes, 80);
        let a = Admission::Grace(g);
        assert_eq!(step(&a, seen(0.1, 79), t(10), &cfg(), 20), Step::Stay);
        assert_eq!(step(&a, seen(0.1, 80), t(10), &cfg(), 20), Step::GraceOver);
    }

    #[test]
    fn a_huge_cool_down_saturates_instead_of_overflowing() {
        let c = QuarantineConfig {
            cool_down_secs: u64::MAX,
            ..cfg()
        };
        let q = quarantine("r", Uuid::nil(), seen(0.1, 1), t(0), &c);
        assert!(q.until.is_some_and(|u| u > t(0)));
    }

    #[test]
    fn config_validation_names_the_key() {
        assert!(cfg().validate().is_ok());
        let bad = |f: fn(&mut QuarantineConfig)| {
            let mut c = cfg();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(bad(|c| c.readmit_above = 1.5), "readmit_above");
        assert_eq!(bad(|c| c.probation_outcomes = 0), "probation_outcomes");
        assert_eq!(bad(|c| c.max_probations = 0), "max_probations");
        assert_eq!(bad(|c| c.check_every_secs = 0), "check_every_secs");
        assert_eq!(bad(|c| c.cool_down_secs = u64::MAX), "cool_down_secs");
    }
}
