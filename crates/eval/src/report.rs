//! Reports: the serialisable [`EvalReport`], a plain-text table, JSON, and (in
//! [`html`](crate::html)) a self-contained HTML page with an SVG plot.

use serde::{Deserialize, Serialize};

use crate::cascade::SimResult;
use crate::error::Result;
use crate::gate::RunSummary;
use crate::metrics::JudgeReport;
use crate::outcomes::Outcomes;
use crate::pareto::pareto_results;
use crate::select::{evaluate_on, select, QualityBar, Selection};
use crate::stats::CiOptions;

/// Everything one `rightsize eval` run found; serialise it for `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Task name.
    pub task: String,
    /// Data set source.
    pub dataset: String,
    /// The ladder, cheapest first.
    pub tiers: Vec<String>,
    /// Items in the dev split.
    pub n_dev: usize,
    /// Items in the test split (0 if none).
    pub n_test: usize,
    /// Every configuration evaluated on dev.
    pub points: Vec<SimResult>,
    /// Indices into `points` of the Pareto frontier, by cost.
    pub pareto: Vec<usize>,
    /// The right-sizing decision (made on dev).
    pub selection: Selection,
    /// Index into `points` of the chosen configuration.
    pub chosen: usize,
    /// The chosen configuration on the test split.
    pub test: Option<SimResult>,
    /// Each single tier on the test split, for comparison.
    pub test_single_tiers: Vec<SimResult>,
    /// When a judge scored the answers: its agreement with the reference metric and its cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeReport>,
}

impl EvalReport {
    /// Builds the report from dev-split points: Pareto frontier and selection.
    pub fn new(
        task: &str,
        dataset: &str,
        tiers: Vec<String>,
        points: Vec<SimResult>,
        bar: &QualityBar,
    ) -> Result<EvalReport> {
        let selection = select(&points, bar)?;
        let chosen = points
            .iter()
            .position(|p| p.strategy == selection.chosen.strategy)
            .expect("chosen is one of the points");
        Ok(EvalReport {
            task: task.into(),
            dataset: dataset.into(),
            tiers,
            n_dev: points.first().map_or(0, |p| p.n),
            n_test: 0,
            pareto: pareto_results(&points),
            points,
            selection,
            chosen,
            test: None,
            test_single_tiers: Vec::new(),
            judge: None,
        })
    }

    /// Evaluates the chosen configuration and every single tier on the test outcomes.
    pub fn with_test(mut self, test: &Outcomes, ci: &CiOptions) -> Result<EvalReport> {
        self.n_test = test.len();
        self.test = Some(evaluate_on(&self.selection.chosen.strategy, test, ci)?);
        self.test_single_tiers = test
            .tiers
            .iter()
            .map(|t| crate::simulate_cascade(test, &crate::Cascade::single(t.clone()), ci))
            .collect::<Result<_>>()?;
        Ok(self)
    }

    /// Attaches the judge's agreement block.
    pub fn with_judge(mut self, judge: Option<JudgeReport>) -> EvalReport {
        self.judge = judge;
        self
    }

    /// The rows worth a table: single tiers, the Pareto frontier and the chosen one, by cost.
    pub fn table_rows(&self) -> Vec<&SimResult> {
        let mut idx: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.points[i].strategy.single_tier().is_some())
            .collect();
        idx.extend(&self.pareto);
        idx.push(self.chosen);
        idx.sort_by(|&a, &b| {
            self.points[a]
                .cost_per_1k
                .total_cmp(&self.points[b].cost_per_1k)
                .then(a.cmp(&b))
        });
        idx.dedup();
        idx.into_iter().map(|i| &self.points[i]).collect()
    }

    /// The numbers to store as a gate baseline: test if present, else dev.
    pub fn summary(&self) -> RunSummary {
        match &self.test {
            Some(t) => RunSummary::from_result(&self.task, "test", t),
            None => RunSummary::from_result(&self.task, "dev", &self.selection.chosen),
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// The terminal report: table of the interesting rows, the decision, the test result.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "task {} · {} · dev {} items · test {} items · {} configurations\n\n",
            self.task,
            self.dataset,
            self.n_dev,
            self.n_test,
            self.points.len()
        );
        out += &text_table(&self.table_rows(), Some(&self.selection.chosen.label));
        out += &format!(
            "\n{} {}\n",
            if self.selection.meets_bar {
                "chosen:"
            } else {
                "BELOW BAR:"
            },
            self.selection.reason
        );
        out += &format!("  -> {}\n", self.selection.chosen.label);
        if let Some(t) = &self.test {
            out += &format!(
                "test: quality {} · p95 {:.0} ms · {} per 1k · escalation {:.1}%\n",
                fmt_quality(t),
                t.p95_ms,
                fmt_cost(t.cost_per_1k),
                t.escalation_rate * 100.0
            );
        }
        if let Some(j) = &self.judge {
            out += &format!("{}\n", j.line());
        }
        out
    }
}

