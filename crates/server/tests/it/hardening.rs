//! Bad and costly input on real models: every numeric field fed NaN, infinities, huge and
//! negative values gets a 4xx JSON error (never a dropped connection, never a 5xx); a request
//! cannot buy unbounded CPU (message count, embedding size, embeddings in flight, deadline);
//! embeddings obey the guardrails; the audit keeps no raw PII and no unknown model or task name
//! a client typed; an input that can never fit is a 400, a full queue on the task path a 429;
//! client request ids are bounded.

use crate::common::fixtures::SENTIMENT_PROMPT;
use crate::common::{self, TestServer};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOML: &str = r#"
max_messages = 8
max_embedding_chars = 150000
max_embedding_in_flight = 1
[audit]
content = "full"
[[model]]
id = "smollm2-135m"
pin = true
ctx = 256
max_sequences = 2
[[model]]
id = "smol-busy"
source = "smollm2-135m"
ctx = 256
max_sequences = 1
max_queue = 0
[[model]]
id = "minilm-l6"
pin = true
[[model]]
id = "minilm-slow"
source = "minilm-l6"
"#;

const CARD: &str = "4111 1111 1111 1111";
const EMAIL: &str = "jane.doe@example.com";

struct Fixture {
    server: TestServer,
    dir: tempfile::TempDir,
    block_key: String,
    redact_key: String,
}

fn fx() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        for (name, model) in [("mood", "smollm2-135m"), ("busy", "smol-busy")] {
            std::fs::write(t.join(format!("{name}.toml")), format!("name = \"{name}\"\nversion = 1\n{SENTIMENT_PROMPT}[[ladder]]\nkind = \"local\"\nmodel = \"{model}\"\n")).unwrap();
        }
        let db = t.join("rs.db");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (block_key, redact_key) = rt.block_on(async {
            let s = store::Store::open(&db.display().to_string()).await.unwrap();
            let mut out = Vec::new();
            for (name, policy) in [("block", r#"{"pii":"block"}"#), ("redact", r#"{"pii":"redact"}"#)] {
                let k = s.create_key(name, &[store::KeyScope::Inference], "interactive").await.unwrap();
                s.set_key_guard(name, Some(policy)).await.unwrap();
                out.push(k.secret);
            }
            (out[0].clone(), out[1].clone())
        });
        let server = TestServer::start_full(TOML, Some((t.to_owned(), db.clone())), Some(db));
        Fixture { server, dir, block_key, redact_key }
    })
}

fn url(path: &str) -> String {
    format!("{}{path}", fx().server.base)
}

/// Every audit record's JSON line.
fn audit_lines() -> Vec<Value> {
    common::audit_lines(&fx().dir.path().join("rs.db"))
}

