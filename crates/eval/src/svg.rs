//! Inline SVG scatter plot of quality against cost.
//!
//! Every configuration is a `<circle class="pt …">`; the Pareto frontier is a
//! `<polyline class="frontier">`; single tiers are labelled; the chosen configuration gets a
//! ring. The cost axis is logarithmic when positive costs span more than two orders of
//! magnitude, with zero costs drawn on a separate "0" tick at the left.

use std::fmt::Write;

use crate::cascade::{SimResult, Strategy};
use crate::report::{escape, fmt_cost};

const W: f64 = 760.0;
const H: f64 = 460.0;
const L: f64 = 72.0;
const R: f64 = 24.0;
const T: f64 = 20.0;
const B: f64 = 56.0;

/// A cost axis: maps dollars per 1k to x pixels.
struct CostAxis {
    log: bool,
    zero_slot: bool,
    lo: f64,
    hi: f64,
}

impl CostAxis {
    fn new(costs: &[f64]) -> CostAxis {
        let pos: Vec<f64> = costs.iter().copied().filter(|&c| c > 0.0).collect();
        let max = pos.iter().copied().fold(0.0, f64::max);
        let min = pos.iter().copied().fold(f64::INFINITY, f64::min);
        if !pos.is_empty() && max / min > 100.0 {
            let zero_slot = costs.iter().any(|&c| c <= 0.0);
            CostAxis {
                log: true,
                zero_slot,
                lo: (min.log10() + 1e-9).floor(),
                hi: (max.log10() - 1e-9).ceil(),
            }
        } else {
            let step = nice_step(max.max(1e-9), 5);
            CostAxis {
                log: false,
                zero_slot: false,
                lo: 0.0,
                hi: (max / step).ceil().max(1.0) * step,
            }
        }
    }

    fn x(&self, c: f64) -> f64 {
        let (x0, x1) = (L, W - R);
        if !self.log {
            return x0 + (c - self.lo) / (self.hi - self.lo) * (x1 - x0);
        }
        let start = if self.zero_slot { x0 + 0.07 * (x1 - x0) } else { x0 };
        if c <= 0.0 {
            return x0;
        }
        let span = (self.hi - self.lo).max(1.0);
        start + (c.log10() - self.lo) / span * (x1 - start)
    }

    /// Tick values (dollars) and labels.
    fn ticks(&self) -> Vec<(f64, String)> {
        let mut t = Vec::new();
        if self.log {
            if self.zero_slot {
                t.push((0.0, "0".into()));
            }
            let step = ((self.hi - self.lo) / 8.0).ceil().max(1.0) as i32;
            let mut e = self.lo as i32;
            while e <= self.hi as i32 {
                let v = 10f64.powi(e);
                t.push((v, tick_label(v, e)));
                e += step;
            }
        } else {
            let step = nice_step(self.hi, 5);
            let e = step.log10().floor() as i32;
            let mut k = 0.0;
            while k * step <= self.hi * (1.0 + 1e-9) {
                t.push((k * step, tick_label(k * step, e)));
                k += 1.0;
            }
        }
        t
    }
}

/// `$0.001`, `$0.25`, `$10`: as many decimals as the tick spacing 10^e needs.
fn tick_label(v: f64, e: i32) -> String {
    format!("${v:.prec$}", prec = (-e).max(0) as usize)
}

