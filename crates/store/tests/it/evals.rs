//! Eval runs: stored with their hashes and report, listed newest first per task without the
//! report, fetched whole by id. Set STORE_TEST_POSTGRES_URL to run the round trip on Postgres.

use crate::common;
use serde_json::json;
use store::{EvalRunRecord, Store};

fn run(i: i64, task: &str) -> EvalRunRecord {
    EvalRunRecord {
        id: format!("eval_{task}_{i}"),
        ts_ms: 1_000 * i,
        task: task.into(),
        version: i,
        dataset: "tasks/data/triage.eval.jsonl".into(),
        dataset_sha256: "d".repeat(64),
        model_hashes: [
            ("minilm-l6".to_string(), "a".repeat(64)),
            ("smollm2-135m".to_string(), "b".repeat(64)),
        ]
        .into(),
        chosen: "router > classifier:minilm-l6@0.80 > local:smollm2-135m".into(),
        strategy: json!({"kind": "router_cascade", "tiers": ["classifier:minilm-l6", "local:smollm2-135m"], "thresholds": [0.8]}),
        meets_bar: i % 2 == 0,
        dev_quality: 0.9,
        test_quality: (i != 3).then_some(0.875),
        dev_cost_per_1k: 0.0123,
        test_cost_per_1k: (i != 3).then_some(0.0131),
        report: json!({"task": task, "points": [{"label": "router", "cost_per_1k": 0.01}], "n_dev": 20}),
    }
}

async fn round_trip(s: &Store, tag: &str) {
    let (a, b) = (format!("triage{tag}"), format!("reviews{tag}"));
    for i in 1..=4 {
        s.record_eval(&run(i, &a)).await.unwrap();
    }
    s.record_eval(&run(5, &b)).await.unwrap();
    assert!(s.record_eval(&run(1, &a)).await.is_err(), "ids are unique");

    let listed = s.eval_runs(Some(&a), 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.version).collect::<Vec<_>>(),
        [4, 3, 2, 1],
        "newest first, one task"
    );
    let third = &listed[1];
    assert_eq!(
        (third.test_quality, third.test_cost_per_1k, third.meets_bar),
        (None, None, false)
    );
    assert_eq!(third.model_hashes["smollm2-135m"], "b".repeat(64));
    assert_eq!(third.strategy["kind"], "router_cascade");
    assert!(third.report.is_null(), "listings leave the report out");
    assert_eq!(s.eval_runs(Some(&a), 2).await.unwrap().len(), 2);

    let whole = s.eval_run(&format!("eval_{a}_2")).await.unwrap().unwrap();
    assert_eq!(whole, run(2, &a), "everything comes back as stored");
    assert!(s.eval_run("eval_none").await.unwrap().is_none());
}

#[tokio::test]
async fn eval_runs_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rs.db");
    let s = Store::open(path.to_str().unwrap()).await.unwrap();
    round_trip(&s, "").await;
    assert_eq!(s.eval_runs(None, 100).await.unwrap().len(), 5);
    // Reopening (schema creation again) keeps the rows.
    drop(s);
    let s = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(s.eval_runs(None, 100).await.unwrap().len(), 5);
}

#[tokio::test]
async fn eval_runs_round_trip_on_postgres_when_configured() {
    let Some((url, _turn)) = common::postgres_public("eval-runs").await else {
        return;
    };
    let s = Store::open(&url).await.unwrap();
    round_trip(&s, &common::unique_tag()).await;
}
