//! Rule evaluation as pure functions: the live state in (a workspace's trust
//! snapshot, a finished learning cycle, its patterns, the store probe, the
//! time), [`Reading`]s out; and the state machine ([`AlertBook`]) that turns
//! readings into transitions with `for` durations, hysteresis and
//! deduplication. No clock is read and no I/O is done here: the `Alerter`
//! actor feeds it and applies the transitions; simulations and the bench
//! call it directly.
//!
//! The lifecycle of one fingerprint (workspace/rule/subject):
//!
//! ```text
//!   inactive --breach--> pending --breach held for_secs--> firing --value crosses clear--> resolved
//!               ^            | no breach                      (one open alert; hysteresis:
//!               +------------+                                 between threshold and clear it stays)
//! ```
//!
//! A resolved fingerprint starts again from inactive, so a later breach opens
//! a new alert. One-shot rules (severity info) record an alert that is
//! resolved as it is raised.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::config::{
    RuleBook, RuleSpec, AGENTS_DECLINING, AGENT_APPROVAL_LOW, AGENT_TRUST_LOW, DATABASE_ERRORS,
    LEARNING_CYCLE_COMPLETED, LEARNING_CYCLE_FAILED, LEARNING_CYCLE_SLOW, PATTERNS_DISCOVERED,
    PATTERN_CONFIDENCE_LOW, TRUST_UPDATED,
};
use super::{Alert, AlertStatus};
use crate::domain::{AgentId, WorkspaceId};
use crate::learner::cycle::StoredPattern;
use crate::trust::{Trend, WorkspaceSnapshot};

/// One observation of one rule for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The workspace, or `None` for node-level rules.
    pub workspace: Option<WorkspaceId>,
    /// The rule.
    pub rule: &'static str,
    /// Agent id, pattern id, or `""`.
    pub subject: String,
    /// The observed value (unit per rule).
    pub value: f64,
    /// Evidence behind it (outcomes, observations); compared with `min_samples`.
    pub samples: u64,
    /// What a person reads when it fires (filled lazily by [`summary`]).
    pub detail: String,
}

/// What a learning cycle reported, as the rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleFacts {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// The cycle id.
    pub cycle_id: String,
    /// Succeeded (else failed).
    pub succeeded: bool,
    /// Why it ran (`schedule`, `api`, `outcomes`, `cli`), if known.
    pub reason: Option<String>,
    /// Its duration in seconds, if known.
    pub duration_seconds: Option<f64>,
    /// New candidate patterns.
    pub patterns_discovered: u32,
    /// The error of a failed cycle.
    pub error: Option<String>,
}

/// A change of an alert's state the actor applies (store, event, notifier,
/// action).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A new firing alert (or a one-shot one, already resolved).
    Fired(Alert),
    /// The open alert resolved: its final state.
    Resolved(Alert),
    /// The open alert of a rule with an `action`, breaching again (below its
    /// threshold, not merely short of `clear`): the action is asked again.
    /// Nothing is stored, published or notified. The admission controller
    /// ignores it while the agent is quarantined, held, disabled or in an
    /// operator's grace, so an operator's re-enable lasts its grace and no
    /// longer.
    StillBreaching(Alert),
}

/// Readings of the trust rules (`agent_trust_low`, `agent_approval_low` per
/// agent; `agents_declining` for the workspace) from a snapshot. `only`:
/// just these agents (a trust update), or every agent (a tick);
/// `agents_declining` is read either way.
pub fn trust_readings(
    ws: WorkspaceId,
    snap: &WorkspaceSnapshot,
    only: Option<&[AgentId]>,
    rules: &RuleBook,
    out: &mut Vec<Reading>,
) {
    let trust = rules.enabled(AGENT_TRUST_LOW);
    let approval = rules.enabled(AGENT_APPROVAL_LOW);
    let mut per_agent = |agent: &AgentId, cards: &crate::trust::AgentCards| {
        let card = &cards.overall;
        if trust.is_some() {
            out.push(Reading {
                workspace: Some(ws),
                rule: AGENT_TRUST_LOW,
                subject: agent.to_string(),
                value: card.overall_trust,
                samples: card.observations(),
                detail: String::new(),
            });
        }
        if approval.is_some() {
            out.push(Reading {
                workspace: Some(ws),
                rule: AGENT_APPROVAL_LOW,
                subject: agent.to_string(),
                value: card.approval_rate,
                samples: card.sample_count,
                detail: String::new(),
            });
        }
    };
    match only {
        Some(agents) => {
            for a in agents {
                if let Some(cards) = snap.agents.get(a) {
                    per_agent(a, cards);
                }
            }
        }
        None => {
            for (a, cards) in &snap.agents {
                per_agent(a, cards);
            }
        }
    }
    if rules.enabled(AGENTS_DECLINING).is_some() {
        let declining = snap
            .agents
            .values()
            .filter(|c| c.overall.trend == Trend::Declining)
            .count();
        out.push(Reading {
            workspace: Some(ws),
            rule: AGENTS_DECLINING,
            subject: String::new(),
            value: declining as f64,
            samples: snap.agents.len() as u64,
            detail: String::new(),
        });
    }
}

