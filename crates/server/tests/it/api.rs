//! The HTTP API against a real server with real models: the official OpenAI client's
//! conformance, OpenAI-shaped errors for bad input, backpressure and cancellation.

use crate::common::TestServer;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
max_body_bytes = 65536
[[model]]
id = "smollm2-135m"
pin = true
ctx = 2048
max_sequences = 4
[[model]]
id = "minilm-l6"
pin = true
[[model]]
id = "qwen2.5-0.5b"
ctx = 1024
max_sequences = 2
pin = true
[[model]]
id = "tiny-queue"
source = "smollm2-135m"
ctx = 1024
max_sequences = 1
max_queue = 1
"#;

fn server() -> &'static TestServer {
    static S: std::sync::OnceLock<TestServer> = std::sync::OnceLock::new();
    S.get_or_init(|| TestServer::start(CONFIG))
}

#[test]
fn official_openai_client_conformance() {
    let s = server();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/openai_conformance.py");
    let py = testkit::python();
    let out = std::process::Command::new(&py)
        .args([script, &s.base, "qwen2.5-0.5b", "minilm-l6"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", py.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "conformance failed with {} (is the `openai` package installed? scripts/setup.sh dev installs it into target/py)", py.display());
    assert!(stdout.contains(" passed, 0 failed"));
}

fn post_raw(path: &str, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let r = TestServer::client()
        .post(format!("{}{path}", server().base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(json!(null)))
}

fn assert_openai_error(status: u16, body: &serde_json::Value, want: u16) {
    assert_eq!(status, want, "{body}");
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(e["type"].is_string(), "{body}");
}

#[test]
fn bad_input_gets_clear_4xx_and_the_server_stays_up() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed json", b"{\"model\": \"smollm2-135m\", \"messages\": [".to_vec(), 400),
        ("wrong types", br#"{"model": "smollm2-135m", "messages": "hello"}"#.to_vec(), 422),
        ("missing field", br#"{"messages": [{"role":"user","content":"x"}]}"#.to_vec(), 422),
        ("invalid utf-8", [br#"{"model": "smollm2-135m", "messages": [{"role":"user","content":""#.as_slice(), &[0xff, 0xfe], br#""}]}"#].concat(), 400),
        ("empty messages", br#"{"model": "smollm2-135m", "messages": []}"#.to_vec(), 400),
        ("unknown role", br#"{"model": "smollm2-135m", "messages": [{"role":"wizard","content":"x"}]}"#.to_vec(), 400),
        ("huge max_tokens", br#"{"model": "smollm2-135m", "messages": [{"role":"user","content":"x"}], "max_tokens": 99999999}"#.to_vec(), 400),
        ("n > 1", br#"{"model": "smollm2-135m", "messages": [{"role":"user","content":"x"}], "n": 3}"#.to_vec(), 400),
        ("bad priority", br#"{"model": "smollm2-135m", "messages": [{"role":"user","content":"x"}], "priority": "urgent"}"#.to_vec(), 400),
        ("unknown model", br#"{"model": "gpt-9", "messages": [{"role":"user","content":"x"}]}"#.to_vec(), 404),
        ("bad schema", br##"{"model": "smollm2-135m", "messages": [{"role":"user","content":"x"}], "response_format": {"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"$ref":"#/missing"}}}}}}"##.to_vec(), 400),
    ];
    for (name, body, want) in cases {
        let (status, json) = post_raw("/v1/chat/completions", "application/json", body);
        println!("{name}: {status} {json}");
        assert_openai_error(status, &json, want);
    }
    // A prompt beyond the model's context.
    let long = "word ".repeat(3000);
    let (status, json) = post_raw(
        "/v1/chat/completions",
        "application/json",
        serde_json::to_vec(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": long}]})).unwrap(),
    );
    assert_openai_error(status, &json, 400);
    assert!(json["error"]["message"].as_str().unwrap().contains("context"), "{json}");
    // A body over the limit.
    let huge = "x".repeat(100_000);
    let (status, json) = post_raw(
        "/v1/chat/completions",
        "application/json",
        serde_json::to_vec(&json!({"model": "smollm2-135m", "messages": [{"role": "user", "content": huge}]})).unwrap(),
    );
    assert_openai_error(status, &json, 413);
    // Still serving.
    let r = server().chat(
        "smollm2-135m",
        "What is the capital of France?",
        json!({"max_tokens": 16}),
    );
    assert_eq!(r.status(), 200);
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let s = server();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let base = s.base.clone();
            std::thread::spawn(move || {
                let body = json!({"model": "tiny-queue", "messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 200, "temperature": 0});
                let r = TestServer::client().post(format!("{base}/v1/chat/completions")).json(&body).send().unwrap();
                (r.status().as_u16(), r.headers().get("retry-after").map(|h| h.to_str().unwrap().to_owned()), r.text().unwrap())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(ok >= 2, "{results:?}");
    assert!(
        !limited.is_empty(),
        "one running + one queued; the rest must be refused: {results:?}"
    );
    for r in limited {
        assert!(
            r.1.as_deref().is_some_and(|v| v.parse::<u64>().is_ok()),
            "Retry-After: {r:?}"
        );
        assert!(r.2.contains("\"error\""));
    }
}

#[test]
fn client_disconnect_cancels_the_sequence() {
    let s = server();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let body = json!({"model": "smollm2-135m", "stream": true, "max_tokens": 1500, "temperature": 0,
                      "messages": [{"role": "user", "content": "Write a very long essay about the Roman empire."}]})
    .to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(sock, "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = [0u8; 4096];
    let mut seen = String::new();
    while seen.matches("data:").count() < 4 {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let running = |s: &TestServer| {
        s.ps()["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "smollm2-135m")
            .map(|m| m["running"].as_u64().unwrap())
            .unwrap_or(0)
    };
    drop(sock);
    let t0 = Instant::now();
    while running(s) > 0 {
        // Generous: with three engines sharing 2 cores a starved engine may emit no token
        // (and so no write that reveals the disconnect) for several seconds.
        if t0.elapsed() > Duration::from_secs(60) {
            let m = TestServer::client()
                .get(format!("{}/metrics", s.base))
                .send()
                .unwrap()
                .text()
                .unwrap();
            let toks: Vec<&str> = m
                .lines()
                .filter(|l| {
                    l.starts_with("rightsize_completion_tokens_total") || l.starts_with("rightsize_requests_total")
                })
                .collect();
            panic!("sequence still running after the client left: {}\n{toks:#?}", s.ps());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = TestServer::client()
        .get(format!("{}/metrics", s.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains(r#"finish="cancelled""#), "{metrics}");
}

#[test]
fn metrics_and_health() {
    let s = server();
    let r = s.chat("smollm2-135m", "Hi", json!({}));
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-request-id").is_some_and(|v| v.len() >= 32),
        "requests carry an id"
    );
    let c = TestServer::client();
    assert_eq!(c.get(format!("{}/health", s.base)).send().unwrap().status(), 200);
    assert_eq!(c.get(format!("{}/ready", s.base)).send().unwrap().status(), 200);
    let m = c.get(format!("{}/metrics", s.base)).send().unwrap().text().unwrap();
    for name in [
        "rightsize_requests_total",
        "rightsize_completion_tokens_total",
        "rightsize_time_to_first_token_seconds_bucket",
        "rightsize_resident_bytes",
        "rightsize_running_sequences",
        "rightsize_preemptions_total",
        "rightsize_prefix_cached_tokens_total",
        "rightsize_queue_depth",
    ] {
        assert!(m.contains(name), "{name} missing");
    }
    assert!(m.contains(r#"model="smollm2-135m""#));
    // No prompt text in metrics.
    assert!(!m.contains("capital of France"));
}

#[test]
fn per_request_deadline_ends_a_long_generation_with_504() {
    let s = server();
    let body = json!({"model": "smollm2-135m", "max_tokens": 1500, "temperature": 0, "messages": [{"role": "user", "content": "Write a very long essay about the Roman empire."}]});
    let t = std::time::Instant::now();
    let r = TestServer::client()
        .post(format!("{}/v1/chat/completions", s.base))
        .header("x-request-timeout", "0.5")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 504);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["type"], "timeout_error", "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(60),
        "the server's own deadline is far longer"
    );
    let r = TestServer::client()
        .post(format!("{}/v1/chat/completions", s.base))
        .header("x-request-timeout", "soon")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn non_streaming_answers_carry_the_engine_time() {
    let s = server();
    let t0 = Instant::now();
    let r = s.chat("smollm2-135m", "Hi", json!({"max_tokens": 2}));
    let client_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(r.status(), 200);
    let header = |name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let engine_ms: f64 = header(server::ENGINE_MS_HEADER).parse().expect("milliseconds");
    // The engine's part lies inside the request as the client saw it.
    assert!(
        engine_ms > 0.0 && engine_ms <= client_ms,
        "engine {engine_ms} ms, client {client_ms} ms"
    );
    let timing = header("server-timing");
    for part in [
        "lease;dur=",
        "submit;dur=",
        "queue;dur=",
        "ttft;dur=",
        "engine;dur=",
        "audit;dur=",
        "total;dur=",
    ] {
        assert!(timing.contains(part), "{part} missing from {timing}");
    }
    let _: serde_json::Value = r.json().unwrap();
}
