//! `[alerts]`: the rule catalogue and its knobs. Rule names are fixed
//! (docs/alerts.md, `config/prometheus/alerts.yml` and docs/runbooks.md use
//! them); each `[alerts.rules.NAME]` table overrides the defaults of one rule.
//!
//! `agent_trust_low` takes its threshold and minimum evidence from the
//! shipped keys `agents.disable_below_trust` and `agents.disable_min_samples`
//! (they keep meaning "below this trust, after this many observations, the
//! agent is taken out of fan-outs"); its own `threshold`/`min_samples` may be
//! left out, and if given must equal them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Severity;

/// The names of every rule, in catalogue order.
pub const RULES: [&str; 10] = [
    LEARNING_CYCLE_FAILED,
    AGENT_TRUST_LOW,
    DATABASE_ERRORS,
    AGENT_APPROVAL_LOW,
    LEARNING_CYCLE_SLOW,
    PATTERN_CONFIDENCE_LOW,
    AGENTS_DECLINING,
    LEARNING_CYCLE_COMPLETED,
    PATTERNS_DISCOVERED,
    TRUST_UPDATED,
];

/// Critical: a workspace's learning cycle failed; resolves when a later one succeeds.
pub const LEARNING_CYCLE_FAILED: &str = "learning_cycle_failed";
/// Critical: an agent's overall trust fell below `agents.disable_below_trust`
/// after `agents.disable_min_samples` observations; quarantines it.
pub const AGENT_TRUST_LOW: &str = "agent_trust_low";
/// Critical, node-level: the store probe has failed for `for_secs`.
pub const DATABASE_ERRORS: &str = "database_errors";
/// Warning: an agent's approval rate is below the threshold.
pub const AGENT_APPROVAL_LOW: &str = "agent_approval_low";
/// Warning: a learning cycle took longer than the threshold (seconds).
pub const LEARNING_CYCLE_SLOW: &str = "learning_cycle_slow";
/// Warning: a confirmed pattern missed significance in the latest cycle.
pub const PATTERN_CONFIDENCE_LOW: &str = "pattern_confidence_low";
/// Warning: more than `threshold` agents of a workspace are declining.
pub const AGENTS_DECLINING: &str = "agents_declining";
/// Info: a scheduled learning cycle completed.
pub const LEARNING_CYCLE_COMPLETED: &str = "learning_cycle_completed";
/// Info: a cycle discovered new patterns.
pub const PATTERNS_DISCOVERED: &str = "patterns_discovered";
/// Info: agents' trust changed (one summary per `min_interval_secs`).
pub const TRUST_UPDATED: &str = "trust_updated";

/// The action of `agent_trust_low`: quarantine the agent (the admission
/// controller).
pub const ACTION_QUARANTINE: &str = "quarantine";

/// `action = "none"`: the rule fires and notifies but acts on nothing (the
/// rollback switch of automatic quarantine).
pub const ACTION_NONE: &str = "none";

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate rules at all (false: no alert is raised, nothing is quarantined
    /// by a rule; the API still lists stored alerts).
    pub enabled: bool,
    /// Seconds between evaluations of the rules on the live state (trust
    /// rules also run at once on every trust update).
    pub evaluate_every_secs: u64,
    /// Largest page of `GET /api/v1/alerts` and `swarmwise alerts`.
    pub max_alerts_listed: u32,
    /// Longest silence, in seconds.
    pub max_silence_secs: u64,
    /// Active or future silences one workspace may hold.
    pub max_silences_per_workspace: u32,
    /// Days a resolved alert is kept (0 = forever).
    pub retention_days: u32,
    /// One table per rule.
    pub rules: BTreeMap<String, RuleConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluate_every_secs: 15,
            max_alerts_listed: 500,
            max_silence_secs: 30 * 24 * 3600,
            max_silences_per_workspace: 100,
            retention_days: 30,
            rules: default_rules(),
        }
    }
}