/// Readings of the cycle rules for a finished cycle: `learning_cycle_failed`
/// (1 failed, 0 succeeded) and `learning_cycle_slow` (seconds, when known).
pub fn cycle_readings(c: &CycleFacts, out: &mut Vec<Reading>) {
    out.push(Reading {
        workspace: Some(c.workspace),
        rule: LEARNING_CYCLE_FAILED,
        subject: String::new(),
        value: if c.succeeded { 0.0 } else { 1.0 },
        samples: 1,
        detail: match &c.error {
            Some(e) => format!("cycle {}: {e}", c.cycle_id),
            None => format!("cycle {}", c.cycle_id),
        },
    });
    if let Some(d) = c.duration_seconds {
        out.push(Reading {
            workspace: Some(c.workspace),
            rule: LEARNING_CYCLE_SLOW,
            subject: String::new(),
            value: d,
            samples: 1,
            detail: format!("cycle {}", c.cycle_id),
        });
    }
}

/// One-shot readings of a cycle: `learning_cycle_completed` (scheduled
/// cycles that succeeded) and `patterns_discovered` (at least one new pattern).
pub fn cycle_one_shots(c: &CycleFacts, out: &mut Vec<Reading>) {
    if c.succeeded && c.reason.as_deref() == Some("schedule") {
        out.push(Reading {
            workspace: Some(c.workspace),
            rule: LEARNING_CYCLE_COMPLETED,
            subject: String::new(),
            value: c.duration_seconds.unwrap_or(0.0),
            samples: 1,
            detail: format!("cycle {}", c.cycle_id),
        });
    }
    if c.succeeded && c.patterns_discovered > 0 {
        out.push(Reading {
            workspace: Some(c.workspace),
            rule: PATTERNS_DISCOVERED,
            subject: String::new(),
            value: f64::from(c.patterns_discovered),
            samples: 1,
            detail: format!("cycle {}", c.cycle_id),
        });
    }
}

/// Readings of `pattern_confidence_low`: for every confirmed pattern, the
/// cycles in a row it missed significance (`misses`: 0 while it is still
/// found at the lifecycle's level); a retired pattern reads 0 so an open
/// alert about it resolves.
pub fn pattern_readings(ws: WorkspaceId, patterns: &[StoredPattern], out: &mut Vec<Reading>) {
    use crate::learner::cycle::PatternStatus;
    for p in patterns {
        let value = match p.status {
            PatternStatus::Confirmed => f64::from(p.misses),
            _ => 0.0,
        };
        out.push(Reading {
            workspace: Some(ws),
            rule: PATTERN_CONFIDENCE_LOW,
            subject: p.id.to_string(),
            value,
            samples: p.support,
            detail: format!("{} (q = {:.3}, support {})", p.key, p.q_value, p.support),
        });
    }
}

/// Reading of `database_errors`: consecutive failed probes (0 when the last
/// probe succeeded).
pub fn probe_reading(failed_in_a_row: u64, last_error: Option<&str>) -> Reading {
    Reading {
        workspace: None,
        rule: DATABASE_ERRORS,
        subject: String::new(),
        value: failed_in_a_row as f64,
        samples: 1,
        detail: last_error.unwrap_or_default().to_owned(),
    }
}

/// One line for a person: what breached, by how much, on what evidence.
pub fn summary(spec: &RuleSpec, r: &Reading) -> String {
    let tail = if r.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", r.detail)
    };
    match spec.name {
        AGENT_TRUST_LOW => {
            let (v, t) = apart(r.value, spec.threshold);
            format!(
                "agent {}: trust {v} < {t} after {} observations",
                r.subject, r.samples
            )
        }
        AGENT_APPROVAL_LOW => {
            let (v, t) = apart(r.value, spec.threshold);
            format!(
                "agent {}: approval rate {v} < {t} over {} outcomes",
                r.subject, r.samples
            )
        }
        AGENTS_DECLINING => format!(
            "{} agents declining at once (more than {})",
            r.value, spec.threshold
        ),
        LEARNING_CYCLE_FAILED => format!("learning cycle failed{tail}"),
        LEARNING_CYCLE_SLOW => format!(
            "learning cycle took {:.0} s (> {:.0} s){tail}",
            r.value, spec.threshold
        ),
        PATTERN_CONFIDENCE_LOW => format!(
            "confirmed pattern not significant in its last {} cycle(s){tail}",
            r.value
        ),
        DATABASE_ERRORS => format!(
            "store unreachable: {} probes failed in a row{tail}",
            r.value
        ),
        LEARNING_CYCLE_COMPLETED => format!("learning cycle completed in {:.1} s{tail}", r.value),
        PATTERNS_DISCOVERED => format!("{} new patterns discovered{tail}", r.value),
        TRUST_UPDATED => format!("trust updated{tail}"),
        _ => format!("{}: {}{tail}", spec.name, r.value),
    }
}

