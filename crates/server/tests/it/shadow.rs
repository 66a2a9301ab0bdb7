//! Continuous evaluation on real models: shadow runs of live task runs on the top tier, the
//! agreement they measure, drift alerts (stats, metrics, log) when a cheap tier disagrees with
//! the top tier and silence when it does not; the in-flight bound (skipped and counted, the
//! live answer never waiting); and the scheduled re-evaluation that stores quality and alerts
//! when a new task version is worse.
//!
//! Cheap tiers are MiniLM classifiers trained on labelled reviews; the disagreeing one is
//! trained on the same reviews with the labels swapped, so it is wrong by construction.

use crate::common::fixtures::{sentiment_examples, FRESH_REVIEWS, SENTIMENT_PROMPT};
use crate::common::logs::Logs;
use crate::common::proxy::{self, Proxy};
use crate::common::TestServer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn logs() -> &'static Logs {
    static L: OnceLock<Logs> = OnceLock::new();
    L.get_or_init(|| Logs::new(tracing::Level::INFO))
}

/// A server whose lines go to this file's capture.
fn start(toml: &str, tasks: Option<(PathBuf, PathBuf)>) -> TestServer {
    TestServer::start_logged(toml, tasks, None, Some(logs().clone()))
}

/// A sentiment task: a classifier trained on `examples` answers everything (threshold 0),
/// `top` is the top tier.
fn write_task(dir: &Path, name: &str, version: i64, file: &str, examples: &str, top: &str, extra: &str) {
    std::fs::write(dir.join(format!("{file}.examples.jsonl")), examples).unwrap();
    let task = format!(
        "name = \"{name}\"\nversion = {version}\nexamples = \"{file}.examples.jsonl\"\n{extra}\n{SENTIMENT_PROMPT}\n[[ladder]]\nkind = \"classifier\"\nencoder = \"minilm-l6\"\nthreshold = 0.0\n{top}"
    );
    std::fs::write(dir.join(format!("{file}.toml")), task).unwrap();
}