/// An aligned plain-text table; the row labelled `chosen` is marked with `*`.
pub fn text_table(rows: &[&SimResult], chosen: Option<&str>) -> String {
    let header = [
        "",
        "config",
        "quality ± CI",
        "p50 ms",
        "p95 ms",
        "cost/1k",
        "escalation",
    ];
    let right = [false, false, true, true, true, true, true];
    let mut cells: Vec<[String; 7]> = vec![header.map(String::from)];
    for r in rows {
        cells.push([
            if Some(r.label.as_str()) == chosen {
                "*".into()
            } else {
                String::new()
            },
            r.label.clone(),
            fmt_quality(r),
            format!("{:.0}", r.p50_ms),
            format!("{:.0}", r.p95_ms),
            fmt_cost(r.cost_per_1k),
            format!("{:.1}%", r.escalation_rate * 100.0),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| cells.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = (0..7)
            .map(|c| {
                if right[c] {
                    format!("{:>w$}", row[c], w = widths[c])
                } else {
                    format!("{:<w$}", row[c], w = widths[c])
                }
            })
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// `0.850 ± 0.035` (half-width of the interval).
pub fn fmt_quality(r: &SimResult) -> String {
    format!("{:.3} ± {:.3}", r.quality.mean, r.quality.half_width())
}

/// Dollars with three significant digits for small amounts (`$0.00123`, `$4.50`, `$1200`).
pub fn fmt_cost(c: f64) -> String {
    if c == 0.0 {
        "$0".into()
    } else if c.abs() >= 100.0 {
        format!("${c:.0}")
    } else if c.abs() >= 0.01 {
        format!("${c:.2}")
    } else {
        let decimals = (2.0 - c.abs().log10().floor()) as usize;
        format!("${c:.decimals$}")
    }
}

/// Escapes text for HTML and SVG (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::tests::point;

    #[test]
    fn table_is_aligned_and_marks_the_choice() {
        let a = point("small", 0.8, 0.5, 120.0);
        let b = point("small > large", 0.9, 4.25, 1500.0);
        let t = text_table(&[&a, &b], Some("small > large"));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("config") && lines[0].contains("quality ± CI"));
        assert!(lines[2].starts_with("*  small > large  0.900 ± 0.050"), "{t}");
        // Right-aligned numeric columns end at the same character position.
        let end = |l: &str, s: &str| l.find(s).unwrap() + s.chars().count();
        assert_eq!(end(lines[1], "$0.50"), end(lines[2], "$4.25"));
        assert_eq!(fmt_cost(0.001234), "$0.00123");
        assert_eq!(fmt_cost(1234.0), "$1234");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn report_builds_and_serialises() {
        let pts = vec![
            point("s", 0.7, 1.0, 100.0),
            point("s > l", 0.88, 3.0, 900.0),
            point("l", 0.9, 10.0, 1000.0),
            point("m", 0.6, 5.0, 500.0),
        ];
        let r = EvalReport::new(
            "sentiment",
            "data.jsonl",
            vec!["s".into(), "m".into(), "l".into()],
            pts,
            &QualityBar::mean(0.85),
        )
        .unwrap();
        assert_eq!(r.chosen, 1);
        assert_eq!(r.pareto, [0, 1, 2]);
        assert_eq!(r.table_rows().len(), 4);
        let back: EvalReport = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            (
                back.chosen,
                &back.pareto,
                &back.selection.chosen.label,
                back.points.len()
            ),
            (1, &r.pareto, &r.selection.chosen.label, 4)
        );
        let text = r.to_text();
        assert!(
            text.contains("chosen: cheapest of 2 configurations") && text.contains("  -> s > l"),
            "{text}"
        );
        assert_eq!(r.summary().split, "dev");
        assert!(!r.to_json().contains("\"judge\""), "no judge block without a judge");
        let j = JudgeReport::new("local:j", "exact", &[("s".into(), vec![(0.8, 1.0), (0.1, 0.0)])], 0.001);
        let r = r.with_judge(Some(j));
        assert!(
            r.to_text().contains("judge local:j vs exact: agreement 100.0%"),
            "{}",
            r.to_text()
        );
        let back: EvalReport = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back.judge.unwrap().agreement.unwrap().kappa, 1.0);
    }
}
