//! Measure the llama.cpp peer alone (its baselines for later ratios).
//!
//! ```text
//! cargo run -p bench --release --example peer_baseline -- bench MODEL.gguf [THREADS P N REPS]
//! cargo run -p bench --release --example peer_baseline -- load  MODEL.gguf [THREADS NP CLIENTS REQS MAX_TOKENS CTX]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use bench::{peak_rss_of, run_llama_bench, run_load_blocking, LoadSpec, PeerBins, PeerServer, PeerServerConfig};

fn arg(args: &[String], i: usize, default: u32) -> u32 {
    args.get(i)
        .map(|s| s.parse().expect("numeric argument"))
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(model)) = (args.first(), args.get(1)) else {
        eprintln!("usage: peer_baseline bench|load MODEL.gguf [...]");
        std::process::exit(2);
    };
    let model = PathBuf::from(model);
    let bins = PeerBins::locate()?;
    eprintln!("peer: {}", bins.describe());
    let threads = arg(&args, 2, 2);
    match mode.as_str() {
        "bench" => {
            let (p, n, r) = (arg(&args, 3, 128), arg(&args, 4, 64), arg(&args, 5, 3));
            let res = run_llama_bench(&bins, &model, threads, p, n, r)?;
            println!(
                "llama-bench {} -t {threads} -p {p} -n {n} -r {r}: prefill {:.2} t/s, decode {:.2} t/s",
                model.display(),
                res.prefill_tps,
                res.decode_tps
            );
            for e in &res.entries {
                println!(
                    "  pp{} tg{}: {:.2} ± {:.2} t/s",
                    e.n_prompt, e.n_gen, e.avg_ts, e.stddev_ts
                );
            }
            println!("{}", serde_json::to_string(&res.raw)?);
        }
        "load" => {
            let (np, clients, reqs, max_tokens) = (
                arg(&args, 3, 16),
                arg(&args, 4, 16),
                arg(&args, 5, 2),
                arg(&args, 6, 64),
            );
            let ctx = arg(&args, 7, 4096);
            let cfg = PeerServerConfig::new(&model, threads, np, ctx);
            let server = PeerServer::start_with(&bins, &cfg)?;
            eprintln!(
                "llama-server {} (pid {})",
                cfg.args(server.port()).join(" "),
                server.pid()
            );
            let mut spec = LoadSpec::new(
                server.base_url(),
                "peer",
                "Write a short story about a lighthouse keeper.",
            );
            spec.clients = clients as usize;
            spec.requests_per_client = reqs as usize;
            spec.max_tokens = max_tokens;
            spec.ignore_eos = true;
            spec.timeout = Duration::from_secs(540);
            let r = run_load_blocking(&spec)?;
            let rss = peak_rss_of(server.pid()).unwrap_or(0);
            println!(
                "llama-server -np {np}: {clients} clients x {reqs} req x {max_tokens} tok: {} ok, {} errors, {} tokens in {:.2} s = {:.2} t/s aggregate; \
                 TTFT p50 {:.0} ms p95 {:.0} ms; latency p50 {:.0} ms p95 {:.0} ms; per-request decode p50 {:.2} t/s; usage counts: {}; server peak RSS {:.0} MiB",
                r.ok,
                r.errors,
                r.total_completion_tokens,
                r.wall_s,
                r.aggregate_tps,
                r.ttft_ms.p50,
                r.ttft_ms.p95,
                r.latency_ms.p50,
                r.latency_ms.p95,
                r.decode_tps_per_request.p50,
                r.tokens_from_usage,
                rss as f64 / (1024.0 * 1024.0)
            );
            if !r.error_samples.is_empty() {
                println!("errors: {:?}", r.error_samples);
            }
            println!("{}", serde_json::to_string(&r)?);
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
    Ok(())
}