fn record_of(request_id: &str) -> Value {
    // Failed requests are recorded best effort, just after the answer: give it a moment.
    for _ in 0..50 {
        if let Some(r) = audit_lines().into_iter().find(|r| r["request_id"] == request_id) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no audit record for {request_id}");
}

/// Sends `body` and returns (status, JSON body); a dropped connection or a body that is not
/// JSON fails the test, naming `what`.
fn send(
    client: &reqwest::blocking::Client,
    path: &str,
    body: &Value,
    header: Option<(&str, &str)>,
    what: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client.post(url(path)).json(body);
    if let Some((k, v)) = header {
        req = req.header(k, v);
    }
    let r = req
        .send()
        .unwrap_or_else(|e| panic!("{what}: no answer (connection dropped?): {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap_or_else(|e| panic!("{what}: body not read: {e}"));
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {status} with a body that is not JSON: {text}"));
    (status, v, headers)
}

fn assert_client_error(status: u16, v: &Value, what: &str) {
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}: {v}"
    );
    assert!(
        v["error"]["message"].is_string(),
        "{what}: OpenAI-shaped error expected: {v}"
    );
}

/// Values no numeric field accepts: non-finite (as strings), huge, negative, past u64.
fn bad_values() -> Vec<Value> {
    let raw = [
        "1e300",
        "-1e300",
        "-1",
        "1000000000000000000000000000000",
        "18446744073709551616",
        "1.5e308",
    ];
    let mut v: Vec<Value> = raw.iter().map(|r| serde_json::from_str(r).unwrap()).collect();
    v.extend(["NaN", "nan", "inf", "-inf", "Infinity", "1e300"].map(|s| json!(s)));
    v
}

#[test]
fn every_numeric_field_rejects_nan_inf_huge_and_negative_with_a_4xx() {
    let f = fx();
    let anon = TestServer::client();
    let admin = f.server.admin_client();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let sampling = [
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "keep_alive",
    ];
    let bases = [
        (
            "/v1/chat/completions",
            json!({"model": "smollm2-135m", "messages": msgs, "max_tokens": 1}),
            &["top_logprobs", "logprobs"][..],
        ),
        (
            "/v1/completions",
            json!({"model": "smollm2-135m", "prompt": "hi", "max_tokens": 1}),
            &["logprobs"][..],
        ),
        (
            "/v1/chat/completions",
            json!({"model": "task:mood", "messages": msgs}),
            &["top_logprobs", "logprobs"][..],
        ),
    ];
    let mut tried = 0;
    for (path, base, extra) in &bases {
        for field in sampling.iter().chain(extra.iter()) {
            for value in bad_values() {
                // -1 is a valid penalty (-2..2); a negative keep_alive means "forever".
                let valid = matches!(*field, "presence_penalty" | "frequency_penalty") && value == json!(-1)
                    || *field == "keep_alive" && value.as_f64().is_some_and(|x| x < 0.0);
                if valid {
                    continue;
                }
                let mut body = base.clone();
                body[*field] = value.clone();
                let what = format!("{path} {} {field}={value}", base["model"]);
                let client = if *field == "keep_alive" { &admin } else { &anon };
                let (status, v, _) = send(client, path, &body, None, &what);
                assert_client_error(status, &v, &what);
                if *field == "keep_alive" {
                    assert_eq!(status, 400, "{what}: {v}");
                    assert_eq!(v["error"]["param"], "keep_alive", "{what}: {v}");
                }
                tried += 1;
            }
        }
    }
    for value in bad_values() {
        let what = format!("embeddings dimensions={value}");
        let (status, v, _) = send(
            &anon,
            "/v1/embeddings",
            &json!({"model": "minilm-l6", "input": "hi", "dimensions": value}),
            None,
            &what,
        );
        assert_client_error(status, &v, &what);
        let what = format!("task version={value}");
        let (status, v, _) = send(
            &anon,
            "/v1/tasks/mood",
            &json!({"input": {"text": "great"}, "version": value}),
            None,
            &what,
        );
        assert_client_error(status, &v, &what);
        tried += 2;
    }
    // A whole number past the model's size is refused before anything is embedded.
    let (status, v, _) = send(
        &anon,
        "/v1/embeddings",
        &json!({"model": "minilm-l6", "input": "hi", "dimensions": 385}),
        None,
        "dimensions 385",
    );
    assert_eq!(status, 400, "{v}");
    // The deadline header: not a positive number of seconds → 400, on every endpoint.
    let ends = [
        (
            "/v1/chat/completions",
            json!({"model": "smollm2-135m", "messages": msgs, "max_tokens": 1}),
        ),
        (
            "/v1/completions",
            json!({"model": "smollm2-135m", "prompt": "hi", "max_tokens": 1}),
        ),
        ("/v1/embeddings", json!({"model": "minilm-l6", "input": "hi"})),
    ];
    for (path, body) in &ends {
        for h in ["NaN", "inf", "-inf", "-1", "0", "abc", "1e309"] {
            let what = format!("{path} x-request-timeout: {h}");
            let (status, v, _) = send(&anon, path, body, Some(("x-request-timeout", h)), &what);
            assert_eq!(status, 400, "{what}: {v}");
            assert_eq!(v["error"]["param"], "x-request-timeout", "{what}: {v}");
        }
        // A huge deadline is capped to the server's, not a panic.
        let what = format!("{path} x-request-timeout: 1e300");
        let (status, v, _) = send(&anon, path, body, Some(("x-request-timeout", "1e300")), &what);
        assert_eq!(status, 200, "{what}: {v}");
    }
    assert!(tried > 400, "{tried} bad requests");
}

#[test]
fn too_many_messages_is_a_400_naming_the_limit_before_any_work() {
    let msgs: Vec<Value> = (0..9)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i}")}))
        .collect();
    for model in ["smollm2-135m", "task:mood"] {
        let (status, v, h) = send(
            &TestServer::client(),
            "/v1/chat/completions",
            &json!({"model": model, "messages": msgs, "max_tokens": 1}),
            None,
            model,
        );
        assert_eq!(status, 400, "{model}: {v}");
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "too_many_messages");
        assert!(v["error"]["message"].as_str().unwrap().contains("at most 8"), "{v}");
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(record_of(id)["status"], "error:400");
    }
    // At the limit it runs.
    let (status, v, _) = send(
        &TestServer::client(),
        "/v1/chat/completions",
        &json!({"model": "smollm2-135m", "messages": msgs[..8].to_vec(), "max_tokens": 1}),
        None,
        "8 messages",
    );
    assert_eq!(status, 200, "{v}");
}

