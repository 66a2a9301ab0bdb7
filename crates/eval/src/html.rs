//! A self-contained HTML report: no external assets, no JavaScript. All inserted text
//! is escaped.

use std::fmt::Write;

use crate::cascade::SimResult;
use crate::report::{escape, fmt_cost, fmt_quality, EvalReport};
use crate::svg::scatter_svg;

/// Rows of the "all configurations" table beyond which the list is cut (the plot still
/// shows every point).
const MAX_ALL_ROWS: usize = 2000;

/// The whole page.
pub fn html_report(r: &EvalReport) -> String {
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(s, "<title>rightsize eval: {}</title>", escape(&r.task));
    s += "<style>body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}\
          table{border-collapse:collapse;margin:1em 0}th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}\
          th:first-child,td:first-child,td.cfg{text-align:left}tr.chosen-row{background:#fdecea;font-weight:bold}\
          .verdict{padding:.6em 1em;border-radius:4px}.ok{background:#e8f5e9}.below{background:#fdecea}\
          code{background:#f4f4f4;padding:1px 4px}</style></head><body>";
    let _ = write!(s, "<h1>Evaluation of task <code>{}</code></h1>", escape(&r.task));
    let _ = write!(
        s,
        "<p>Data set <code>{}</code>: {} dev items, {} test items. Ladder: {}. {} configurations simulated offline from one pass per tier.</p>",
        escape(&r.dataset),
        r.n_dev,
        r.n_test,
        escape(&r.tiers.join(" → ")),
        r.points.len()
    );
    let sel = &r.selection;
    let (class, head) = if sel.meets_bar {
        ("ok", "Chosen")
    } else {
        ("below", "Below the bar")
    };
    let _ = write!(
        s,
        "<p class=\"verdict {class}\"><b>{head}:</b> <code>{}</code>. {}</p>",
        escape(&sel.chosen.label),
        escape(&sel.reason)
    );
    if let Some(t) = &r.test {
        let _ = write!(
            s,
            "<p>On the held-out test split: quality <b>{}</b>, {} per 1,000 runs, p50 {:.0} ms, p95 {:.0} ms, escalation {:.1} %.</p>",
            escape(&fmt_quality(t)),
            escape(&fmt_cost(t.cost_per_1k)),
            t.p50_ms,
            t.p95_ms,
            t.escalation_rate * 100.0
        );
    }
    if let Some(j) = &r.judge {
        let _ = write!(s, "<p class=\"judge\">{}</p>", escape(&j.line()));
    }
    s += "<h2>Quality against cost (dev)</h2>";
    s += &scatter_svg(&r.points, &r.pareto, Some(r.chosen), Some(sel.bar.min_quality));
    s += "<p>Each dot is a configuration; the line is the Pareto frontier; labelled dots are single tiers; the ring is the chosen configuration; the dashed line is the quality bar.</p>";
    s += "<h2>Single tiers, frontier and choice (dev)</h2>";
    s += &table(&r.table_rows(), &sel.chosen.label);
    if !r.test_single_tiers.is_empty() || r.test.is_some() {
        s += "<h2>Test split</h2>";
        let mut rows: Vec<&SimResult> = r.test_single_tiers.iter().collect();
        rows.extend(r.test.iter());
        s += &table(&rows, &sel.chosen.label);
    }
    let _ = write!(
        s,
        "<details><summary>All {} configurations (dev)</summary>",
        r.points.len()
    );
    let mut all: Vec<&SimResult> = r.points.iter().collect();
    all.sort_by(|a, b| a.cost_per_1k.total_cmp(&b.cost_per_1k));
    if all.len() > MAX_ALL_ROWS {
        let _ = write!(s, "<p>Cheapest {MAX_ALL_ROWS} shown (see the JSON output for all).</p>");
        all.truncate(MAX_ALL_ROWS);
    }
    s += &table(&all, &sel.chosen.label);
    s += "</details></body></html>\n";
    s
}

fn table(rows: &[&SimResult], chosen: &str) -> String {
    let mut s = String::from("<table><tr><th>configuration</th><th>quality ± CI</th><th>p50 ms</th><th>p95 ms</th><th>cost / 1k</th><th>escalation</th><th>answered by</th></tr>");
    for r in rows {
        let class = if r.label == chosen { " class=\"chosen-row\"" } else { "" };
        let shares: Vec<String> = r
            .answered
            .iter()
            .filter(|a| a.share > 0.0)
            .map(|a| format!("{} {:.0}%", a.tier, a.share * 100.0))
            .collect();
        let _ = write!(
            s,
            "<tr{class}><td class=\"cfg\">{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{:.1}%</td><td class=\"cfg\">{}</td></tr>",
            escape(&r.label),
            escape(&fmt_quality(r)),
            r.p50_ms,
            r.p95_ms,
            escape(&fmt_cost(r.cost_per_1k)),
            r.escalation_rate * 100.0,
            escape(&shares.join(", "))
        );
    }
    s += "</table>";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{calibrate, CalibrateOptions};
    use crate::outcomes::{Outcomes, TierOutcome};
    use crate::select::QualityBar;

    fn outcomes() -> Outcomes {
        let tiers = vec!["tiny<script>".to_string(), "big & \"best\"".to_string()];
        let mut o = Outcomes::new(tiers);
        for i in 0..10 {
            let c = i as f64 / 10.0;
            let small = if i == 3 {
                TierOutcome::failed(0.0, 10.0)
            } else {
                TierOutcome::new(c > 0.45, Some(c), 0.0001, 30.0)
            };
            o.push(
                format!("i{i}"),
                vec![small, TierOutcome::new(i != 0, Some(0.9), 0.02, 700.0)],
            )
            .unwrap();
        }
        o
    }

    #[test]
    fn html_has_one_svg_point_per_configuration_and_escapes() {
        let o = outcomes();
        let points = calibrate(
            &o,
            &CalibrateOptions {
                quantiles: 4,
                ..Default::default()
            },
        )
        .unwrap();
        let n = points.len();
        let report = EvalReport::new(
            "sentiment <v2>",
            "d.jsonl",
            o.tiers.clone(),
            points,
            &QualityBar::mean(0.8),
        )
        .unwrap()
        .with_test(&o, &Default::default())
        .unwrap();
        let html = html_report(&report);
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<svg").count(), 1);
        assert_eq!(html.matches("<circle class=\"pt").count(), n);
        assert_eq!(html.matches("<circle class=\"chosen\"").count(), 1);
        assert_eq!(html.matches("<polyline class=\"frontier\"").count(), 1);
        assert_eq!(html.matches("<text class=\"tier\"").count(), 2);
        // $0.09 against $20 per 1k: more than two decades, so a log axis.
        assert!(html.contains("log scale"));
        // Escaping: no raw tag or quote from the data leaks through.
        assert!(!html.contains("tiny<script>") && html.contains("tiny&lt;script&gt;"));
        assert!(html.contains("big &amp; &quot;best&quot;") && !html.contains("big & \"best\""));
        assert!(html.contains("sentiment &lt;v2&gt;"));
        assert!(!html.contains("class=\"judge\""));
        let judged = report.clone().with_judge(Some(crate::metrics::JudgeReport::new(
            "local:<j>",
            "exact",
            &[("t".into(), vec![(0.9, 1.0)])],
            0.0,
        )));
        assert!(html_report(&judged).contains("<p class=\"judge\">judge local:&lt;j&gt; vs exact: agreement 100.0%"));
        assert!(
            !html.contains("<script") && !html.contains("src=") && !html.contains("href=") && !html.contains("@import")
        );
    }
}
