//! Cascade-only, router-only and router + cascade side by side: the right-sized choice within
//! each family (on dev) and what it does on the held-out test split, so the report answers
//! "is the router worth it" directly, not only through the Pareto plot.

use eval::{escape, fmt_cost, fmt_quality, EvalReport, Outcomes, QualityBar, SimResult, Strategy};
use serde::Serialize;

/// Which configurations right-sizing may choose from (`--strategy`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Any configuration.
    #[default]
    Any,
    /// Single tiers and cascades, no router.
    Cascade,
    /// The router alone: each item answered by the routed tier.
    Router,
    /// Cascades started at the routed tier.
    RouterCascade,
}

impl Family {
    pub fn of(s: &Strategy) -> Family {
        match s {
            Strategy::Cascade(_) => Family::Cascade,
            Strategy::Router => Family::Router,
            Strategy::RouterCascade(_) => Family::RouterCascade,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::Cascade => "cascade only",
            Family::Router => "router only",
            Family::RouterCascade => "router + cascade",
        }
    }

    fn admits(self, s: &Strategy) -> bool {
        self == Family::Any || Family::of(s) == self
    }
}

/// The best configuration of one family.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub family: &'static str,
    pub label: String,
    pub meets_bar: bool,
    pub dev: SimResult,
    pub test: Option<SimResult>,
}

/// Restrict the report's choice to one family (before `with_test`).
pub fn restrict(report: &mut EvalReport, family: Family, bar: &QualityBar) -> anyhow::Result<()> {
    if family == Family::Any {
        return Ok(());
    }
    let pts: Vec<SimResult> = report
        .points
        .iter()
        .filter(|p| family.admits(&p.strategy))
        .cloned()
        .collect();
    if pts.is_empty() {
        anyhow::bail!(
            "no `{}` configuration was evaluated (a router needs a ladder of two or more tiers and the router encoder)",
            family.name()
        );
    }
    let sel = eval::select(&pts, bar)?;
    report.chosen = report
        .points
        .iter()
        .position(|p| p.strategy == sel.chosen.strategy)
        .unwrap_or(report.chosen);
    report.selection = sel;
    Ok(())
}

/// Per family present in the report: its right-sized configuration on dev and on `test`.
pub fn rows(report: &EvalReport, test: &Outcomes, bar: &QualityBar) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for f in [Family::Cascade, Family::Router, Family::RouterCascade] {
        let pts: Vec<SimResult> = report
            .points
            .iter()
            .filter(|p| f.admits(&p.strategy))
            .cloned()
            .collect();
        if pts.is_empty() {
            continue;
        }
        let sel = eval::select(&pts, bar)?;
        let t = if test.is_empty() {
            None
        } else {
            Some(eval::evaluate_on(
                &sel.chosen.strategy,
                test,
                &eval::CiOptions::default(),
            )?)
        };
        out.push(Row {
            family: f.name(),
            label: sel.chosen.label.clone(),
            meets_bar: sel.meets_bar,
            dev: sel.chosen,
            test: t,
        });
    }
    Ok(out)
}

/// An aligned terminal table of the rows.
pub fn text(rows: &[Row]) -> String {
    let mut cells = vec![[
        "family",
        "config",
        "dev quality",
        "test quality",
        "test cost/1k",
        "test p95 ms",
        "escalation",
    ]
    .map(String::from)];
    for r in rows {
        let t = r.test.as_ref();
        cells.push([
            r.family.to_owned() + if r.meets_bar { "" } else { " (below bar)" },
            r.label.clone(),
            fmt_quality(&r.dev),
            t.map(fmt_quality).unwrap_or_else(|| "-".into()),
            t.map(|t| fmt_cost(t.cost_per_1k)).unwrap_or_else(|| "-".into()),
            t.map(|t| format!("{:.0}", t.p95_ms)).unwrap_or_else(|| "-".into()),
            t.map(|t| format!("{:.1}%", t.escalation_rate * 100.0))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| cells.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = (0..7)
            .map(|c| {
                if c < 2 {
                    format!("{:<w$}", row[c], w = widths[c])
                } else {
                    format!("{:>w$}", row[c], w = widths[c])
                }
            })
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// The report page with a comparison section before the plot.
pub fn html(report: &EvalReport, rows: &[Row], router_note: &str) -> String {
    let page = eval::html_report(report);
    let mut s = String::from("<h2>Cascade only, router only, router + cascade</h2>");
    s += &format!("<p>{}</p>", escape(router_note));
    s += "<table><tr><th>family</th><th>configuration (chosen on dev)</th><th>dev quality</th><th>test quality</th><th>test cost / 1k</th><th>test p95 ms</th><th>test escalation</th></tr>";
    for r in rows {
        let t = r.test.as_ref();
        let cell = |f: &dyn Fn(&SimResult) -> String| t.map(f).unwrap_or_else(|| "-".into());
        s += &format!(
            "<tr><td class=\"cfg\">{}{}</td><td class=\"cfg\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(r.family),
            if r.meets_bar { "" } else { " (below bar)" },
            escape(&r.label),
            escape(&fmt_quality(&r.dev)),
            escape(&cell(&fmt_quality)),
            escape(&cell(&|t| fmt_cost(t.cost_per_1k))),
            cell(&|t| format!("{:.0}", t.p95_ms)),
            cell(&|t| format!("{:.1}%", t.escalation_rate * 100.0)),
        );
    }
    s += "</table>";
    let at = "<h2>Quality against cost";
    match page.find(at) {
        Some(i) => format!("{}{s}{}", &page[..i], &page[i..]),
        None => page.replace("</body>", &format!("{s}</body>")),
    }
}
