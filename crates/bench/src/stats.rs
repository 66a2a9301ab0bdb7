//! Percentiles and a markdown comparison table with a ratio column.

use serde::{Deserialize, Serialize};

/// The `p`-th percentile (0..=100) of `values`, interpolating linearly between
/// the closest ranks (numpy's default). `None` for an empty slice; NaNs are ignored.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = p.clamp(0.0, 100.0) / 100.0;
    let rank = p * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// Median and 95th percentile of a sample (0.0 for an empty sample).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Self {
        Self {
            p50: percentile(values, 50.0).unwrap_or(0.0),
            p95: percentile(values, 95.0).unwrap_or(0.0),
        }
    }
}

/// `ours / peer`, when both are known and the peer is non-zero.
pub fn ratio(ours: Option<f64>, peer: Option<f64>) -> Option<f64> {
    match (ours, peer) {
        (Some(o), Some(p)) if p != 0.0 && o.is_finite() && p.is_finite() => Some(o / p),
        _ => None,
    }
}

/// One line of a comparison: a metric measured on rightsize and on the peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured, e.g. `"qwen2.5-0.5b decode (t/s)"`.
    pub metric: String,
    pub ours: Option<f64>,
    pub peer: Option<f64>,
    /// True for throughputs (ratio > 1 is better), false for latencies/memory.
    pub higher_is_better: bool,
}

impl Row {
    pub fn new(metric: impl Into<String>, ours: Option<f64>, peer: Option<f64>, higher_is_better: bool) -> Self {
        Self {
            metric: metric.into(),
            ours,
            peer,
            higher_is_better,
        }
    }

    /// `ours / peer`.
    pub fn ratio(&self) -> Option<f64> {
        ratio(self.ours, self.peer)
    }
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// Render rows as a GitHub markdown table:
/// `| metric | rightsize | llama.cpp | ratio |`, the ratio being rightsize / llama.cpp
/// with `↑`/`↓` telling which direction is better.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from("| metric | rightsize | llama.cpp | ratio |\n|---|---:|---:|---:|\n");
    for r in rows {
        let ratio = match r.ratio() {
            Some(x) => format!("{x:.2}× {}", if r.higher_is_better { "↑" } else { "↓" }),
            None => "–".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.metric.replace('|', "\\|"),
            fmt_num(r.ours),
            fmt_num(r.peer),
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        // rank = 0.95 * 3 = 2.85 -> 3 + 0.85
        assert!((percentile(&v, 95.0).unwrap() - 3.85).abs() < 1e-12);
    }

    #[test]
    fn percentile_unsorted_single_and_empty() {
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN, 2.0], 50.0), Some(2.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&hundred);
        assert!((p.p50 - 50.5).abs() < 1e-9);
        assert!((p.p95 - 95.05).abs() < 1e-9);
        assert_eq!(Percentiles::of(&[]), Percentiles { p50: 0.0, p95: 0.0 });
    }

    #[test]
    fn table_has_ratio_column() {
        let t = markdown_table(&[
            Row::new("decode t/s", Some(150.0), Some(100.0), true),
            Row::new("peak RSS MiB", Some(50.0), None, false),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| metric | rightsize | llama.cpp | ratio |");
        assert_eq!(lines[2], "| decode t/s | 150.0 | 100.0 | 1.50× ↑ |");
        assert_eq!(lines[3], "| peak RSS MiB | 50.00 | – | – |");
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }
}