#[test]
fn embeddings_obey_pii_block_and_redact_and_the_audit_keeps_no_raw_pii() {
    let f = fx();
    let c = TestServer::client();
    let text = format!("Charge {CARD} and mail {EMAIL}");
    // pii = "block": refused, naming kinds, never values.
    let r = c
        .post(url("/v1/embeddings"))
        .bearer_auth(&f.block_key)
        .json(&json!({"model": "minilm-l6", "input": [text, "clean text"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "guardrail_blocked", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("credit_card") && !msg.contains("4111"), "{msg}");
    let rec = record_of(&id);
    assert_eq!(rec["status"], "error:422");
    assert!(
        !rec.to_string().contains(CARD) && !rec.to_string().contains(EMAIL),
        "{rec}"
    );
    // A clean input under the same key is embedded.
    let r = c
        .post(url("/v1/embeddings"))
        .bearer_auth(&f.block_key)
        .json(&json!({"model": "minilm-l6", "input": "clean text"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // pii = "redact": the model embeds the redacted text; the audit holds that, never the values.
    let r = c
        .post(url("/v1/embeddings"))
        .bearer_auth(&f.redact_key)
        .json(&json!({"model": "minilm-l6", "input": text}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let v: Value = r.json().unwrap();
    assert_eq!(v["rightsize"]["guard"]["events"]["redacted.email"], 1, "{v}");
    let redacted: Vec<f64> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let rec = record_of(&id);
    assert_eq!(rec["status"], "ok");
    let input = rec["input"].as_str().unwrap();
    assert!(
        input.contains("[EMAIL]") && !rec.to_string().contains(EMAIL) && !rec.to_string().contains(CARD),
        "{rec}"
    );
    assert_eq!(rec["guard"]["events"]["redacted.email"], 1, "{rec}");
    // What was embedded is the redacted text: the same vector as sending it redacted.
    let clean: Vec<String> = serde_json::from_str(input).unwrap();
    let r: Value = c
        .post(url("/v1/embeddings"))
        .json(&json!({"model": "minilm-l6", "input": clean[0]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let direct: Vec<f64> = r["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        redacted.iter().zip(&direct).all(|(a, b)| (a - b).abs() < 1e-5),
        "the model saw the redacted text"
    );
    // A request that fails before its guardrails ran (unknown encoding) is redacted in the audit.
    let r = c
        .post(url("/v1/embeddings"))
        .bearer_auth(&f.redact_key)
        .json(&json!({"model": "minilm-l6", "input": text, "encoding_format": "hex"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let rec = record_of(r.headers()["x-request-id"].to_str().unwrap());
    assert!(
        !rec.to_string().contains(EMAIL) && !rec.to_string().contains(CARD),
        "{rec}"
    );
}

#[test]
fn unknown_model_and_task_names_are_not_kept_raw_in_the_audit() {
    let c = TestServer::client();
    let name = format!("{EMAIL} {CARD}");
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/completions", json!({"model": name, "prompt": "hi"})),
        ("/v1/embeddings", json!({"model": name, "input": "hi"})),
        (
            "/v1/chat/completions",
            json!({"model": format!("task:{name}"), "messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/tasks/jane.doe@example.com", json!({"input": {"text": "hi"}})),
    ];
    for (path, body) in &cases {
        let (status, v, h) = send(&c, path, body, None, path);
        assert_eq!(status, 404, "{path}: {v}");
        let rec = record_of(h["x-request-id"].to_str().unwrap());
        let s = rec.to_string();
        assert!(!s.contains(EMAIL) && !s.contains("4111"), "{path}: {rec}");
        let field = if rec["task"].is_string() {
            &rec["task"]
        } else {
            &rec["model"]
        };
        assert!(
            field.as_str().unwrap().starts_with("unknown:hmac-sha256:"),
            "{path}: {rec}"
        );
    }
    // Known names stay readable.
    let (status, _, h) = send(
        &c,
        "/v1/embeddings",
        &json!({"model": "minilm-l6", "input": "hi"}),
        None,
        "known",
    );
    assert_eq!(status, 200);
    assert_eq!(record_of(h["x-request-id"].to_str().unwrap())["model"], "minilm-l6");
}

#[test]
fn embeddings_are_bounded_in_size_concurrency_and_time() {
    let c = TestServer::client();
    // Over `max_embedding_chars`: 400 naming the limit, nothing computed.
    let (status, v, _) = send(
        &c,
        "/v1/embeddings",
        &json!({"model": "minilm-l6", "input": ["x".repeat(150_001)]}),
        None,
        "too many chars",
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "input_too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("150000"), "{v}");
    // A large request: 240 inputs of ~70 words each.
    let sentence = "the quick brown fox jumps over the lazy dog while the river runs past the old mill and ";
    let big: Vec<String> = (0..240).map(|i| format!("{i} {}", sentence.repeat(4))).collect();
    let body = json!({"model": "minilm-slow", "input": big});
    let (status, v, _) = send(
        &c,
        "/v1/embeddings",
        &json!({"model": "minilm-slow", "input": "warm up"}),
        None,
        "warm",
    );
    assert_eq!(status, 200, "{v}");
    let b2 = body.clone();
    let first = std::thread::spawn(move || {
        let t = Instant::now();
        let r = TestServer::client()
            .post(url("/v1/embeddings"))
            .json(&b2)
            .send()
            .unwrap();
        (r.status().as_u16(), t.elapsed())
    });
    // While it computes, a second request for the same model is told to come back later.
    std::thread::sleep(Duration::from_millis(400));
    let (status, v, h) = send(
        &c,
        "/v1/embeddings",
        &json!({"model": "minilm-slow", "input": "hi"}),
        None,
        "second",
    );
    assert_eq!(status, 429, "{v}");
    assert_eq!(h["retry-after"], "1");
    let (status, full) = first.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        full > Duration::from_millis(1500),
        "the big request takes long enough to test against: {full:?}"
    );
    // The deadline is honoured: 504 well before the work would have ended, and the work stops
    // (the slot is free again soon after).
    let t0 = Instant::now();
    let (status, v, _) = send(
        &c,
        "/v1/embeddings",
        &body,
        Some(("x-request-timeout", "0.3")),
        "deadline",
    );
    assert_eq!(status, 504, "{v}");
    assert!(
        t0.elapsed() < full / 2 + Duration::from_millis(300),
        "{:?} vs {full:?}",
        t0.elapsed()
    );
    let mut freed = None;
    while freed.is_none() && t0.elapsed() < full * 2 {
        let (status, _, _) = send(
            &c,
            "/v1/embeddings",
            &json!({"model": "minilm-slow", "input": "hi"}),
            None,
            "after",
        );
        if status == 200 {
            freed = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let freed = freed.unwrap_or_else(|| panic!("the slot comes back (the whole request takes {full:?})"));
    assert!(
        freed < full,
        "the abandoned work stopped early: slot free after {freed:?}, the whole request takes {full:?}"
    );
}

#[test]
fn an_input_that_never_fits_is_a_400_and_a_full_queue_a_429_on_the_task_path() {
    let c = TestServer::client();
    let long = "This product was a disappointment in every possible way. ".repeat(60);
    let (status, v, h) = send(
        &c,
        "/v1/tasks/mood",
        &json!({"input": {"text": long}}),
        None,
        "task too long",
    );
    assert_eq!(status, 400, "not 503, which clients retry forever: {v}");
    assert!(h.get("retry-after").is_none());
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("at most 256"),
        "names the limit: {v}"
    );
    let (status, v, _) = send(
        &c,
        "/v1/chat/completions",
        &json!({"model": "task:mood", "messages": [{"role": "user", "content": long}]}),
        None,
        "task chat too long",
    );
    assert_eq!(status, 400, "{v}");
    let (status, v, _) = send(
        &c,
        "/v1/chat/completions",
        &json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": long}]}),
        None,
        "chat too long",
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // smol-busy runs one sequence and queues none: hold it with a stream, then run a task on it.
    let mut stream = c
        .post(url("/v1/chat/completions"))
        .json(&json!({"model": "smol-busy", "stream": true, "ignore_eos": true, "max_tokens": 200, "messages": [{"role": "user", "content": "Count to one hundred."}]}))
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut first = [0u8; 16];
    std::io::Read::read(&mut stream, &mut first).unwrap();
    let (status, v, h) = send(
        &c,
        "/v1/tasks/busy",
        &json!({"input": {"text": "great"}}),
        None,
        "busy task",
    );
    assert_eq!(status, 429, "{v}");
    assert_eq!(h["retry-after"], "1");
    drop(stream);
}

#[test]
fn client_request_ids_are_kept_only_when_short_and_plain() {
    let c = TestServer::client();
    let body = json!({"model": "minilm-l6", "input": "hi"});
    let echo = |id: &str| {
        let r = c
            .post(url("/v1/embeddings"))
            .header("x-request-id", id)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.headers()["x-request-id"].to_str().unwrap().to_owned()
    };
    let good = "trace-42_a.b:c";
    assert_eq!(echo(good), good);
    assert_eq!(record_of(good)["request_id"], good);
    for bad in [
        "x".repeat(129),
        "has space".to_owned(),
        "<script>".to_owned(),
        format!("id-{EMAIL}"),
    ] {
        let got = echo(&bad);
        assert_ne!(got, bad);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "a generated id: {got}");
        assert!(!record_of(&got).to_string().contains(&bad));
    }
    assert_eq!(echo(&"y".repeat(128)), "y".repeat(128));
}

#[test]
fn large_pii_checks_leave_the_async_workers_free() {
    let f = fx();
    // ~3.5 MB dense with PII through three paths at once (the test server has two async
    // workers): the chat guardrails' rewrite, the audit's redaction of a refused embeddings
    // request (over `max_embedding_chars`), and `/v1/guard/pii`.
    let text = format!("Mail {EMAIL} or call +44 20 7946 0958 about card {CARD}, thanks. ").repeat(45_000);
    let calls = [
        (
            "/v1/chat/completions",
            json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": text}], "max_tokens": 1}),
        ),
        ("/v1/embeddings", json!({"model": "minilm-l6", "input": [text]})),
        ("/v1/guard/pii", json!({"input": text})),
    ];
    let runs: Vec<_> = calls
        .into_iter()
        .map(|(path, body)| {
            let key = f.redact_key.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = TestServer::client()
                    .post(url(path))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .unwrap();
                (path, r.status().as_u16(), t.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = TestServer::client().get(url("/health")).send().unwrap();
    let health = t.elapsed();
    assert_eq!(r.status(), 200);
    let done: Vec<(&str, u16, Duration)> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    let fastest = done.iter().map(|d| d.2).min().unwrap();
    assert_eq!(
        done.iter().map(|d| d.1).collect::<Vec<_>>(),
        [400, 400, 200],
        "{done:?}"
    );
    assert!(
        fastest > Duration::from_millis(1000),
        "detection takes long enough to see: {done:?}"
    );
    assert!(
        health < Duration::from_millis(300),
        "/health answered in {health:?} while PII detection ran ({done:?})"
    );
}
