//! Tasks through the HTTP API on real models: the cascade answers easy inputs with the small
//! model and escalates hard ones; a classifier tier trained from examples; a remote tier that
//! is a second real server on loopback (healthy, slow, down, circuit breaker); stats that add
//! up to the runs made.

use crate::common::fixtures::{SENTIMENT_PROMPT, SMOL_QWEN_MINILM as MODELS};
use crate::common::proxy::{self, Proxy};
use crate::common::TestServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The remote: a second real rightsize server (Qwen2.5-0.5B) behind a proxy we control.
fn remote() -> &'static (TestServer, Proxy, Proxy) {
    static R: std::sync::OnceLock<(TestServer, Proxy, Proxy)> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let s = TestServer::start("[[model]]\nid = \"qwen2.5-0.5b\"\npin = true\nctx = 1024\nmax_sequences = 2\n");
        let upstream = s.base.trim_start_matches("http://").to_owned();
        let p = Proxy::start(upstream.clone(), Duration::from_secs(30));
        // A second, always slow, route to the same server (its own breaker).
        let slow = Proxy::start(upstream, Duration::from_secs(30));
        slow.set(proxy::SLOW);
        // Warm the remote (first request compiles its grammar) so the tier timeout below
        // measures slowness, not a cold start.
        let r = s.chat("qwen2.5-0.5b", "hi", json!({"max_tokens": 2}));
        assert_eq!(r.status(), 200);
        (s, p, slow)
    })
}

fn server() -> &'static (TestServer, tempfile::TempDir) {
    static S: std::sync::OnceLock<(TestServer, tempfile::TempDir)> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let (_, proxy, slow) = remote();
        // SmolLM2's label confidence is high on plain praise and low on harsh complaints
        // (measured: 0.87 vs 0.70), so 0.84 sends only the hard input up the ladder.
        std::fs::write(t.join("sentiment.toml"), format!(
            "name = \"sentiment\"\nversion = 1\n{SENTIMENT_PROMPT}\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\nthreshold = 0.84\n[[ladder]]\nkind = \"local\"\nmodel = \"qwen2.5-0.5b\"\n")).unwrap();
        std::fs::write(t.join("remote-first.toml"), format!(
            "name = \"remote-first\"\nversion = 1\n{SENTIMENT_PROMPT}\n[[ladder]]\nkind = \"remote\"\nname = \"qwen-remote\"\nbase_url = \"{}\"\nmodel = \"qwen2.5-0.5b\"\ntimeout_ms = 30000\nretries = 0\nbreaker_failures = 2\nbreaker_cooldown_ms = 6000\nprice_input_per_mtok = 0.5\nprice_output_per_mtok = 1.5\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n", proxy.base)).unwrap();
        std::fs::write(t.join("remote-slow.toml"), format!(
            "name = \"remote-slow\"\nversion = 1\n{SENTIMENT_PROMPT}\n[[ladder]]\nkind = \"remote\"\nbase_url = \"{}\"\nmodel = \"qwen2.5-0.5b\"\ntimeout_ms = 1000\nretries = 0\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n", slow.base)).unwrap();
        std::fs::write(t.join("remote-only.toml"), format!(
            "name = \"remote-only\"\nversion = 1\n{SENTIMENT_PROMPT}\n[[ladder]]\nkind = \"remote\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"x\"\nretries = 1\nbackoff_ms = 10\n")).unwrap();
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/data/ticket-triage.examples.jsonl");
        std::fs::copy(examples, t.join("triage.jsonl")).unwrap();
        std::fs::write(t.join("triage.toml"), "name = \"triage\"\nversion = 1\ninputs = [\"ticket\"]\nprompt = \"Team for: {{ ticket }}\"\nexamples = \"triage.jsonl\"\n[output]\nkind = \"label\"\nlabels = [\"billing\", \"technical\", \"account\", \"shipping\"]\n[[ladder]]\nkind = \"classifier\"\nencoder = \"minilm-l6\"\nthreshold = 0.6\n[[ladder]]\nkind = \"local\"\nmodel = \"smollm2-135m\"\n").unwrap();
        let s = TestServer::start_with(MODELS, Some((t.to_owned(), t.join("runs.db"))));
        (s, dir)
    })
}