fn run(base: &str, task: &str, text: &str) -> Value {
    let r = TestServer::client()
        .post(format!("{base}/v1/tasks/{task}"))
        .json(&json!({"input": {"text": text}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn stats(base: &str, task: &str) -> Value {
    TestServer::client()
        .get(format!("{base}/v1/tasks/{task}/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn metrics(base: &str) -> String {
    TestServer::client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Poll `f` every 200 ms until it gives a value, for at most `secs`.
fn wait_for<T>(what: &str, secs: u64, f: impl Fn() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The newest re-evaluation in `reviews`' stats, once it is of `version`.
fn reeval_of(base: &str, version: i64) -> impl Fn() -> Option<Value> + '_ {
    move || Some(stats(base, "reviews")["shadow"]["reeval"].clone()).filter(|r| r["version"] == version)
}

fn shadow_rows(db: &Path, task: &str) -> Vec<store::ShadowRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        store::Store::open(&db.display().to_string())
            .await
            .unwrap()
            .shadow_runs(task, 100)
            .await
            .unwrap()
    })
}

const QWEN_TOP: &str = "[[ladder]]\nkind = \"local\"\nmodel = \"qwen2.5-0.5b\"\n";

#[test]
fn shadow_agreement_is_tracked_and_a_disagreeing_tier_raises_a_drift_alert() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    write_task(t, "agree", 1, "agree", &sentiment_examples(false), QWEN_TOP, "");
    write_task(t, "flipped", 1, "flipped", &sentiment_examples(true), QWEN_TOP, "");
    let cfg = "[[model]]\nid = \"qwen2.5-0.5b\"\npin = true\nctx = 512\nmax_sequences = 4\n[[model]]\nid = \"minilm-l6\"\npin = true\n\
               [shadow]\nrate = 1.0\nmax_in_flight = 16\nwindow = 4\nmin_samples = 3\nmin_agreement = 0.6\n";
    let db = t.join("runs.db");
    let s = start(cfg, Some((t.to_owned(), db.clone())));

    // Live runs: both tasks answer every review with their (cheap) classifier.
    let mut answers: Vec<(Value, Value)> = Vec::new();
    for (text, _) in FRESH_REVIEWS {
        let (a, f) = (run(&s.base, "agree", text), run(&s.base, "flipped", text));
        assert_eq!(
            (a["tier"].as_str(), f["tier"].as_str()),
            (Some("classifier:minilm-l6"), Some("classifier:minilm-l6"))
        );
        assert_ne!(
            a["output"], f["output"],
            "the swapped-label head answers the other label: {a} {f}"
        );
        answers.push((a, f));
    }
    let n = FRESH_REVIEWS.len() as u64;
    let base = s.base.as_str();
    let done = |task: &'static str| move || Some(stats(base, task)).filter(|st| st["shadow"]["samples"] == n);
    let (sa, sf) = (
        wait_for("agree's shadow runs", 180, done("agree")),
        wait_for("flipped's shadow runs", 180, done("flipped")),
    );

    // Each row shadows one live run on the top tier; the top tier gave one answer per review,
    // which exactly one of the two opposite served answers matches.
    let by_run = |task: &str| -> HashMap<String, store::ShadowRecord> {
        shadow_rows(&db, task)
            .into_iter()
            .map(|r| (r.run_id.clone(), r))
            .collect()
    };
    let (ra, rf) = (by_run("agree"), by_run("flipped"));
    let mut agree_sum = 0.0;
    for (a, f) in &answers {
        let (x, y) = (&ra[a["run_id"].as_str().unwrap()], &rf[f["run_id"].as_str().unwrap()]);
        for r in [x, y] {
            assert_eq!(
                (r.served_tier.as_str(), r.shadow_tier.as_str(), r.version),
                ("classifier:minilm-l6", "local:qwen2.5-0.5b", 1)
            );
            assert!(r.error.is_none() && r.cost_usd > 0.0, "{r:?}");
        }
        assert_eq!(x.agreement.unwrap() + y.agreement.unwrap(), 1.0, "{x:?} {y:?}");
        agree_sum += x.agreement.unwrap();
    }

    // Stats: the rolling agreement is the rows' mean; the faithful head stays quiet.
    let (a, f) = (&sa["shadow"], &sf["shadow"]);
    let rolling_a = a["rolling_agreement"].as_f64().unwrap();
    assert!((rolling_a - agree_sum / n as f64).abs() < 1e-9, "{a}");
    assert!((rolling_a + f["rolling_agreement"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(
        rolling_a >= 0.6,
        "Qwen agrees with the faithful head on clear reviews: {a}"
    );
    assert_eq!(
        (a["drift_alert"].as_bool(), a["reasons"].as_array().unwrap().len()),
        (Some(false), 0),
        "{a}"
    );
    assert_eq!(
        (
            a["days"][0]["samples"].as_u64(),
            a["rolling_samples"].as_u64(),
            a["skipped"].as_u64()
        ),
        (Some(n), Some(n), Some(0))
    );
    assert_eq!(f["drift_alert"], true, "{f}");
    assert!(
        f["reasons"][0].as_str().unwrap().contains("flipped: shadow agreement"),
        "{f}"
    );

    // Metrics: per-sample outcomes, the agreement gauge, one alert raised for `flipped` only.
    let m = metrics(&s.base);
    let disagreed_f = rf.values().filter(|r| r.agreement == Some(0.0)).count();
    assert!(
        m.contains(&format!(
            "rightsize_shadow_runs_total{{agree=\"false\",task=\"flipped\"}} {disagreed_f}"
        )),
        "{m}"
    );
    assert!(
        m.contains("rightsize_drift_alert{source=\"shadow\",task=\"flipped\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rightsize_drift_alerts_total{source=\"shadow\",task=\"flipped\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rightsize_drift_alert{source=\"shadow\",task=\"agree\"} 0"),
        "{m}"
    );
    assert!(
        !m.contains("rightsize_drift_alerts_total{source=\"shadow\",task=\"agree\"}"),
        "{m}"
    );
    assert!(
        m.contains(&format!("rightsize_shadow_agreement{{task=\"agree\"}} {rolling_a}")),
        "{m}"
    );

    // The alert is logged as a warning, naming the task and never the reviews.
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("drift alert raised") && l.contains("flipped")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("drift alert raised") && l.contains("task=agree")),
        "{text}"
    );
    for (review, _) in FRESH_REVIEWS {
        assert!(!text.contains(review), "a review reached the logs");
    }
}

#[test]
fn shadow_runs_beyond_max_in_flight_are_skipped_and_never_delay_the_answer() {
    // The top tier is a second real server behind a proxy that holds every request 8 s: a
    // shadow run stays in flight well past the live answers.
    let remote = start(
        "[[model]]\nid = \"smollm2-135m\"\npin = true\nctx = 512\nmax_sequences = 2\n",
        None,
    );
    let slow = Proxy::start(
        remote.base.trim_start_matches("http://").to_owned(),
        Duration::from_secs(8),
    );
    slow.set(proxy::SLOW);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let top = format!("[[ladder]]\nkind = \"remote\"\nbase_url = \"{}\"\nmodel = \"smollm2-135m\"\ntimeout_ms = 120000\nretries = 0\n", slow.base);
    write_task(t, "slow-top", 1, "slow-top", &sentiment_examples(false), &top, "");
    let cfg = "[[model]]\nid = \"minilm-l6\"\npin = true\n[shadow]\nrate = 1.0\nmax_in_flight = 1\nwindow = 10\nmin_samples = 1\n";
    let db = t.join("runs.db");
    let s = start(cfg, Some((t.to_owned(), db.clone())));

    let first = run(&s.base, "slow-top", FRESH_REVIEWS[0].0);
    assert_eq!(first["tier"], "classifier:minilm-l6");
    // The answer is back while its shadow run is still held by the proxy.
    let st = stats(&s.base, "slow-top");
    assert_eq!(
        (st["shadow"]["in_flight"].as_u64(), st["shadow"]["samples"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    assert!(shadow_rows(&db, "slow-top").is_empty());
    // The one slot is taken: the next two samples are skipped and counted, not queued.
    for (text, _) in &FRESH_REVIEWS[1..3] {
        assert_eq!(run(&s.base, "slow-top", text)["tier"], "classifier:minilm-l6");
    }
    let st = stats(&s.base, "slow-top");
    assert_eq!(
        (
            st["shadow"]["skipped"].as_u64(),
            st["shadow"]["in_flight"].as_u64(),
            st["shadow"]["samples"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{st}"
    );
    assert!(metrics(&s.base).contains("rightsize_shadow_skipped_total{task=\"slow-top\"} 2"));

    // Then the held shadow run finishes and is the only row: the first run's.
    wait_for("the shadow row", 120, || {
        Some(()).filter(|_| !shadow_rows(&db, "slow-top").is_empty())
    });
    let rows = shadow_rows(&db, "slow-top");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].run_id.as_str(), rows[0].shadow_tier.as_str()),
        (first["run_id"].as_str().unwrap(), "remote:smollm2-135m")
    );
    assert!(rows[0].agreement.is_some() && rows[0].error.is_none(), "{:?}", rows[0]);
    assert!(slow.hits.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let st = wait_for("the slot back", 10, || {
        Some(stats(&s.base, "slow-top")).filter(|st| st["shadow"]["in_flight"] == 0)
    });
    assert_eq!(st["shadow"]["samples"], 1);
}

#[test]
fn scheduled_reeval_stores_quality_and_alerts_on_a_degraded_version() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    let data: String = FRESH_REVIEWS
        .iter()
        .map(|(text, label)| format!("{}\n", json!({"input": {"text": text}, "expected": label})))
        .collect();
    std::fs::write(t.join("reviews.eval.jsonl"), data).unwrap();
    let top = "[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n";
    let ds = "dataset = \"reviews.eval.jsonl\"";
    write_task(t, "reviews", 1, "reviews", &sentiment_examples(false), top, ds);
    let cfg = "[[model]]\nid = \"smollm2-135m\"\npin = true\nctx = 512\nmax_sequences = 4\n[[model]]\nid = \"minilm-l6\"\npin = true\n[shadow]\nreeval_every_s = 1\nreeval_concurrency = 4\n";
    let db = t.join("runs.db");

    // Version 1, served by the faithful head: a first re-evaluation, nothing to compare with.
    let v1 = {
        let s = start(cfg, Some((t.to_owned(), db.clone())));
        let r = wait_for("v1's re-evaluation", 180, reeval_of(&s.base, 1));
        let st = stats(&s.base, "reviews");
        assert_eq!(st["shadow"]["drift_alert"], false, "{st}");
        assert!(metrics(&s.base).contains(&format!(
            "rightsize_reeval_quality{{task=\"reviews\"}} {}",
            r["quality"].as_f64().unwrap()
        )));
        r
    };
    assert_eq!(
        (v1["n"].as_u64(), v1["alert"].as_bool(), v1["baseline_quality"].as_f64()),
        (Some(FRESH_REVIEWS.len() as u64), Some(false), None),
        "{v1}"
    );
    assert_eq!(
        v1["config"], "classifier:minilm-l6@0.00 > local:smollm2-135m",
        "the served cascade, with the task's thresholds"
    );
    assert_eq!(
        v1["quality"], v1["tiers"]["classifier:minilm-l6"],
        "threshold 0: the classifier answers everything"
    );
    assert!(
        v1["quality"].as_f64().unwrap() >= 0.75,
        "the faithful head gets clear reviews right: {v1}"
    );

    // Version 2 is deployed with the swapped-label head: its re-evaluation alerts against v1.
    write_task(t, "reviews", 2, "reviews.v2", &sentiment_examples(true), top, ds);
    let s = start(cfg, Some((t.to_owned(), db.clone())));
    let v2 = wait_for("v2's re-evaluation", 180, reeval_of(&s.base, 2));
    assert_eq!(
        (
            v2["alert"].as_bool(),
            v2["baseline_version"].as_i64(),
            &v2["baseline_quality"]
        ),
        (Some(true), Some(1), &v1["quality"]),
        "{v2}"
    );
    assert!(
        v2["quality"].as_f64().unwrap() < v1["quality"].as_f64().unwrap() - 0.02,
        "{v2}"
    );
    assert!(
        v2["reason"]
            .as_str()
            .unwrap()
            .contains("re-evaluation of v2 against v1: quality dropped"),
        "{v2}"
    );
    assert_eq!(
        v2["tiers"]["local:smollm2-135m"], v1["tiers"]["local:smollm2-135m"],
        "the top tier did not move; the head did"
    );
    let st = stats(&s.base, "reviews");
    assert_eq!(st["shadow"]["drift_alert"], true, "{st}");
    assert!(
        st["shadow"]["reasons"][0].as_str().unwrap().contains("quality dropped"),
        "{st}"
    );
    let m = metrics(&s.base);
    assert!(
        m.contains("rightsize_drift_alert{source=\"reeval\",task=\"reviews\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rightsize_drift_alerts_total{source=\"reeval\",task=\"reviews\"} 1"),
        "{m}"
    );
}
