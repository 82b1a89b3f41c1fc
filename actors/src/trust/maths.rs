//! Pure statistics used by trust: no clock, no I/O, data in and data out.
//!
//! Formulas and sources are in `docs/trust.md`; property tests live in
//! `trust/state/` (cards, cells, workspace), which folds samples with these
//! functions.

/// Wilson score interval lower bound for `successes` out of `n` at normal
/// quantile `z` (1.96 for 95%). Zero when `n` is zero.
pub fn wilson_lower(successes: f64, n: f64, z: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    let p = (successes / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).clamp(0.0, 1.0)
}

/// Wilson score interval (lower, upper) for `successes` of `n`.
pub fn wilson_interval(successes: f64, n: f64, z: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let lower = wilson_lower(successes, n, z);
    let upper = 1.0 - wilson_lower(n - successes, n, z);
    (lower, upper.clamp(0.0, 1.0))
}

/// Complementary error function (Numerical Recipes `erfcc`, |error| < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Upper tail of the standard normal: P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Expected calibration error with `bins` equal-mass bins over
/// (confidence, outcome) pairs, plus the Brier score. Empty input gives
/// (0, 0).
pub fn calibration_error(pairs: &[(f64, f64)], bins: usize) -> (f64, f64) {
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let n = pairs.len();
    let brier = pairs.iter().map(|(c, y)| (c - y) * (c - y)).sum::<f64>() / n as f64;
    let mut sorted: Vec<(f64, f64)> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bins = bins.clamp(1, n);
    let mut ece = 0.0;
    for b in 0..bins {
        let lo = b * n / bins;
        let hi = (b + 1) * n / bins;
        let Some(chunk) = sorted.get(lo..hi) else {
            continue;
        };
        if chunk.is_empty() {
            continue;
        }
        let len = chunk.len() as f64;
        let mean_c = chunk.iter().map(|p| p.0).sum::<f64>() / len;
        let mean_y = chunk.iter().map(|p| p.1).sum::<f64>() / len;
        ece += len / n as f64 * (mean_c - mean_y).abs();
    }
    (ece, brier)
}

/// Dispersion index of a 0/½/1 outcome series cut into consecutive blocks
/// of `block` (the newest full blocks; any older remainder is left out):
/// D = s²_between / (σ² / B), the variance of the block means over what
/// binomial noise alone gives them (σ² the series' variance, B the block
/// size). A steady agent has D ≈ 1 whatever its rate; an erratic or drifting
/// one D > 1 (Cochran's dispersion test, Cochran 1954). Returns (D, outcomes
/// used), or `None` with fewer than two blocks. A constant series gives 1.
pub fn dispersion_index(ys: &[f64], block: usize) -> Option<(f64, usize)> {
    let block = block.max(1);
    let k = ys.len() / block;
    if k < 2 {
        return None;
    }
    let used = ys.get(ys.len() - k * block..)?;
    let n = used.len() as f64;
    let mean = used.iter().sum::<f64>() / n;
    let var = used.iter().map(|y| (y - mean) * (y - mean)).sum::<f64>() / n;
    if var <= 1e-12 {
        return Some((1.0, used.len()));
    }
    let between = used
        .chunks(block)
        .map(|c| {
            let m = c.iter().sum::<f64>() / c.len() as f64;
            (m - mean) * (m - mean)
        })
        .sum::<f64>()
        / (k as f64 - 1.0);
    Some((between / (var / block as f64), used.len()))
}

/// Weighted geometric mean Π xᵢ^(wᵢ/Σw) of scores in [0, 1], given as
/// (weight, score) pairs; pairs with weight 0 are left out, and 0 when no
/// weight is positive. Any score at 0 with a positive weight gives 0: one
/// dimension at the bottom of the scale pulls the whole to the bottom, which
/// a weighted arithmetic mean cannot do (an always-wrong agent that answers
/// on time kept 0.3 of it). See docs/trust.md, "Overall".
pub fn weighted_geometric_mean(pairs: &[(f64, f64)]) -> f64 {
    let total: f64 = pairs.iter().filter(|(w, _)| *w > 0.0).map(|(w, _)| w).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mut log_sum = 0.0;
    for (w, x) in pairs.iter().filter(|(w, _)| *w > 0.0) {
        let x = x.clamp(0.0, 1.0);
        if x <= 0.0 {
            return 0.0;
        }
        log_sum += w / total * x.ln();
    }
    log_sum.exp().clamp(0.0, 1.0)
}

