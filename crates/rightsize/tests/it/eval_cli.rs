//! `rightsize eval` on real models: the table, JSON and HTML report with the plot; the gate
//! fails on a deliberately degraded task version; `--apply` writes a valid new version; each
//! run is stored in `eval_runs` (a store of the test's own).

use crate::common::rightsize;
use std::path::Path;

const TASK: &str = r#"
inputs = ["text"]
dataset = "reviews.jsonl"
quality_bar = 0.8
prompt = """Is the sentiment of this review positive or negative?

Review: {{ text }}

Answer with one word: positive or negative."""
[output]
kind = "label"
labels = ["positive", "negative"]
"#;

const REVIEWS: &[(&str, &str)] = &[
    ("I love it, works perfectly.", "positive"),
    ("Fantastic quality, would buy again.", "positive"),
    ("Exceeded my expectations in every way.", "positive"),
    ("Great value and fast delivery.", "positive"),
    ("My kids adore this toy.", "positive"),
    ("Comfortable, stylish and well made.", "positive"),
    ("Broke after two days. Useless.", "negative"),
    ("Absolutely the worst purchase I have ever made.", "negative"),
    ("Terrible customer service and a faulty product.", "negative"),
    ("It smells awful and the zip fell off.", "negative"),
    ("Waste of money, do not buy.", "negative"),
    ("Arrived broken and the refund took weeks.", "negative"),
];

fn setup(dir: &Path) {
    let mut data = String::new();
    for (i, (t, l)) in REVIEWS.iter().enumerate() {
        let split = if i % 2 == 0 { "dev" } else { "test" };
        data += &format!(
            "{}\n",
            serde_json::json!({"id": format!("r{i}"), "input": {"text": t}, "expected": l, "split": split})
        );
    }
    std::fs::write(dir.join("reviews.jsonl"), data).unwrap();
    // Version 1: the small model, escalating to Qwen2.5-0.5B when unsure.
    std::fs::write(dir.join("reviews.toml"), format!("name = \"reviews\"\nversion = 1\n{TASK}\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\nthreshold = 0.84\n[[ladder]]\nkind = \"local\"\nmodel = \"qwen2.5-0.5b\"\n")).unwrap();
    // Version 2, deliberately degraded: SmolLM2-135M alone (it calls nearly everything positive).
    std::fs::write(
        dir.join("reviews-degraded.toml"),
        format!("name = \"reviews\"\nversion = 2\n{TASK}\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n"),
    )
    .unwrap();
}

#[test]
fn eval_reports_right_sizes_gates_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let tasks = d.to_str().unwrap();
    let baseline = d.join("baseline.json");
    let db = d.join("rs.db").to_str().unwrap().to_owned();
    let out1 = d.join("out1");
    let (ok, table, err) = rightsize(&[
        "eval",
        "reviews",
        "--version",
        "1",
        "--tasks-dir",
        tasks,
        "--out",
        out1.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--store",
        &db,
        "--save-baseline",
        "--apply",
    ]);
    assert!(ok, "{err}");
    assert!(
        table.contains("local:qwen2.5-0.5b") && table.contains("local:smollm2-135m"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out1.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["task_version"], 1);
    assert!(
        report["model_hashes"]["smollm2-135m"]
            .as_str()
            .is_some_and(|h| h.len() == 64),
        "{}",
        report["model_hashes"]
    );
    assert!(
        report["selection"]["meets_bar"].as_bool().unwrap(),
        "{}",
        report["selection"]
    );
    let html = std::fs::read_to_string(out1.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("local:qwen2.5-0.5b"));
    assert!(baseline.is_file());
    // --apply wrote version 3 (1 and 2 exist) with the chosen ladder; it validates.
    let applied = d.join("reviews.v3.toml");
    assert!(applied.is_file(), "{err}");
    let (ok, _, verr) = rightsize(&["tasks", "validate", "--tasks-dir", tasks]);
    assert!(ok, "{verr}");

    // The degraded version fails the gate against the baseline...
    let (ok, _, err) = rightsize(&[
        "eval",
        "reviews",
        "--version",
        "2",
        "--tasks-dir",
        tasks,
        "--out",
        d.join("out2").to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--store",
        &db,
        "--gate",
    ]);
    assert!(!ok, "the degraded version must fail the gate: {err}");
    assert!(err.contains("gate failed"), "{err}");
    // ...and version 1 passes it.
    let (ok, _, err) = rightsize(&[
        "eval",
        "reviews",
        "--version",
        "1",
        "--tasks-dir",
        tasks,
        "--out",
        d.join("out3").to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--store",
        &db,
        "--gate",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("gate passed"), "{err}");
    // Three runs stored, newest first: version 1 after the degraded version 2.
    let (ok, listed, err) = rightsize(&["eval", "reviews", "--history", "--json", "--store", &db]);
    assert!(ok, "{err}");
    let runs: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let versions: Vec<i64> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 1], "{listed}");
}
