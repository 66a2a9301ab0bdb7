//! The llama.cpp peer: JSON parsing from a captured real run, and (only when the
//! peer binaries and a small model are installed) quick real runs.

use std::path::PathBuf;
use std::time::Duration;

use bench::peer::parse_llama_bench_json;
use bench::{peak_rss_of, run_llama_bench, run_load, LoadSpec, PeerBins, PeerServer, PeerServerConfig};

/// Captured from `llama-bench -o json -m smollm2-135m -t 2 -p 128 -n 64 -r 3`.
const SAMPLE: &str = include_str!("../fixtures/llama-bench-smollm2-135m.json");

#[test]
fn parses_captured_llama_bench_json() {
    let r = parse_llama_bench_json(SAMPLE).unwrap();
    assert_eq!(r.entries.len(), 2);
    let pp = &r.entries[0];
    assert_eq!((pp.n_prompt, pp.n_gen, pp.n_threads), (128, 0, 2));
    let tg = &r.entries[1];
    assert_eq!((tg.n_prompt, tg.n_gen), (0, 64));
    assert_eq!(r.prefill_tps, pp.avg_ts);
    assert_eq!(r.decode_tps, tg.avg_ts);
    assert!(r.prefill_tps > r.decode_tps && r.decode_tps > 0.0);
    assert!(!pp.build_commit.is_empty());
    assert_eq!(r.raw.as_array().unwrap().len(), 2);
    assert!(r.raw[0]["samples_ts"].as_array().unwrap().len() == 3);
}

/// The peer and smollm2-135m, or None (skipped, or a failure under CI: `testkit::skip_or_fail`).
fn peer_and_model() -> Option<(PeerBins, PathBuf)> {
    let bins = match PeerBins::locate() {
        Ok(b) => b,
        Err(e) => {
            testkit::skip_or_fail(&e.to_string());
            return None;
        }
    };
    let model = testkit::model_file("smollm2-135m");
    if !model.is_file() {
        testkit::skip_or_fail(&format!("no model at {}", model.display()));
        return None;
    }
    Some((bins, model))
}

#[test]
fn real_llama_bench_if_available() {
    let Some((bins, model)) = peer_and_model() else {
        return;
    };
    let r = run_llama_bench(&bins, &model, 2, 16, 4, 1).unwrap();
    assert!(r.prefill_tps > 0.0 && r.decode_tps > 0.0, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_llama_server_load_if_available() {
    let Some((bins, model)) = peer_and_model() else {
        return;
    };
    let mut cfg = PeerServerConfig::new(&model, 2, 2, 1024);
    cfg.health_timeout = Duration::from_secs(60);
    let server = tokio::task::spawn_blocking(move || PeerServer::start_with(&bins, &cfg))
        .await
        .unwrap()
        .unwrap();
    let mut spec = LoadSpec::new(server.base_url(), "smollm2", "Say hello.");
    spec.clients = 2;
    spec.max_tokens = 8;
    spec.ignore_eos = true;
    spec.timeout = Duration::from_secs(60);
    let r = run_load(&spec).await.unwrap();
    assert_eq!(
        (r.ok, r.errors),
        (2, 0),
        "{:?}\n{}",
        r.error_samples,
        server.log_tail(20)
    );
    assert_eq!(
        r.total_completion_tokens, 16,
        "ignore_eos makes every request produce max_tokens"
    );
    assert!(r.tokens_from_usage, "llama-server sends usage with include_usage");
    assert!(r.ttft_ms.p50 <= r.latency_ms.p50);
    assert!(peak_rss_of(server.pid()).unwrap() > 10 << 20);
    let port = server.port();
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server killed on drop"
    );
}
