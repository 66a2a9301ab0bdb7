//! `rightsize eval` with the pre-generation router on real models (MiniLM classifier tier and
//! router, SmolLM2-135M): router-only and router + cascade are reported next to cascade-only,
//! the run is stored in `eval_runs` with its model and data set hashes and listed by
//! `--history`, and `--apply` of a router + cascade writes `[router]` so the new version's
//! runs start at the routed tier.

use crate::common::rightsize;
use std::path::Path;
use std::process::Command;

const TASK: &str = r#"name = "eval-router-test"
version = 1
inputs = ["ticket"]
dataset = "tickets.jsonl"
examples = "examples.jsonl"
quality_bar = 0.75
prompt = """Which team should handle this ticket: billing or technical?

Ticket: {{ ticket }}

Answer with one word: billing or technical."""
[output]
kind = "label"
labels = ["billing", "technical"]
[[ladder]]
kind = "classifier"
encoder = "minilm-l6"
threshold = 0.8
[[ladder]]
kind = "local"
model = "smollm2-135m"
"#;

const EXAMPLES: &[(&str, &str)] = &[
    ("I was charged twice this month.", "billing"),
    ("Please send the invoice for my last payment.", "billing"),
    ("I want a refund for the duplicate charge.", "billing"),
    ("Why did my plan's price go up?", "billing"),
    ("The app crashes when I open settings.", "technical"),
    ("Your API returns HTTP 500 on every request.", "technical"),
    ("Sync times out with a null pointer exception.", "technical"),
    ("The device reboots in a loop after the update.", "technical"),
];

const TICKETS: &[(&str, &str)] = &[
    ("My card was billed the wrong amount.", "billing"),
    ("I need a receipt for yesterday's payment.", "billing"),
    ("Can I pay by bank transfer instead of card?", "billing"),
    ("The annual fee was taken twice.", "billing"),
    ("Exporting a report freezes the desktop client.", "technical"),
    ("The SSL handshake fails through our proxy.", "technical"),
    ("Memory keeps growing until the worker is killed.", "technical"),
    ("The mobile app shows a blank screen after login.", "technical"),
];

/// `<d>/tasks` (task, data) and `<d>/rightsize.toml`; returns the config's path.
fn setup(root: &Path) -> String {
    let d = &root.join("tasks");
    std::fs::create_dir_all(d).unwrap();
    let line = |(t, l): &(&str, &str)| format!("{}\n", serde_json::json!({"input": {"ticket": t}, "expected": l}));
    std::fs::write(d.join("examples.jsonl"), EXAMPLES.iter().map(line).collect::<String>()).unwrap();
    let data: String = TICKETS
        .iter()
        .enumerate()
        .map(|(i, (t, l))| format!("{}\n", serde_json::json!({"id": format!("k{i}"), "input": {"ticket": t}, "expected": l, "split": if i % 2 == 0 { "dev" } else { "test" }})))
        .collect();
    std::fs::write(d.join("tickets.jsonl"), data).unwrap();
    std::fs::write(d.join("task.toml"), TASK).unwrap();
    // A store of its own, and only the two models the ladder needs.
    let cfg = root.join("rightsize.toml");
    let db = root.join("rs.db");
    std::fs::write(
        &cfg,
        format!(
            "store = {:?}\ntasks_dir = {:?}\n[[model]]\nid = \"smollm2-135m\"\n[[model]]\nid = \"minilm-l6\"\n",
            db.to_str().unwrap(),
            d.to_str().unwrap()
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_owned()
}

fn is_sha256(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn eval_trains_the_router_stores_the_run_and_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = setup(d);
    let out = d.join("out");
    let (ok, table, err) = rightsize(&[
        "eval",
        "eval-router-test",
        "--config",
        &cfg,
        "--out",
        out.to_str().unwrap(),
        "--baseline",
        d.join("baseline.json").to_str().unwrap(),
        "--strategy",
        "router-cascade",
        "--apply",
    ]);
    assert!(ok, "{err}");
    assert!(
        table.contains("cascade only") && table.contains("router only") && table.contains("router + cascade"),
        "{table}"
    );
    assert!(
        table.contains("Router: a minilm-l6 head trained on 4 dev items"),
        "{table}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = report["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["strategy"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "router").count(),
        1,
        "one router-only point"
    );
    assert!(
        kinds.contains(&"router_cascade") && kinds.contains(&"cascade"),
        "{kinds:?}"
    );
    let families: Vec<&str> = report["comparison"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["family"].as_str().unwrap())
        .collect();
    assert_eq!(families, ["cascade only", "router only", "router + cascade"]);
    for row in report["comparison"].as_array().unwrap() {
        assert_eq!(
            row["test"]["n"], 4,
            "every family is measured on the 4 test items: {row}"
        );
    }
    let router = &report["router"];
    assert_eq!(
        (router["trained_on"].as_u64(), router["encoder"].as_str()),
        (Some(4), Some("minilm-l6")),
        "{router}"
    );
    assert!(
        router["cv_accuracy"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)),
        "{router}"
    );
    assert_eq!(
        report["selection"]["chosen"]["strategy"]["kind"], "router_cascade",
        "--strategy router-cascade"
    );
    assert!(
        is_sha256(&report["model_hashes"]["minilm-l6"]) && is_sha256(&report["model_hashes"]["smollm2-135m"]),
        "{}",
        report["model_hashes"]
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Cascade only, router only, router + cascade") && html.contains("<svg"));

    // The run is in the store, with what was measured; --history lists it.
    let (ok, listed, err) = rightsize(&["eval", "eval-router-test", "--history", "--json", "--config", &cfg]);
    assert!(ok, "{err}");
    let runs: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let run = &runs[0];
    assert_eq!(
        (run["task"].as_str(), run["version"].as_i64()),
        (Some("eval-router-test"), Some(1))
    );
    assert_eq!(run["model_hashes"], report["model_hashes"]);
    let sha = Command::new("sha256sum")
        .arg(d.join("tasks/tickets.jsonl"))
        .output()
        .unwrap();
    assert_eq!(
        run["dataset_sha256"].as_str().unwrap(),
        String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap()
    );
    assert_eq!(run["chosen"], report["selection"]["chosen"]["label"]);
    assert_eq!(run["strategy"]["kind"], "router_cascade");
    assert_eq!(run["test_quality"], report["test"]["quality"]["mean"]);
    let (ok, text, _) = rightsize(&["eval", "eval-router-test", "--history", "--config", &cfg]);
    assert!(
        ok && text.contains(run["id"].as_str().unwrap()) && text.contains("minilm-l6="),
        "{text}"
    );

    // --apply wrote version 2 with the router on; its runs start where the router says.
    let v2 = std::fs::read_to_string(d.join("tasks/eval-router-test.v2.toml")).unwrap();
    assert!(v2.contains("[router]") && v2.contains("enabled = true"), "{v2}");
    let (ok, _, verr) = rightsize(&["tasks", "validate", "--config", &cfg]);
    assert!(ok, "{verr}");
    let (ok, answer, err) = rightsize(&[
        "task",
        "eval-router-test",
        "--config",
        &cfg,
        "--json",
        "-i",
        "ticket=The upload page throws a stack overflow error.",
    ]);
    assert!(ok, "{err}");
    let a: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(a["version"], 2);
    let routed = &a["routed"];
    assert!(
        routed["tier"].is_string() && routed["confidence"].as_f64().is_some_and(|c| c > 0.0),
        "version 2 routes: {a}"
    );
    assert_eq!(
        a["tiers"][0]["tier"], routed["tier"],
        "the run starts at the routed tier: {a}"
    );
}
