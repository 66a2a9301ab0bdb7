//! # eval — automated evaluation for rightsize tasks
//!
//! A rightsize *task* answers each request with a ladder of model tiers, cheapest first,
//! escalating when a tier's confidence is low. Whether that is worth it, and at which
//! thresholds, is an empirical question: this crate answers it with numbers. It is pure
//! computation (no models, no network): the caller runs the models, this crate scores,
//! simulates, chooses and reports.
//!
//! ## Why offline simulation
//!
//! Evaluating a cascade by running it would cost one pass over the data set *per
//! configuration*, and a threshold grid has thousands. But a cascade's behaviour on an
//! item is fully determined by what each tier would have done alone on that item: its
//! correctness, its confidence, its cost and its latency. So evaluation runs **each tier
//! alone over the data set once** and records an [`Outcomes`] table (item × tier →
//! [`TierOutcome`]); then every cascade, threshold setting and router variant is
//! [`simulate`]d from that table in microseconds. Cost: one pass per tier, however many
//! configurations are compared, and the table can be stored and re-analysed later.
//!
//! ## End to end (what `rightsize eval TASK` does)
//!
//! 1. [`Dataset::load`] the JSONL file, [`Dataset::check_no_leak`], [`Dataset::split`]
//!    into dev and test.
//! 2. For each tier, run it on every item; score the output with a [`Metric`] (or the
//!    functions in [`metrics`]) and record a [`TierOutcome`] (score, confidence, cost,
//!    latency, error). Build [`Outcomes`] (e.g. [`Outcomes::from_columns`]).
//! 3. `dev = outcomes.retain_ids(|id| in dev)`, same for test.
//! 4. [`calibrate`] on dev → every configuration as a [`SimResult`].
//! 5. [`EvalReport::new`] (Pareto frontier + [`select`] against the [`QualityBar`]), then
//!    [`EvalReport::with_test`] to report the chosen configuration on the held-out split.
//! 6. Print [`EvalReport::to_text`], write [`EvalReport::to_json`] and [`html_report`];
//!    [`gate`] the [`EvalReport::summary`] against a stored baseline [`RunSummary`].
//!
//! ```
//! use eval::*;
//! # fn run_tier(tier: &str, item: &Item) -> (String, f64, f64, f64) {
//! #     let right = tier == "large" || item.input["text"].len() % 3 != 0;
//! #     let label = if right { item.expected.as_text() } else { "wrong".into() };
//! #     let cost = if tier == "large" { 0.002 } else { 0.0001 };
//! #     (label, if right { 0.9 } else { 0.4 }, cost, if tier == "large" { 800.0 } else { 60.0 })
//! # }
//! let jsonl: String = (0..40)
//!     .map(|i| format!("{{\"input\":{{\"text\":\"review {}\"}},\"expected\":\"pos\"}}\n", "x".repeat(i)))
//!     .collect();
//! let data = Dataset::parse(&jsonl, "reviews.jsonl")?; // or Dataset::load(path)
//! let split_cfg = SplitConfig::default();
//! data.check_no_leak(&split_cfg)?;
//! let splits = data.split(&split_cfg);
//!
//! // One pass per tier: run, score, record.
//! let tiers = vec!["small".to_string(), "large".to_string()];
//! let metric = Metric::Exact { opts: metrics::MatchOptions::LENIENT };
//! let mut outcomes = Outcomes::new(tiers.clone());
//! for item in &data.items {
//!     let mut row = Vec::new();
//!     for tier in &tiers {
//!         let (output, confidence, cost, ms) = run_tier(tier, item); // the caller's model call
//!         let score = metric.score(&output, &item.expected)?;
//!         row.push(TierOutcome::scored(score, Some(confidence), cost, ms));
//!     }
//!     outcomes.push(item.id.clone(), row)?;
//! }
//! let is_dev = |id: &str| splits.dev.iter().any(|i| i.id == id);
//! let dev = outcomes.retain_ids(|id| is_dev(id));
//! let test = outcomes.retain_ids(|id| !is_dev(id));
//!
//! let points = calibrate(&dev, &CalibrateOptions::default())?;
//! let report = EvalReport::new("sentiment", &data.source, tiers, points, &QualityBar::mean(0.9))?
//!     .with_test(&test, &CiOptions::default())?;
//! assert!(report.selection.meets_bar);
//! assert!(report.selection.chosen.label.starts_with("small@0.")); // e.g. "small@0.85 > large"
//! assert_eq!(report.test.as_ref().unwrap().quality.mean, 1.0);
//! println!("{}", report.to_text());
//! let (_json, _html) = (report.to_json(), html_report(&report));
//! let verdict = gate(&report.summary(), &report.summary(), 0.02);
//! assert!(verdict.passed);
//! # Ok::<(), EvalError>(())
//! ```
//!
//! ## Data set format (JSONL)
//!
//! One JSON object per line; blank lines and lines starting with `#` or `//` are skipped:
//!
//! ```text
//! {"id": "r1", "input": {"review": "Great value"}, "expected": "positive"}
//! {"input": {"text": "Order 66 shipped"}, "expected": {"order": 66, "status": "shipped"}, "split": "test"}
//! {"input": {"question": "6 × 7?"}, "expected": 42}
//! ```
//!
//! * `input` (required): the prompt template's variables. Values are strings (numbers and
//!   booleans are accepted and kept as their text).
//! * `expected` (required): a string (label or answer), a number, or a JSON object
//!   (scored field by field). Arrays and null are rejected.
//! * `id` (optional, unique): defaults to `line-N`.
//! * `split` (optional): `"dev"` or `"test"`. Items without one are assigned by hashing
//!   the *normalised* input (variables sorted, whitespace collapsed, lowercased) with
//!   [`SplitConfig::test_fraction`] (default 0.5) going to test, so identical questions
//!   always land together and the split never changes between runs.
//! * Any other key is an error (it catches typos such as `"expect"`).
//!
//! Errors name the file and line (`data.jsonl:12: ...`). [`import_csv`] converts a CSV
//! file (one column is the expected answer, the others become input variables).
//!
//! ## Statistics
//!
//! Quality is the mean per-item score in [0, 1], reported with a 95 % interval: Wilson
//! for 0/1 scores, a seeded percentile bootstrap for fractional ones ([`stats`]).
//! Latency percentiles interpolate linearly; cost is reported per 1,000 runs.

mod calibrate;
mod cascade;
mod csv;
mod dataset;
mod error;
mod gate;
mod html;
pub mod metrics;
mod outcomes;
mod pareto;
mod report;
mod select;
mod split;
pub mod stats;
mod svg;

pub use calibrate::{calibrate, candidate_thresholds, tier_subsets, CalibrateOptions, Subsets};
pub use cascade::{simulate, simulate_cascade, Cascade, SimResult, Strategy, TierShare};
pub use csv::{import_csv, parse_csv_items, CsvOptions};
pub use dataset::{Dataset, Expected, Item, Split};
pub use error::{EvalError, Result};
pub use gate::{gate, gate_with, GateOptions, GateResult, RunSummary};
pub use html::html_report;
pub use metrics::{JudgeReport, Metric};
pub use outcomes::{ItemOutcomes, Outcomes, Route, TierOutcome};
pub use pareto::{pareto_front, pareto_results};
pub use report::{escape, fmt_cost, fmt_quality, text_table, EvalReport};
pub use select::{evaluate_on, select, QualityBar, Selection};
pub use split::{check_no_leak, SplitConfig, Splits};
pub use stats::{CiOptions, Estimate};
pub use svg::scatter_svg;
