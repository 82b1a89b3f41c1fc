//! Helpers shared by the HTTP benchmarks: percentiles, formatting and an
//! open-loop load generator (requests start on a fixed schedule, so a slow
//! server shows as latency, not as a lower request rate).

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

/// The `p` quantile of sorted values (nearest rank).
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// (p50, p99) of seconds.
pub fn summary(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (pct(&v, 0.5), pct(&v, 0.99))
}

/// Seconds as ns / µs / ms.
pub fn us(x: f64) -> String {
    if x < 1e-6 {
        format!("{:.0} ns", x * 1e9)
    } else if x < 1e-3 {
        format!("{:.1} µs", x * 1e6)
    } else {
        format!("{:.2} ms", x * 1e3)
    }
}

/// Sends `rate` requests per second for `secs` seconds (POST `body` when
/// given, else GET) and returns each request's latency from its scheduled
/// start, in seconds, and the number of non-2xx answers or errors.
pub async fn load(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: Option<serde_json::Value>,
    rate: u64,
    secs: u64,
) -> (Vec<f64>, usize) {
    let total = (rate * secs) as usize;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let at = start + gap * i as u32;
        let client = client.clone();
        let url = url.to_owned();
        let key = key.to_owned();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let req = match body {
                Some(b) => client.post(&url).bearer_auth(&key).json(&b),
                None => client.get(&url).bearer_auth(&key),
            };
            let ok = req
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            (at.elapsed().as_secs_f64(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for h in handles {
        let (l, ok) = h.await.unwrap();
        lat.push(l);
        errors += usize::from(!ok);
    }
    (lat, errors)
}