/// `value` and `threshold` with two decimals, or as many more (up to six)
/// as it takes for them to read differently: a breach never reads
/// "0.30 < 0.30".
fn apart(value: f64, threshold: f64) -> (String, String) {
    let mut digits = 2;
    while digits < 6 && format!("{value:.digits$}") == format!("{threshold:.digits$}") {
        digits += 1;
    }
    (format!("{value:.digits$}"), format!("{threshold:.digits$}"))
}

/// State of one fingerprint.
#[derive(Debug, Clone, Default)]
struct Track {
    /// When the breach began (pending or firing).
    since: Option<DateTime<Utc>>,
    /// The open alert.
    firing: Option<Alert>,
}

/// The state machine over every fingerprint this node evaluates: at most one
/// firing alert per fingerprint.
#[derive(Debug, Default)]
pub struct AlertBook {
    tracks: HashMap<String, Track>,
}

impl AlertBook {
    /// Feeds one reading at `now`; returns the transition it causes, if any.
    pub fn observe(
        &mut self,
        spec: &RuleSpec,
        r: &Reading,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        if !spec.enabled || spec.one_shot {
            return None;
        }
        let fp = Alert::fingerprint_of(r.workspace, spec.name, &r.subject);
        let breach = spec.breaches(r.value, r.samples);
        let track = match self.tracks.get_mut(&fp) {
            Some(t) => t,
            None if breach => self.tracks.entry(fp.clone()).or_default(),
            None => return None,
        };
        if let Some(open) = &track.firing {
            if !spec.clears(r.value) {
                return (breach && spec.action.is_some())
                    .then(|| Transition::StillBreaching(open.clone()));
            }
            let mut done = open.clone();
            done.status = AlertStatus::Resolved;
            done.resolved_at = Some(now);
            done.value = r.value;
            self.tracks.remove(&fp);
            return Some(Transition::Resolved(done));
        }
        if !breach {
            // Pending, and the breach did not hold: start over.
            self.tracks.remove(&fp);
            return None;
        }
        let since = *track.since.get_or_insert(now);
        let held = (now - since).num_milliseconds() >= (spec.for_secs as i64) * 1000;
        if !held {
            return None;
        }
        let alert = new_alert(spec, r, since, now, AlertStatus::Firing);
        track.firing = Some(alert.clone());
        Some(Transition::Fired(alert))
    }

    /// A one-shot alert for `r`, already resolved.
    pub fn one_shot(spec: &RuleSpec, r: &Reading, now: DateTime<Utc>) -> Alert {
        let mut a = new_alert(spec, r, now, now, AlertStatus::Resolved);
        a.resolved_at = Some(now);
        a
    }

    /// Takes over an open alert (restored from the store at start, or raised
    /// by another node first): it is the fingerprint's firing alert.
    pub fn adopt(&mut self, alert: Alert) {
        let t = self.tracks.entry(alert.fingerprint.clone()).or_default();
        t.since = Some(alert.started_at);
        t.firing = Some(alert);
    }

    /// Forgets a fingerprint (its transition could not be stored: the next
    /// reading starts it again).
    pub fn forget(&mut self, fingerprint: &str) {
        self.tracks.remove(fingerprint);
    }

    /// The open alert of a fingerprint.
    pub fn firing(&self, fingerprint: &str) -> Option<&Alert> {
        self.tracks.get(fingerprint).and_then(|t| t.firing.as_ref())
    }

    /// Open alerts.
    pub fn open(&self) -> impl Iterator<Item = &Alert> {
        self.tracks.values().filter_map(|t| t.firing.as_ref())
    }

