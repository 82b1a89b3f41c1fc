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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use chrono::Utc;
    use metrics::{
        Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use uuid::Uuid;

    use super::*;

    /// Gauge values by "rule/severity", as last set.
    #[derive(Default, Clone)]
    struct Values(Arc<Mutex<HashMap<String, f64>>>);

    struct Cell(Values, String);

    impl GaugeFn for Cell {
        fn increment(&self, _: f64) {}
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.0 .0.lock().unwrap().insert(self.1.clone(), value);
        }
    }

    impl Recorder for Values {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let label = |n: &str| {
                key.labels()
                    .find(|l| l.key() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let id = format!("{}/{}", label("rule"), label("severity"));
            Gauge::from_arc(Arc::new(Cell(self.clone(), id)))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    fn alert(rule: &str, subject: &str, status: AlertStatus) -> Alert {
        let now = Utc::now();
        Alert {
            id: Uuid::now_v7(),
            workspace_id: None,
            rule: rule.into(),
            severity: Severity::Critical,
            subject: subject.into(),
            fingerprint: Alert::fingerprint_of(None, rule, subject),
            status,
            value: 0.1,
            threshold: 0.3,
            summary: String::new(),
            action: None,
            started_at: now,
            fired_at: now,
            resolved_at: None,
            acked_at: None,
            acked_by: None,
        }
    }

    #[test]
    fn counts_firing_alerts_per_rule_and_zeroes_a_rule_that_stopped() {
        let values = Values::default();
        let key = "gauge_test_rule/critical".to_owned();
        metrics::with_local_recorder(&values, || {
            publish_firing(&[
                alert("gauge_test_rule", "a1", AlertStatus::Firing),
                alert("gauge_test_rule", "a2", AlertStatus::Firing),
                alert("gauge_test_rule", "a3", AlertStatus::Resolved),
            ]);
        });
        assert_eq!(values.0.lock().unwrap().get(&key), Some(&2.0));
        metrics::with_local_recorder(&values, || publish_firing(&[]));
        assert_eq!(values.0.lock().unwrap().get(&key), Some(&0.0));
    }
}