/// Spearman rank correlation of two equally long series (average ranks for
/// ties). Used by the convergence test and the benchmarks.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| {
            let x = v.get(i).copied().unwrap_or(0.0);
            let y = v.get(j).copied().unwrap_or(0.0);
            x.total_cmp(&y)
        });
        let mut out = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            let value = |k: usize| idx.get(k).and_then(|&p| v.get(p)).copied();
            while j + 1 < idx.len() && value(j + 1) == value(i) {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for k in i..=j {
                if let Some(slot) = idx.get(k).and_then(|&p| out.get_mut(p)) {
                    *slot = avg;
                }
            }
            i = j + 1;
        }
        out
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len().min(rb.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let ma = ra.iter().sum::<f64>() / n;
    let mb = rb.iter().sum::<f64>() / n;
    let mut num = 0.0;
    let mut da = 0.0;
    let mut db = 0.0;
    for (x, y) in ra.iter().zip(rb.iter()) {
        num += (x - ma) * (y - mb);
        da += (x - ma) * (x - ma);
        db += (y - mb) * (y - mb);
    }
    if da == 0.0 || db == 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn normal_tail_matches_tables() {
        // Reference values from standard normal tables.
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-6);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-5);
        assert!((normal_sf(2.326_348) - 0.01).abs() < 1e-5);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-5);
    }

    #[test]
    fn wilson_known_value() {
        // 8 of 10 at 95%: lower bound 0.4902 (Wilson 1927, as tabulated by scipy/statsmodels).
        assert!((wilson_lower(8.0, 10.0, 1.96) - 0.4902).abs() < 1e-3);
        let (lo, hi) = wilson_interval(8.0, 10.0, 1.96);
        assert!(lo < 0.8 && hi > 0.8 && hi < 1.0);
    }

    #[test]
    fn perfect_calibration_has_zero_ece() {
        let pairs: Vec<(f64, f64)> = (0..100).map(|i| (0.5, f64::from(i % 2))).collect();
        let (ece, brier) = calibration_error(&pairs, 5);
        assert!(ece < 1e-9);
        assert!((brier - 0.25).abs() < 1e-9);
        let over: Vec<(f64, f64)> = (0..100).map(|i| (0.95, f64::from(i % 2))).collect();
        assert!((calibration_error(&over, 5).0 - 0.45).abs() < 1e-9);
    }

    #[test]
    fn dispersion_of_steady_and_drifting_series() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(3);
        // Steady: D averages 1 (chi-square / df); over 200 series the mean
        // is within 0.1 of 1 (sd of one D ≈ sqrt(2/19) ≈ 0.32, of the mean ≈ 0.02).
        let mut total = 0.0;
        for _ in 0..200 {
            let ys: Vec<f64> = (0..200)
                .map(|_| f64::from(u8::from(rng.gen_bool(0.7))))
                .collect();
            total += dispersion_index(&ys, 10).unwrap().0;
        }
        assert!((total / 200.0 - 1.0).abs() < 0.1, "{}", total / 200.0);
        // Drifting 0.9 → 0.3: far above 1.
        let ys: Vec<f64> = (0..200)
            .map(|i| f64::from(u8::from(rng.gen_bool(if i < 100 { 0.9 } else { 0.3 }))))
            .collect();
        assert!(dispersion_index(&ys, 10).unwrap().0 > 2.5);
        assert_eq!(dispersion_index(&[0.0; 40], 10), Some((1.0, 40)));
        assert_eq!(dispersion_index(&[1.0; 15], 10), None);
    }

    #[test]
    fn geometric_mean_bottoms_out_and_tops_out() {
        assert!((weighted_geometric_mean(&[(0.4, 1.0), (0.6, 1.0)]) - 1.0).abs() < 1e-12);
        assert_eq!(weighted_geometric_mean(&[(0.4, 0.0), (0.6, 1.0)]), 0.0);
        // A zero weight leaves its score out.
        assert!((weighted_geometric_mean(&[(0.0, 0.0), (1.0, 0.25)]) - 0.25).abs() < 1e-12);
        // 0.5^0.5 · 0.8^0.5 = sqrt(0.4).
        let g = weighted_geometric_mean(&[(1.0, 0.5), (1.0, 0.8)]);
        assert!((g - 0.4f64.sqrt()).abs() < 1e-12);
        assert_eq!(weighted_geometric_mean(&[]), 0.0);
    }

    #[test]
    fn spearman_perfect_and_reversed() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((spearman(&a, &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }
}
