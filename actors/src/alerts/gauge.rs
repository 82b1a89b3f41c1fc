//! The `swarmwise_alerts_firing{severity,rule}` gauge: how many alerts are
//! firing per severity and rule. The `Alerter` calls [`publish_firing`] with
//! every alert it holds firing after each evaluation; rules that stopped
//! firing are set to 0 rather than left at their last value. Rule names
//! come from the operator's `[alerts.rules]`, a closed set, so the series
//! count is bounded by the rule catalogue (never by subjects or workspaces).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Alert, AlertStatus, Severity};

/// (severity, rule) pairs published before, so that a pair no longer
/// firing is set to 0 (the recorder keeps a gauge at its last value).
static PUBLISHED: Mutex<BTreeSet<(Severity, String)>> = Mutex::new(BTreeSet::new());

/// Sets `swarmwise_alerts_firing` from the alerts currently firing (alerts
/// of other statuses in `alerts` are ignored), and 0 for every (severity,
/// rule) published earlier that has none firing now.
pub fn publish_firing<'a>(alerts: impl IntoIterator<Item = &'a Alert>) {
    let mut counts: BTreeMap<(Severity, String), u64> = BTreeMap::new();
    for a in alerts {
        if a.status == AlertStatus::Firing {
            *counts.entry((a.severity, a.rule.clone())).or_default() += 1;
        }
    }
    let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
    for key in published.iter() {
        if !counts.contains_key(key) {
            set(key, 0);
        }
    }
    for (key, n) in &counts {
        set(key, *n);
        published.insert(key.clone());
    }
}

fn set((severity, rule): &(Severity, String), n: u64) {
    metrics::gauge!("swarmwise_alerts_firing", "severity" => severity.as_str(), "rule" => rule.clone())
        .set(n as f64);
}