fn run(task: &str, input: Value) -> (u16, Value) {
    let (s, _) = server();
    let r = TestServer::client()
        .post(format!("{}/v1/tasks/{task}", s.base))
        .json(&json!({ "input": input }))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn tiers(a: &Value) -> Vec<&str> {
    a["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tier"].as_str().unwrap())
        .collect()
}

#[test]
fn cascade_answers_easy_inputs_small_and_escalates_hard_ones() {
    let (s, _) = server();
    let (st, easy) = run(
        "sentiment",
        json!({"text": "I love this product, it is wonderful and works perfectly!"}),
    );
    assert_eq!(st, 200, "{easy}");
    assert_eq!(tiers(&easy), ["local:smollm2-135m"], "{easy}");
    assert_eq!(easy["output"], "positive");
    assert_eq!(easy["escalated"], false);
    assert!(easy["confidence"].as_f64().unwrap() >= 0.84);
    assert!(
        easy["cost_usd"].as_f64().unwrap() > 0.0,
        "local tiers cost measured core-seconds"
    );
    // The labels share one prefill: tokens in = the prompt once + each label's few tokens.
    let prompt = SENTIMENT_PROMPT
        .split("prompt = \"\"\"")
        .nth(1)
        .unwrap()
        .split("\"\"\"")
        .next()
        .unwrap()
        .replace(
            "{{ text }}",
            "I love this product, it is wonderful and works perfectly!",
        );
    let chat: Value = s
        .chat("smollm2-135m", &prompt, json!({"max_tokens": 1}))
        .json()
        .unwrap();
    let prompt_tokens = chat["usage"]["prompt_tokens"].as_u64().unwrap();
    let tokens_in = easy["tiers"][0]["tokens_in"].as_u64().unwrap();
    assert!(
        tokens_in >= prompt_tokens + 2 && tokens_in <= prompt_tokens + 8,
        "{tokens_in} tokens in for a {prompt_tokens}-token prompt and 2 labels"
    );

    let (st, hard) = run(
        "sentiment",
        json!({"text": "Absolutely the worst purchase I have ever made."}),
    );
    assert_eq!(st, 200, "{hard}");
    assert_eq!(tiers(&hard), ["local:smollm2-135m", "local:qwen2.5-0.5b"], "{hard}");
    let small = &hard["tiers"][0];
    assert!(
        small["confidence"].as_f64().unwrap() < 0.84 && small["accepted"] == false,
        "{small}"
    );
    assert_eq!(hard["tier"], "local:qwen2.5-0.5b");
    assert_eq!(
        hard["output"], "negative",
        "the bigger tier gets the complaint right: {hard}"
    );
    assert_eq!(hard["escalated"], true);
    let sum: f64 = hard["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(
        (hard["cost_usd"].as_f64().unwrap() - sum).abs() < 1e-12,
        "the run costs every tier tried"
    );

    // The same task through the OpenAI chat API.
    let r = s.chat(
        "task:sentiment",
        "Absolutely the worst purchase I have ever made.",
        json!({}),
    );
    assert_eq!(r.status(), 200);
    let c: Value = r.json().unwrap();
    assert_eq!(c["choices"][0]["message"]["content"], "negative", "{c}");
    assert_eq!(c["rightsize"]["tier"], "local:qwen2.5-0.5b");

    // Stats add up to the three runs: one answered small, two escalated.
    let st: Value = TestServer::client()
        .get(format!("{}/v1/tasks/sentiment/stats", s.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let days = st["days"].as_array().unwrap();
    let runs: u64 = days.iter().map(|d| d["runs"].as_u64().unwrap()).sum();
    assert_eq!(runs, 3, "{st}");
    let escalated: f64 = days
        .iter()
        .map(|d| d["escalation_rate"].as_f64().unwrap() * d["runs"].as_f64().unwrap())
        .sum();
    assert!((escalated - 2.0).abs() < 1e-9, "{st}");
    let by_tier = &days[0]["by_tier"];
    assert_eq!(by_tier["local:qwen2.5-0.5b"], 2, "{st}");
    assert_eq!(by_tier["local:smollm2-135m"], 1, "{st}");
    let metrics = TestServer::client()
        .get(format!("{}/metrics", s.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(r#"rightsize_task_runs_total{escalated="true",task="sentiment",tier="local:qwen2.5-0.5b"} 2"#),
        "{metrics}"
    );
}

#[test]
fn classifier_tier_trains_from_examples_and_answers() {
    let (st, a) = run(
        "triage",
        json!({"ticket": "I was charged twice for my subscription this month, please refund the extra payment."}),
    );
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["tier"], "classifier:minilm-l6", "{a}");
    assert_eq!(a["output"], "billing");
    let probs = a["tiers"][0]["signals"]["probs"].as_object().unwrap();
    let total: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4 && probs.len() == 4, "{probs:?}");
    let (_, b) = run(
        "triage",
        json!({"ticket": "My parcel never arrived and the tracking number does not work."}),
    );
    assert_eq!(b["output"], "shipping", "{b}");
}

#[test]
fn bad_task_requests_get_clear_errors() {
    let (s, _) = server();
    let (st, e) = run("nope", json!({}));
    assert_eq!(st, 404, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("nope"));
    let (st, e) = run("sentiment", json!({}));
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("missing input `text`"),
        "{e}"
    );
    let (st, e) = run("sentiment", json!({"text": "ok", "extra": "x"}));
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown input `extra`"),
        "{e}"
    );
    let (st, _) = run("sentiment", json!({"text": {"nested": true}}));
    assert_eq!(st, 400);
    let r = TestServer::client()
        .post(format!("{}/v1/tasks/sentiment", s.base))
        .json(&json!({"input": {"text": "ok"}, "version": 9}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s.chat("task:nope", "hi", json!({})).status(), 404);
    let list: Value = TestServer::client()
        .get(format!("{}/v1/tasks", s.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["remote-first", "remote-only", "remote-slow", "sentiment", "triage"]
    );
}

#[test]
fn slow_remote_tier_times_out_and_the_next_tier_answers() {
    let (st, a) = run("remote-slow", json!({"text": "Great value, I would buy it again."}));
    assert_eq!(st, 200, "{a}");
    assert!(
        a["tiers"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 1000 ms"),
        "{a}"
    );
    assert!(a["tiers"][0]["latency_ms"].as_f64().unwrap() < 5000.0, "{a}");
    assert_eq!(a["tier"], "local:smollm2-135m");
}

#[test]
fn remote_tier_healthy_down_and_circuit_breaker() {
    let (_, proxy, _) = remote();
    let input = json!({"text": "Great value, I would buy it again."});

    // Healthy: the remote answers, with a confidence from its logprobs and the declared price.
    proxy.set(proxy::FORWARD);
    let (st, a) = run("remote-first", input.clone());
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["tier"], "remote:qwen-remote", "{a}");
    assert_eq!(a["output"], "positive");
    assert!(a["confidence"].as_f64().is_some_and(|c| c > 0.0 && c <= 1.0), "{a}");
    let t = &a["tiers"][0];
    let expect_cost = (t["tokens_in"].as_f64().unwrap() * 0.5 + t["tokens_out"].as_f64().unwrap() * 1.5) / 1e6;
    assert!(
        expect_cost > 0.0 && (t["cost_usd"].as_f64().unwrap() - expect_cost).abs() < 1e-12,
        "{t}"
    );

    // Down: the connection is dropped → fallback. Two failures in a row open the breaker.
    proxy.set(proxy::REFUSE);
    for _ in 0..2 {
        let (st, a) = run("remote-first", input.clone());
        assert_eq!(st, 200, "{a}");
        let err = a["tiers"][0]["error"].as_str().unwrap();
        assert!(err.contains("unreachable"), "{a}");
        assert_eq!(a["tier"], "local:smollm2-135m");
    }

    // Open: the remote is skipped without a call.
    let before = proxy.hits();
    let (_, a) = run("remote-first", input.clone());
    assert!(
        a["tiers"][0]["error"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open"),
        "{a}"
    );
    assert_eq!(proxy.hits(), before, "an open breaker sends nothing");
    assert_eq!(a["tier"], "local:smollm2-135m");

    // After the cooldown one trial goes through; it succeeds and the breaker closes.
    proxy.set(proxy::FORWARD);
    std::thread::sleep(Duration::from_millis(6100));
    for _ in 0..2 {
        let (_, a) = run("remote-first", input.clone());
        assert_eq!(a["tier"], "remote:qwen-remote", "{a}");
    }

    // A ladder whose only tier is down: a clear 503 naming the failure (after the retry).
    let t0 = Instant::now();
    let (st, e) = run("remote-only", input);
    assert_eq!(st, 503, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("remote:x") && msg.contains("unreachable"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}