/// A step of 1, 2 or 5 × 10^k giving about `target` intervals over `range`.
fn nice_step(range: f64, target: usize) -> f64 {
    let raw = range / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    mag * if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// The plot: `front` are Pareto indices (by cost), `chosen` an index, `bar` the quality bar.
pub fn scatter_svg(points: &[SimResult], front: &[usize], chosen: Option<usize>, bar: Option<f64>) -> String {
    let xs = CostAxis::new(&points.iter().map(|p| p.cost_per_1k).collect::<Vec<_>>());
    let qmin = points.iter().map(|p| p.quality.mean).chain(bar).fold(1.0, f64::min);
    let qlo = ((qmin - 0.02) * 10.0).floor().clamp(0.0, 9.0) / 10.0;
    let y = |q: f64| T + (1.0 - (q - qlo) / (1.0 - qlo)) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="quality against cost">"#
    );
    s += "<style>.pt{fill:#4a78b5;fill-opacity:.55}.pt.router{fill:#b5784a}.pt.front{fill:#1b4f8f;fill-opacity:1}.pt.single{fill:#222;fill-opacity:1}.frontier{fill:none;stroke:#1b4f8f;stroke-width:1.5}.grid{stroke:#e3e3e3}.axis{stroke:#444}.bar{stroke:#c0392b;stroke-dasharray:5 4}.chosen{fill:none;stroke:#c0392b;stroke-width:2.5}text{font:11px sans-serif;fill:#333}.tier{font-weight:bold}</style>";
    let _ = write!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="white" class="axis"/>"#,
        W - L - R,
        H - T - B
    );
    for (v, label) in xs.ticks() {
        let x = xs.x(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - B,
            H - B + 16.0,
            escape(&label)
        );
    }
    let step = nice_step(1.0 - qlo, 5);
    let mut k = (qlo / step - 1e-9).ceil();
    while k * step <= 1.0 + 1e-9 {
        let (q, yy) = (k * step, y(k * step));
        let _ = write!(
            s,
            r#"<line class="grid" x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{q:.2}</text>"#,
            W - R,
            L - 6.0,
            yy + 4.0
        );
        k += 1.0;
    }
    let xlabel = if xs.log {
        "Cost per 1,000 runs (USD, log scale)"
    } else {
        "Cost per 1,000 runs (USD)"
    };
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{xlabel}</text>"#,
        (L + W - R) / 2.0,
        H - 12.0
    );
    let _ = write!(
        s,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">Quality</text>"#,
        (T + H - B) / 2.0
    );
    if let Some(b) = bar {
        let yy = y(b);
        let _ = write!(
            s,
            r#"<line class="bar" x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">bar {b:.2}</text>"#,
            W - R,
            W - R - 4.0,
            yy - 4.0
        );
    }
    if !front.is_empty() {
        let pts: Vec<String> = front
            .iter()
            .map(|&i| format!("{:.1},{:.1}", xs.x(points[i].cost_per_1k), y(points[i].quality.mean)))
            .collect();
        let _ = write!(s, r#"<polyline class="frontier" points="{}"/>"#, pts.join(" "));
    }
    // Draw order: others, frontier, single tiers, so the important points stay on top.
    let rank = |i: usize| {
        if points[i].strategy.single_tier().is_some() {
            2
        } else if front.contains(&i) {
            1
        } else {
            0
        }
    };
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| rank(i));
    for i in order {
        let p = &points[i];
        let (cx, cy) = (xs.x(p.cost_per_1k), y(p.quality.mean));
        let mut class = String::from("pt");
        match (&p.strategy, rank(i)) {
            (_, 2) => class += " single",
            (_, 1) => class += " front",
            (Strategy::Router | Strategy::RouterCascade(_), _) => class += " router",
            _ => {}
        }
        let r = if rank(i) > 0 { 4.0 } else { 3.0 };
        let title = format!(
            "{}: quality {:.3}, {} per 1k, p95 {:.0} ms",
            p.label,
            p.quality.mean,
            fmt_cost(p.cost_per_1k),
            p.p95_ms
        );
        let _ = write!(
            s,
            r#"<circle class="{class}" cx="{cx:.1}" cy="{cy:.1}" r="{r}"><title>{}</title></circle>"#,
            escape(&title)
        );
        if let Some(tier) = p.strategy.single_tier() {
            let _ = write!(
                s,
                r#"<text class="tier" x="{:.1}" y="{:.1}">{}</text>"#,
                cx + 6.0,
                cy - 6.0,
                escape(tier)
            );
        }
    }
    if let Some(p) = chosen.and_then(|i| points.get(i)) {
        let (cx, cy) = (xs.x(p.cost_per_1k), y(p.quality.mean));
        let _ = write!(
            s,
            r#"<circle class="chosen" cx="{cx:.1}" cy="{cy:.1}" r="9"><title>chosen: {}</title></circle>"#,
            escape(&p.label)
        );
    }
    s += "</svg>";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_and_steps() {
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(37.0, 5), 10.0);
        let lin = CostAxis::new(&[0.0, 2.0, 7.3]);
        assert!(!lin.log && lin.hi == 8.0 && lin.x(0.0) == L && lin.x(8.0) == W - R);
        let log = CostAxis::new(&[0.0, 0.01, 5.0]);
        assert!(log.log && log.zero_slot && (log.lo, log.hi) == (-2.0, 1.0));
        assert!(log.x(0.0) < log.x(0.01) && log.x(0.01) < log.x(5.0) && log.x(10.0) == W - R);
        assert_eq!(log.ticks().first().unwrap().1, "0");
        let labels: Vec<String> = log.ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(labels, ["0", "$0.01", "$0.1", "$1", "$10"]);
        assert_eq!(
            CostAxis::new(&[0.001, 10.0]).hi,
            1.0,
            "an exact power of ten is not rounded up"
        );
        let lin: Vec<String> = CostAxis::new(&[0.3, 0.9]).ticks().into_iter().map(|t| t.1).collect();
        assert_eq!(lin, ["$0.0", "$0.2", "$0.4", "$0.6", "$0.8", "$1.0"]);
    }
}