/// `[alerts.rules.NAME]`: one rule's knobs. Which knobs a rule reads is in
/// its section of docs/alerts.md; the others are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Evaluate this rule.
    pub enabled: bool,
    /// Its severity (routes notifications).
    pub severity: Severity,
    /// The value that breaches (unit per rule: trust or rate in [0, 1],
    /// seconds, a count). `None` for `agent_trust_low` = `agents.disable_below_trust`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Hysteresis: a firing alert resolves only when the value crosses this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear: Option<f64>,
    /// Seconds the breach must hold (checked on evaluation ticks) before firing.
    pub for_secs: u64,
    /// Least evidence (outcomes, observations) before the rule may fire.
    /// `None` for `agent_trust_low` = `agents.disable_min_samples`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// `quarantine` (only for `agent_trust_low`), or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Notify when the alert resolves too (not only when it fires).
    pub notify_resolved: bool,
    /// One-shot rules: at most one alert per workspace within this many seconds.
    pub min_interval_secs: u64,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Warning,
            threshold: None,
            clear: None,
            for_secs: 0,
            min_samples: None,
            action: None,
            notify_resolved: true,
            min_interval_secs: 0,
        }
    }
}

fn rule(severity: Severity, threshold: Option<f64>, clear: Option<f64>) -> RuleConfig {
    RuleConfig {
        severity,
        threshold,
        clear,
        notify_resolved: severity != Severity::Info,
        ..RuleConfig::default()
    }
}

/// The catalogue's defaults (docs/alerts.md).
pub fn default_rules() -> BTreeMap<String, RuleConfig> {
    use Severity::{Critical, Info, Warning};
    let mut m = BTreeMap::new();
    m.insert(
        LEARNING_CYCLE_FAILED.into(),
        rule(Critical, Some(0.0), Some(0.0)),
    );
    m.insert(
        AGENT_TRUST_LOW.into(),
        RuleConfig {
            action: Some(ACTION_QUARANTINE.into()),
            ..rule(Critical, None, Some(0.4))
        },
    );
    m.insert(
        DATABASE_ERRORS.into(),
        RuleConfig {
            for_secs: 60,
            ..rule(Critical, Some(0.0), Some(0.0))
        },
    );
    m.insert(
        AGENT_APPROVAL_LOW.into(),
        RuleConfig {
            for_secs: 300,
            min_samples: Some(20),
            ..rule(Warning, Some(0.5), Some(0.55))
        },
    );
    m.insert(
        LEARNING_CYCLE_SLOW.into(),
        rule(Warning, Some(600.0), Some(480.0)),
    );
    m.insert(
        PATTERN_CONFIDENCE_LOW.into(),
        rule(Warning, Some(0.0), Some(0.0)),
    );
    m.insert(AGENTS_DECLINING.into(), rule(Warning, Some(2.0), Some(1.0)));
    m.insert(LEARNING_CYCLE_COMPLETED.into(), rule(Info, None, None));
    m.insert(PATTERNS_DISCOVERED.into(), rule(Info, Some(0.0), None));
    m.insert(
        TRUST_UPDATED.into(),
        RuleConfig {
            min_interval_secs: 3600,
            ..rule(Info, None, None)
        },
    );
    m
}

/// Whether a value breaches by falling below or by rising above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Breach: value < threshold; clear: value >= clear.
    Below,
    /// Breach: value > threshold; clear: value <= clear.
    Above,
}

/// A rule resolved against the whole config: every number known.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Its name.
    pub name: &'static str,
    /// Evaluated at all.
    pub enabled: bool,
    /// Severity.
    pub severity: Severity,
    /// Breach threshold.
    pub threshold: f64,
    /// Clear threshold (hysteresis).
    pub clear: f64,
    /// How the value compares.
    pub direction: Direction,
    /// Seconds the breach must hold.
    pub for_secs: u64,
    /// Least evidence to fire.
    pub min_samples: u64,
    /// `quarantine` or none.
    pub action: Option<String>,
    /// Notify on resolve.
    pub notify_resolved: bool,
    /// One-shot: fired and resolved at once.
    pub one_shot: bool,
    /// One-shot: least seconds between two alerts of a workspace.
    pub min_interval_secs: u64,
}

impl RuleSpec {
    /// Whether `value` with `samples` of evidence breaches.
    pub fn breaches(&self, value: f64, samples: u64) -> bool {
        samples >= self.min_samples
            && match self.direction {
                Direction::Below => value < self.threshold,
                Direction::Above => value > self.threshold,
            }
    }

    /// Whether `value` has crossed the clear threshold.
    pub fn clears(&self, value: f64) -> bool {
        match self.direction {
            Direction::Below => value >= self.clear,
            Direction::Above => value <= self.clear,
        }
    }
}

/// Every rule resolved, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleBook {
    specs: BTreeMap<&'static str, RuleSpec>,
}