    /// Fingerprints pending or firing.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Nothing pending or firing.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

fn new_alert(
    spec: &RuleSpec,
    r: &Reading,
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
    status: AlertStatus,
) -> Alert {
    Alert {
        id: Uuid::now_v7(),
        workspace_id: r.workspace,
        rule: spec.name.to_owned(),
        severity: spec.severity,
        subject: r.subject.clone(),
        fingerprint: Alert::fingerprint_of(r.workspace, spec.name, &r.subject),
        status,
        value: r.value,
        threshold: spec.threshold,
        summary: summary(spec, r),
        action: spec.action.clone(),
        started_at,
        fired_at: now,
        resolved_at: None,
        acked_at: None,
        acked_by: None,
    }
}

/// Applies every reading to the book, collecting transitions.
pub fn evaluate(
    book: &mut AlertBook,
    rules: &RuleBook,
    readings: &[Reading],
    now: DateTime<Utc>,
    out: &mut Vec<Transition>,
) {
    for r in readings {
        if let Some(spec) = rules.enabled(r.rule) {
            out.extend(book.observe(spec, r, now));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::super::config::AlertsConfig;
    use super::*;
    use chrono::TimeDelta;

    fn book() -> RuleBook {
        AlertsConfig::default().resolve(0.3, 20).unwrap()
    }

    fn reading(rule: &'static str, value: f64, samples: u64) -> Reading {
        Reading {
            workspace: Some(WorkspaceId(Uuid::nil())),
            rule,
            subject: "a1".into(),
            value,
            samples,
            detail: String::new(),
        }
    }

    #[test]
    fn fires_once_then_holds_between_threshold_and_clear_then_resolves() {
        let rules = book();
        let spec = rules.get(AGENT_TRUST_LOW).unwrap();
        let mut b = AlertBook::default();
        let t0 = Utc::now();
        // Not enough evidence yet.
        assert_eq!(
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.1, 19), t0),
            None
        );
        let Some(Transition::Fired(a)) = b.observe(spec, &reading(AGENT_TRUST_LOW, 0.2, 20), t0)
        else {
            panic!("should fire")
        };
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.fingerprint, format!("{}/agent_trust_low/a1", Uuid::nil()));
        assert!(
            a.summary.contains("trust 0.20 < 0.30 after 20"),
            "{}",
            a.summary
        );
        // Dedup: still breaching, no second alert; the rule acts, so its
        // action is asked again (with the same alert).
        assert_eq!(
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.1, 21), t0),
            Some(Transition::StillBreaching(a.clone()))
        );
        // Hysteresis: 0.35 is above the threshold but below clear.
        assert_eq!(
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.35, 22), t0),
            None
        );
        let Some(Transition::Resolved(r)) =
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.41, 23), t0)
        else {
            panic!("should resolve")
        };
        assert_eq!((r.id, r.status), (a.id, AlertStatus::Resolved));
        assert!(b.is_empty());
        // A later breach is a new alert.
        let Some(Transition::Fired(again)) =
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.2, 30), t0)
        else {
            panic!()
        };
        assert_ne!(again.id, a.id);
    }

    #[test]
    fn for_duration_must_hold_and_resets_when_the_breach_stops() {
        let rules = book();
        let spec = rules.get(AGENT_APPROVAL_LOW).unwrap();
        assert_eq!(spec.for_secs, 300);
        let mut b = AlertBook::default();
        let t0 = Utc::now();
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        assert_eq!(
            b.observe(spec, &reading(AGENT_APPROVAL_LOW, 0.4, 30), at(0)),
            None
        );
        assert_eq!(
            b.observe(spec, &reading(AGENT_APPROVAL_LOW, 0.4, 30), at(299)),
            None
        );
        // The breach stops before 300 s: pending is dropped.
        assert_eq!(
            b.observe(spec, &reading(AGENT_APPROVAL_LOW, 0.52, 30), at(299)),
            None
        );
        assert!(b.is_empty());
        assert_eq!(
            b.observe(spec, &reading(AGENT_APPROVAL_LOW, 0.4, 30), at(300)),
            None
        );
        let fired = b.observe(spec, &reading(AGENT_APPROVAL_LOW, 0.4, 30), at(600));
        let Some(Transition::Fired(a)) = fired else {
            panic!("{fired:?}")
        };
        assert_eq!((a.started_at, a.fired_at), (at(300), at(600)));
    }

    /// Review: a trust of 0.2968 against 0.30 read "trust 0.30 < 0.30"; the
    /// summary shows as many decimals as it takes to tell them apart, and
    /// the trust summary no longer repeats its value.
    #[test]
    fn summaries_tell_value_and_threshold_apart() {
        let rules = book();
        let spec = rules.get(AGENT_TRUST_LOW).unwrap();
        let s = summary(spec, &reading(AGENT_TRUST_LOW, 0.296_763_8, 20));
        assert_eq!(s, "agent a1: trust 0.297 < 0.300 after 20 observations");
        let s = summary(spec, &reading(AGENT_TRUST_LOW, 0.21, 34));
        assert_eq!(s, "agent a1: trust 0.21 < 0.30 after 34 observations");
        let spec = rules.get(AGENT_APPROVAL_LOW).unwrap();
        let s = summary(spec, &reading(AGENT_APPROVAL_LOW, 0.4999, 20));
        assert_eq!(
            s,
            "agent a1: approval rate 0.4999 < 0.5000 over 20 outcomes"
        );
        let spec = rules.get(TRUST_UPDATED).unwrap();
        let mut r = reading(TRUST_UPDATED, 7.0, 0);
        r.detail = "7 agents' trust changed".into();
        assert_eq!(summary(spec, &r), "trust updated: 7 agents' trust changed");
    }

    #[test]
    fn adopted_alerts_are_not_fired_again() {
        let rules = book();
        let spec = rules.get(AGENT_TRUST_LOW).unwrap();
        let mut b = AlertBook::default();
        let now = Utc::now();
        let a = AlertBook::one_shot(spec, &reading(AGENT_TRUST_LOW, 0.1, 40), now);
        let mut open = a.clone();
        open.status = AlertStatus::Firing;
        b.adopt(open.clone());
        // Not fired again; its action is asked again with the adopted alert.
        assert_eq!(
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.1, 41), now),
            Some(Transition::StillBreaching(open))
        );
        assert!(matches!(
            b.observe(spec, &reading(AGENT_TRUST_LOW, 0.5, 42), now),
            Some(Transition::Resolved(r)) if r.id == a.id
        ));
    }

    #[test]
    fn cycle_rules_fire_on_failure_and_slowness_and_resolve_on_a_good_cycle() {
        let rules = book();
        let ws = WorkspaceId(Uuid::nil());
        let mut b = AlertBook::default();
        let now = Utc::now();
        let facts = |ok: bool, secs: f64| CycleFacts {
            workspace: ws,
            cycle_id: "c".into(),
            succeeded: ok,
            reason: Some("schedule".into()),
            duration_seconds: Some(secs),
            patterns_discovered: 2,
            error: (!ok).then(|| "boom".into()),
        };
        let mut readings = Vec::new();
        cycle_readings(&facts(false, 700.0), &mut readings);
        let mut out = Vec::new();
        evaluate(&mut b, &rules, &readings, now, &mut out);
        let rules_fired: Vec<_> = out
            .iter()
            .map(|t| match t {
                Transition::Fired(a) => a.rule.as_str(),
                Transition::Resolved(_) => "resolved",
                Transition::StillBreaching(_) => "still breaching",
            })
            .collect();
        assert_eq!(
            rules_fired,
            ["learning_cycle_failed", "learning_cycle_slow"]
        );
        // 500 s is between clear (480) and threshold (600): slow stays open.
        readings.clear();
        out.clear();
        cycle_readings(&facts(true, 500.0), &mut readings);
        evaluate(&mut b, &rules, &readings, now, &mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Transition::Resolved(a) if a.rule == "learning_cycle_failed"));
        let mut shots = Vec::new();
        cycle_one_shots(&facts(true, 500.0), &mut shots);
        assert_eq!(shots.len(), 2);
        let a = AlertBook::one_shot(rules.get(shots[1].rule).unwrap(), &shots[1], now);
        assert_eq!(
            (a.rule.as_str(), a.status),
            ("patterns_discovered", AlertStatus::Resolved)
        );
    }

    #[test]
    fn database_errors_page_after_sixty_seconds_of_failed_probes() {
        let rules = book();
        let spec = rules.get(DATABASE_ERRORS).unwrap();
        let mut b = AlertBook::default();
        let t0 = Utc::now();
        let mut fired = None;
        for k in 0..6 {
            let at = t0 + TimeDelta::seconds(15 * k);
            if let Some(t) = b.observe(spec, &probe_reading(k as u64 + 1, Some("refused")), at) {
                fired = Some((k, t));
                break;
            }
        }
        let (k, Transition::Fired(a)) = fired.unwrap() else {
            panic!()
        };
        assert_eq!(k, 4, "fires at the tick 60 s after the first failure");
        assert_eq!(
            (a.workspace_id, a.fingerprint.as_str()),
            (None, "node/database_errors/")
        );
        let t = b.observe(spec, &probe_reading(0, None), t0 + TimeDelta::seconds(90));
        assert!(matches!(t, Some(Transition::Resolved(_))));
    }
}
