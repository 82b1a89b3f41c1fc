//! Charts drawn on the server as inline SVG: no chart library, no script,
//! nothing to load. Every chart has `role="img"` and an `aria-label` that
//! says what it shows in words, and every text it carries is escaped with
//! [`esc`] (agent names are tenant-chosen).
//!
//! No `style` attributes: the pages' Content-Security-Policy refuses inline
//! styles, so colours are presentation attributes (`fill`, `stroke`).

use std::fmt::Write as _;

/// Red, yellow, green with enough contrast on white for a bar.
pub const RED: &str = "#c62828";
/// See [`RED`].
pub const YELLOW: &str = "#b7791f";
/// See [`RED`].
pub const GREEN: &str = "#2e7d32";
const INK: &str = "#1f2933";
const GRID: &str = "#cbd2d9";
const ACCENT: &str = "#1d4ed8";
const TRACK: &str = "#e4e7eb";
const BAND: &str = "#93c5fd";

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour band of a trust value: `(colour, word)`.
pub fn band(trust: f64, red_below: f64, green_from: f64) -> (&'static str, &'static str) {
    if trust < red_below {
        (RED, "low")
    } else if trust >= green_from {
        (GREEN, "high")
    } else {
        (YELLOW, "medium")
    }
}

/// A horizontal bar of `value` in [0, 1], 120×12 px, in `colour`.
pub fn bar(value: f64, colour: &str, label: &str) -> String {
    let v = if value.is_finite() {
        value.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!(
        r#"<svg class="bar" width="120" height="12" viewBox="0 0 120 12" role="img" aria-label="{}"><rect width="120" height="12" rx="2" fill="{TRACK}"/><rect width="{:.1}" height="12" rx="2" fill="{colour}"/></svg>"#,
        esc(label),
        v * 120.0
    )
}

/// An interval `[low, high]` with a point, all in [0, 1], 120×12 px.
pub fn interval(point: f64, low: f64, high: f64, label: &str) -> String {
    let x = |v: f64| {
        (if v.is_finite() {
            v.clamp(0.0, 1.0)
        } else {
            0.0
        }) * 120.0
    };
    format!(
        r#"<svg class="bar" width="120" height="12" viewBox="0 0 120 12" role="img" aria-label="{}"><rect width="120" height="12" rx="2" fill="{TRACK}"/><rect x="{:.1}" width="{:.1}" height="12" fill="{BAND}"/><rect x="{:.1}" width="3" height="12" fill="{ACCENT}"/></svg>"#,
        esc(label),
        x(low),
        (x(high) - x(low)).max(1.0),
        (x(point) - 1.5).max(0.0)
    )
}

/// One series of a line or bar chart.
pub struct Series<'a> {
    /// Legend and description.
    pub name: &'a str,
    /// (x label, value); `None` is a gap.
    pub points: &'a [(String, Option<f64>)],
}

/// A line chart of `series` on a shared y-axis `[0, y_max]`, oldest left.
/// `caption` becomes the `aria-label`; a chart without points says so.
pub fn line_chart(caption: &str, y_max: f64, series: &[Series<'_>], bars: bool) -> String {
    let (w, h, left, bottom, top) = (640.0_f64, 200.0_f64, 40.0, 24.0, 8.0);
    let n = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}" preserveAspectRatio="xMinYMin meet">"#,
        esc(caption)
    );
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - top;
    let y_max = if y_max > 0.0 && y_max.is_finite() {
        y_max
    } else {
        1.0
    };
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{GRID}" stroke-width="1"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end" fill="{INK}">{}</text>"#,
            w - 8.0,
            left - 4.0,
            y + 3.0,
            fmt_tick(v)
        );
    }
    if n == 0 {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="13" text-anchor="middle" fill="{INK}">No data yet</text></svg>"#,
            w / 2.0,
            h / 2.0
        );
        return out;
    }
    let step = plot_w / n as f64;
    let colours = [ACCENT, GREEN, YELLOW, RED];
    for (k, s) in series.iter().enumerate() {
        let colour = colours.get(k % colours.len()).copied().unwrap_or(ACCENT);
        if bars {
            for (i, (_, v)) in s.points.iter().enumerate() {
                if let Some(v) = v {
                    let bh = plot_h * (v / y_max).clamp(0.0, 1.0);
                    let _ = write!(
                        out,
                        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/>"#,
                        left + step * i as f64 + step * 0.15,
                        top + plot_h - bh,
                        (step * 0.7).max(1.0)
                    );
                }
            }
        } else {
            let mut d = String::new();
            let mut pen_up = true;
            for (i, (_, v)) in s.points.iter().enumerate() {
                match v {
                    Some(v) => {
                        let x = left + step * i as f64 + step / 2.0;
                        let y = top + plot_h - plot_h * (v / y_max).clamp(0.0, 1.0);
                        let _ = write!(d, "{}{x:.1},{y:.1} ", if pen_up { "M" } else { "L" });
                        let _ = write!(
                            out,
                            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#
                        );
                        pen_up = false;
                    }
                    None => pen_up = true,
                }
            }
            if !d.is_empty() {
                let _ = write!(
                    out,
                    r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                    d.trim_end()
                );
            }
        }
    }
    // First and last x labels only: they stay readable at phone width.
    if let Some(first) = series.first() {
        if let (Some((a, _)), Some((b, _))) = (first.points.first(), first.points.last()) {
            let _ = write!(
                out,
                r#"<text x="{left}" y="{}" font-size="10" fill="{INK}">{}</text><text x="{}" y="{}" font-size="10" text-anchor="end" fill="{INK}">{}</text>"#,
                h - 6.0,
                esc(a),
                w - 8.0,
                h - 6.0,
                esc(b)
            );
        }
    }
    out.push_str("</svg>");
    out
}