impl RuleBook {
    /// The spec of rule `name` (every catalogue rule has one).
    pub fn get(&self, name: &str) -> Option<&RuleSpec> {
        self.specs.get(name)
    }

    /// Enabled rule `name`, if it is.
    pub fn enabled(&self, name: &str) -> Option<&RuleSpec> {
        self.specs.get(name).filter(|s| s.enabled)
    }

    /// Every spec.
    pub fn iter(&self) -> impl Iterator<Item = &RuleSpec> {
        self.specs.values()
    }
}

impl AlertsConfig {
    /// Checks every key; the error is (dotted key under `alerts.` or
    /// `agents.`, message saying what to do).
    pub fn validate(
        &self,
        disable_below_trust: f64,
        disable_min_samples: u64,
    ) -> Result<(), (String, String)> {
        self.resolve(disable_below_trust, disable_min_samples)
            .map(|_| ())
    }

    /// Resolves every rule against the config (validating it).
    /// `disable_below_trust`, `disable_min_samples`: `[agents]`'s keys,
    /// which are `agent_trust_low`'s threshold and evidence.
    pub fn resolve(
        &self,
        disable_below_trust: f64,
        disable_min_samples: u64,
    ) -> Result<RuleBook, (String, String)> {
        let key = |k: &str| format!("alerts.{k}");
        if !(1..=3600).contains(&self.evaluate_every_secs) {
            return Err((
                key("evaluate_every_secs"),
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        if !(1..=10_000).contains(&self.max_alerts_listed) {
            return Err((
                key("max_alerts_listed"),
                "must be between 1 and 10000".into(),
            ));
        }
        if !(60..=366 * 24 * 3600).contains(&self.max_silence_secs) {
            return Err((
                key("max_silence_secs"),
                "must be between 60 (a minute) and 31622400 (a year)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.max_silences_per_workspace) {
            return Err((
                key("max_silences_per_workspace"),
                "must be between 1 and 10000".into(),
            ));
        }
        for name in self.rules.keys() {
            if !RULES.contains(&name.as_str()) {
                return Err((
                    format!("alerts.rules.{name}"),
                    format!("unknown rule; the rules are {}", RULES.join(", ")),
                ));
            }
        }
        let defaults = default_rules();
        let mut specs = BTreeMap::new();
        for name in RULES {
            let Some(c) = self.rules.get(name).or_else(|| defaults.get(name)) else {
                continue;
            };
            let d = defaults.get(name).cloned().unwrap_or_default();
            let k = |f: &str| format!("alerts.rules.{name}.{f}");
            let (direction, one_shot) = match name {
                AGENT_TRUST_LOW | AGENT_APPROVAL_LOW => (Direction::Below, false),
                LEARNING_CYCLE_COMPLETED | PATTERNS_DISCOVERED | TRUST_UPDATED => {
                    (Direction::Above, true)
                }
                _ => (Direction::Above, false),
            };
            let (threshold, min_samples) = if name == AGENT_TRUST_LOW {
                if let Some(t) = c.threshold {
                    if (t - disable_below_trust).abs() > 1e-12 {
                        return Err((k("threshold"), format!("{t} differs from agents.disable_below_trust ({disable_below_trust}), which this rule uses; remove this key and set agents.disable_below_trust")));
                    }
                }
                if let Some(n) = c.min_samples {
                    if n != disable_min_samples {
                        return Err((k("min_samples"), format!("{n} differs from agents.disable_min_samples ({disable_min_samples}), which this rule uses; remove this key and set agents.disable_min_samples")));
                    }
                }
                (disable_below_trust, disable_min_samples)
            } else {
                (
                    c.threshold.or(d.threshold).unwrap_or(0.0),
                    c.min_samples.or(d.min_samples).unwrap_or(0),
                )
            };
            let clear = c.clear.or(d.clear).unwrap_or(threshold);
            if !threshold.is_finite() || !clear.is_finite() {
                return Err((k("threshold"), "must be a finite number".into()));
            }
            if matches!(name, AGENT_TRUST_LOW | AGENT_APPROVAL_LOW)
                && !((0.0..=1.0).contains(&threshold) && (0.0..=1.0).contains(&clear))
            {
                return Err((
                    k("clear"),
                    "threshold and clear are a trust or rate: both in [0, 1]".into(),
                ));
            }
            if !one_shot {
                let ok = match direction {
                    Direction::Below => clear >= threshold,
                    Direction::Above => clear <= threshold,
                };
                if !ok {
                    return Err((k("clear"), format!("{clear} is on the breaching side of threshold {threshold}: a rule that fires below its threshold clears at or above it (and the other way round)")));
                }
            }
            let action = match c.action.as_deref() {
                None | Some(ACTION_NONE) => None,
                Some(a) if a == ACTION_QUARANTINE && name == AGENT_TRUST_LOW => Some(a.to_owned()),
                Some(a) => {
                    return Err((k("action"), format!("{a:?}: the actions are \"quarantine\" (on agent_trust_low only) and \"none\"; use one of them or remove the key")));
                }
            };
            if c.for_secs > 7 * 24 * 3600 {
                return Err((k("for_secs"), "must be at most 604800 (a week)".into()));
            }
            if one_shot && c.min_interval_secs > 7 * 24 * 3600 {
                return Err((
                    k("min_interval_secs"),
                    "must be at most 604800 (a week)".into(),
                ));
            }
            specs.insert(
                name,
                RuleSpec {
                    name,
                    enabled: c.enabled,
                    severity: c.severity,
                    threshold,
                    clear,
                    direction,
                    for_secs: c.for_secs,
                    min_samples,
                    action,
                    notify_resolved: c.notify_resolved,
                    one_shot,
                    min_interval_secs: c.min_interval_secs,
                },
            );
        }
        Ok(RuleBook { specs })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn defaults_resolve_and_trust_low_follows_the_agents_keys() {
        let book = AlertsConfig::default().resolve(0.3, 20).unwrap();
        let t = book.get(AGENT_TRUST_LOW).unwrap();
        assert_eq!((t.threshold, t.clear, t.min_samples), (0.3, 0.4, 20));
        assert_eq!(t.action.as_deref(), Some("quarantine"));
        let book = AlertsConfig::default().resolve(0.25, 30).unwrap();
        let t = book.get(AGENT_TRUST_LOW).unwrap();
        assert_eq!((t.threshold, t.min_samples), (0.25, 30));
        assert_eq!(book.iter().count(), 10);
        assert!(book.get(TRUST_UPDATED).unwrap().one_shot);
        assert_eq!(book.get(DATABASE_ERRORS).unwrap().for_secs, 60);
    }

    #[test]
    fn action_none_turns_the_quarantine_off() {
        let mut c = AlertsConfig::default();
        c.rules.get_mut(AGENT_TRUST_LOW).unwrap().action = Some(ACTION_NONE.into());
        let book = c.resolve(0.3, 20).unwrap();
        assert_eq!(book.get(AGENT_TRUST_LOW).unwrap().action, None);
        let book = AlertsConfig::default().resolve(0.3, 20).unwrap();
        assert_eq!(
            book.get(AGENT_TRUST_LOW).unwrap().action.as_deref(),
            Some(ACTION_QUARANTINE)
        );
        let mut c = AlertsConfig::default();
        c.rules.get_mut(AGENT_TRUST_LOW).unwrap().action = Some("disable".into());
        assert_eq!(
            c.validate(0.3, 20).unwrap_err().0,
            "alerts.rules.agent_trust_low.action"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = AlertsConfig::default();
        c.rules.insert("nope".into(), RuleConfig::default());
        assert_eq!(c.validate(0.3, 20).unwrap_err().0, "alerts.rules.nope");
        let mut c = AlertsConfig::default();
        c.rules.get_mut(AGENT_TRUST_LOW).unwrap().threshold = Some(0.5);
        assert_eq!(
            c.validate(0.3, 20).unwrap_err().0,
            "alerts.rules.agent_trust_low.threshold"
        );
        let mut c = AlertsConfig::default();
        c.rules.get_mut(AGENT_APPROVAL_LOW).unwrap().clear = Some(0.4);
        assert_eq!(
            c.validate(0.3, 20).unwrap_err().0,
            "alerts.rules.agent_approval_low.clear"
        );
        let mut c = AlertsConfig::default();
        c.rules.get_mut(AGENTS_DECLINING).unwrap().action = Some("quarantine".into());
        assert_eq!(
            c.validate(0.3, 20).unwrap_err().0,
            "alerts.rules.agents_declining.action"
        );
        let c = AlertsConfig {
            evaluate_every_secs: 0,
            ..AlertsConfig::default()
        };
        assert_eq!(
            c.validate(0.3, 20).unwrap_err().0,
            "alerts.evaluate_every_secs"
        );
    }
}
