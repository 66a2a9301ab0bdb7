//! Confidence intervals and percentiles.
//!
//! * Proportions (0/1 scores): the **Wilson score interval**, which behaves well near
//!   0 and 1 and for small n (unlike the normal approximation).
//! * Means of fractional scores: a **percentile bootstrap**, seeded and deterministic
//!   (its own SplitMix64 generator, so results do not change with a dependency update).

use serde::{Deserialize, Serialize};

/// How intervals are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiOptions {
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Bootstrap resamples for fractional scores; 0 = use the Wilson interval on the
    /// fractional sum instead (conservative for scores in [0, 1], and O(1)).
    pub bootstrap_resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

impl Default for CiOptions {
    fn default() -> Self {
        CiOptions {
            level: 0.95,
            bootstrap_resamples: 1000,
            seed: 0x5eed,
        }
    }
}

/// Which interval an [`Estimate`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CiMethod {
    /// Wilson score interval.
    Wilson,
    /// Percentile bootstrap of the mean.
    Bootstrap,
}

/// A mean with its confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The sample mean.
    pub mean: f64,
    /// Lower bound of the interval.
    pub lo: f64,
    /// Upper bound of the interval.
    pub hi: f64,
    /// Sample size.
    pub n: usize,
    /// How the interval was computed.
    pub method: CiMethod,
}

impl Estimate {
    /// Mean of `scores` (each in [0, 1]) with an interval: Wilson when every score is 0
    /// or 1, else a bootstrap (or Wilson on the fractional sum if resamples is 0).
    /// Empty input gives mean 0 with interval [0, 1].
    pub fn of_scores(scores: &[f64], ci: &CiOptions) -> Estimate {
        let n = scores.len();
        let m = mean(scores);
        let binary = scores.iter().all(|&s| s == 0.0 || s == 1.0);
        if binary || ci.bootstrap_resamples == 0 || n == 0 {
            let (lo, hi) = wilson(scores.iter().sum(), n, ci.level);
            Estimate {
                mean: m,
                lo,
                hi,
                n,
                method: CiMethod::Wilson,
            }
        } else {
            let (lo, hi) = bootstrap_mean(scores, ci.bootstrap_resamples, ci.level, ci.seed);
            Estimate {
                mean: m,
                lo,
                hi,
                n,
                method: CiMethod::Bootstrap,
            }
        }
    }

    /// Half the interval's width (for "q ± h" displays).
    pub fn half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0
    }
}

/// Arithmetic mean; 0 for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Wilson score interval for `successes` out of `n` at confidence `level`.
/// `n == 0` gives [0, 1].
pub fn wilson(successes: f64, n: usize, level: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = z_for_level(level);
    let n = n as f64;
    let p = (successes / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Percentile bootstrap interval of the mean: `resamples` resamples with replacement,
/// deterministic for a given seed. Empty input gives (0, 0).
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> (f64, f64) {
    let n = values.len();
    if n == 0 || resamples == 0 {
        let m = mean(values);
        return (m, m);
    }
    let mut rng = SplitMix64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    (percentile_sorted(&means, alpha), percentile_sorted(&means, 1.0 - alpha))
}

/// Percentile `p` in [0, 1] of sorted values by linear interpolation between closest
/// ranks (NumPy's default). Empty input gives 0.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let pos = p.clamp(0.0, 1.0) * (n - 1) as f64;
            let (i, frac) = (pos.floor() as usize, pos.fract());
            if i + 1 >= n {
                sorted[n - 1]
            } else {
                sorted[i] + (sorted[i + 1] - sorted[i]) * frac
            }
        }
    }
}

/// Percentile of unsorted values (see [`percentile_sorted`]).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, p)
}

/// Two-sided standard normal quantile for a confidence level (0.95 → 1.95996).
pub fn z_for_level(level: f64) -> f64 {
    let level = level.clamp(1e-9, 1.0 - 1e-12);
    inv_norm_cdf(0.5 + level / 2.0)
}

/// Inverse standard normal CDF (Acklam's rational approximation, |rel err| < 1.2e-9).
fn inv_norm_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// SplitMix64: tiny, fast, fully specified, so seeded results are stable forever.
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; bias is negligible for n far below 2^64).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn wilson_matches_known_values() {
        // Reference values (statsmodels proportion_confint(method="wilson")).
        let (lo, hi) = wilson(8.0, 10, 0.95);
        assert!(close(lo, 0.490162, 1e-5) && close(hi, 0.943318, 1e-5), "{lo} {hi}");
        let (lo, hi) = wilson(50.0, 100, 0.95);
        assert!(close(lo, 0.403832, 1e-5) && close(hi, 0.596168, 1e-5), "{lo} {hi}");
        let (lo, hi) = wilson(0.0, 10, 0.95);
        assert!(lo == 0.0 && close(hi, 0.277533, 1e-5), "{hi}");
        assert_eq!(wilson(3.0, 0, 0.95), (0.0, 1.0));
        assert!(close(z_for_level(0.95), 1.959964, 1e-6));
        assert!(close(z_for_level(0.99), 2.575829, 1e-6));
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let v: Vec<f64> = (0..200).map(|i| (i % 10) as f64 / 10.0).collect();
        let a = bootstrap_mean(&v, 500, 0.95, 7);
        assert_eq!(a, bootstrap_mean(&v, 500, 0.95, 7));
        assert_ne!(a, bootstrap_mean(&v, 500, 0.95, 8));
        let m = mean(&v);
        assert!(a.0 < m && m < a.1, "{a:?} {m}");
        // Standard error is about 0.287/sqrt(200) = 0.0203, so half-width ≈ 0.04.
        assert!(close((a.1 - a.0) / 2.0, 0.0398, 0.008), "{a:?}");
        let e = Estimate::of_scores(&v, &CiOptions::default());
        assert_eq!(e.method, CiMethod::Bootstrap);
        let e = Estimate::of_scores(&[1.0, 0.0, 1.0, 1.0], &CiOptions::default());
        assert_eq!((e.method, e.mean, e.n), (CiMethod::Wilson, 0.75, 4));
    }

    #[test]
    fn percentiles_interpolate() {
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.95), 4.8);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