fn fmt_tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The reliability diagram: per confidence bin, observed approval rate
/// against mean stated confidence, with the diagonal of perfect calibration.
/// `bins` are (mean confidence, observed rate, count).
pub fn reliability(bins: &[(f64, f64, u64)]) -> String {
    let (size, pad) = (240.0_f64, 30.0_f64);
    let plot = size - 2.0 * pad;
    let mut out = format!(
        r#"<svg class="chart square" viewBox="0 0 {size} {size}" role="img" aria-label="Reliability diagram: observed approval rate against stated confidence, {} bins; the diagonal is perfect calibration">"#,
        bins.len()
    );
    let _ = write!(
        out,
        r#"<rect x="{pad}" y="{pad}" width="{plot}" height="{plot}" fill="none" stroke="{GRID}"/><line x1="{pad}" y1="{}" x2="{}" y2="{pad}" stroke="{GRID}" stroke-dasharray="4 3"/><text x="{}" y="{}" font-size="10" text-anchor="middle" fill="{INK}">stated confidence</text><text x="10" y="{}" font-size="10" text-anchor="middle" fill="{INK}" transform="rotate(-90 10 {})">observed approval</text>"#,
        pad + plot,
        pad + plot,
        size / 2.0,
        size - 8.0,
        size / 2.0,
        size / 2.0
    );
    let max_count = bins.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    for (conf, rate, count) in bins {
        let x = pad + plot * conf.clamp(0.0, 1.0);
        let y = pad + plot - plot * rate.clamp(0.0, 1.0);
        let r = 3.0 + 5.0 * (*count as f64 / max_count).sqrt();
        let _ = write!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{ACCENT}" fill-opacity="0.7"><title>confidence {conf:.2}: approved {:.0}% of {count}</title></circle>"#,
            rate * 100.0
        );
    }
    if bins.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="{INK}">No evaluated recommendations yet</text>"#,
            size / 2.0,
            size / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

/// One agent's bar in a fan-out timeline.
pub struct Lane {
    /// Agent id (escaped here).
    pub agent: String,
    /// Latency in ms (`None`: unknown).
    pub latency_ms: Option<i64>,
    /// Verdict or status word, drawn beside the bar.
    pub verdict: String,
    /// Bar colour.
    pub colour: &'static str,
}

/// A stage's fan-out: one bar per agent from the stage start to its answer,
/// and the barrier (the last answer the stage waited for) as a dashed line.
pub fn fan_out(stage: &str, lanes: &[Lane]) -> String {
    let (w, row, left, right) = (640.0_f64, 22.0_f64, 150.0_f64, 110.0_f64);
    let h = row * lanes.len() as f64 + 24.0;
    let max = lanes
        .iter()
        .filter_map(|l| l.latency_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot = w - left - right;
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="Fan-out of stage {}: {} agents, barrier after {max:.0} ms" preserveAspectRatio="xMinYMin meet">"#,
        esc(stage),
        lanes.len()
    );
    for (i, l) in lanes.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let width = l.latency_ms.map_or(0.0, |ms| plot * ms as f64 / max);
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="{INK}">{}</text><rect x="{left}" y="{y:.1}" width="{:.1}" height="14" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{INK}">{} {}</text>"#,
            left - 6.0,
            y + 11.0,
            esc(&l.agent),
            width.max(1.0),
            l.colour,
            left + width + 6.0,
            y + 11.0,
            l.latency_ms
                .map_or("?".to_string(), |ms| format!("{ms} ms")),
            esc(&l.verdict)
        );
    }
    let bx = left + plot;
    let _ = write!(
        out,
        r#"<line x1="{bx:.1}" x2="{bx:.1}" y1="0" y2="{:.1}" stroke="{INK}" stroke-dasharray="4 3"/><text x="{bx:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="{INK}">barrier</text></svg>"#,
        h - 14.0,
        h - 2.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_charts_is_escaped() {
        let lanes = [Lane {
            agent: "<script>alert(1)</script>".into(),
            latency_ms: Some(5),
            verdict: "\"x\"".into(),
            colour: GREEN,
        }];
        let svg = fan_out("s<", &lanes);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("&quot;x&quot;"));
    }

    #[test]
    fn bands_follow_thresholds() {
        assert_eq!(band(0.39, 0.4, 0.7).1, "low");
        assert_eq!(band(0.4, 0.4, 0.7).1, "medium");
        assert_eq!(band(0.7, 0.4, 0.7).1, "high");
    }

    #[test]
    fn empty_charts_say_so() {
        assert!(line_chart("x", 1.0, &[], false).contains("No data yet"));
        assert!(reliability(&[]).contains("No evaluated"));
    }
}
