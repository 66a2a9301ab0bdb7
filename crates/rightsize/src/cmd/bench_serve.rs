//! `rightsize bench MODEL --serve`: the serving targets, measured in one run.
//!
//! 1. Throughput: the same 16-client load (exactly `gen_tokens` each) against `rightsize serve`
//!    and, with `--peer`, `llama-server -np 16`: aggregate tokens/s and p95 latency.
//! 2. Interactive time-to-first-token (a `max_tokens: 1` request) idle, and while a flood of
//!    batch requests keeps every slot busy.
//! 3. Cold switch: TTFT of SmolLM2-135M right after it was unloaded (load included).
//! 4. Gateway overhead: p50 of the same tiny request over HTTP minus in-process.

use super::bench::{load_spec, BenchArgs};
use anyhow::{Context, Result};
use engine::{GenerateRequest, Prompt, SamplingParams};
use serde_json::json;
use std::time::{Duration, Instant};

fn p(values: &[f64], q: f64) -> f64 {
    bench::stats::percentile(values, q).unwrap_or(0.0)
}

fn tiny(base: &str, model: &str, priority: &str) -> Result<f64> {
    let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(300)).build()?;
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1, "temperature": 0, "priority": priority});
    let t0 = Instant::now();
    let r = c.post(format!("{base}/v1/chat/completions")).json(&body).send()?;
    anyhow::ensure!(r.status().is_success(), "{}: {}", r.status(), r.text().unwrap_or_default());
    let _ = r.bytes()?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let model = args.model.clone();
    let gen = args.gen_tokens;
    let clients = args.concurrency.iter().copied().max().unwrap_or(16);
    let cache = supply::Cache::from_env();
    let path = supply::resolve_model(&cache, &model)?;
    let threads = if args.engine.threads == 0 { engine::default_threads() } else { args.engine.threads };
    let toml = format!(
        "memory_budget = \"90%\"\nrequest_timeout_s = 600\n[[model]]\nid = \"{model}\"\nmax_sequences = {clients}\nctx = {ctx}\nmax_queue = 256\nthreads = {threads}\npin = true\n[[model]]\nid = \"switch-smollm2\"\nsource = \"smollm2-135m\"\nmax_sequences = 4\nctx = 1024\n",
        ctx = gen + 128
    );
    let cfg = server::ServerConfig::from_toml(&toml)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (base, stop) = rt.block_on(async {
        let state = server::state(cfg, cache.clone(), None)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve_on(listener, state, async { let _ = rx.await; }));
        anyhow::Ok((base, tx))
    })?;
    let c = reqwest::blocking::Client::new();
    let t0 = Instant::now();
    while !c.get(format!("{base}/ready")).send().map(|r| r.status().is_success()).unwrap_or(false) {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(300), "server never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tiny(&base, &model, "interactive")?; // warm-up

    // 1. Throughput, same load as the peer.
    let ours = bench::load::run_load_blocking(&load_spec(base.clone(), &model, clients, gen))?;
    anyhow::ensure!(ours.errors == 0, "rightsize load had errors: {:?}", ours.error_samples);
    let peer = if args.peer {
        let bins = bench::peer::PeerBins::locate()?;
        let server = bench::server::PeerServer::start(&bins, &path, threads, clients as u32, (clients * (gen + 128)) as u32, 0)?;
        let r = bench::load::run_load_blocking(&load_spec(server.base_url(), "peer", clients, gen))?;
        anyhow::ensure!(r.errors == 0, "llama-server load had errors: {:?}", r.error_samples);
        drop(server);
        Some(r)
    } else {
        None
    };

    // 2. Interactive TTFT, idle and under a batch flood.
    let idle: Vec<f64> = (0..10).map(|_| tiny(&base, &model, "interactive")).collect::<Result<_>>()?;
    let flood: Vec<_> = (0..clients + 8)
        .map(|i| {
            let (base, model) = (base.clone(), model.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
                let body = json!({"model": model, "messages": [{"role": "user", "content": format!("Write essay number {i} about rivers.")}],
                                  "max_tokens": gen * 2, "temperature": 0, "ignore_eos": true, "priority": "batch"});
                c.post(format!("{base}/v1/chat/completions")).json(&body).send().map(|r| r.status().as_u16()).unwrap_or(0)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500)); // let the flood fill every slot
    let busy: Vec<f64> = (0..10).map(|_| tiny(&base, &model, "interactive")).collect::<Result<_>>()?;
    let flood_codes: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    anyhow::ensure!(flood_codes.iter().all(|&c| c == 200), "batch flood failed: {flood_codes:?}");

    // 3. Cold switch to SmolLM2-135M.
    let mut switch = Vec::new();
    for _ in 0..3 {
        c.post(format!("{base}/admin/models/switch-smollm2/unload")).send()?;
        switch.push(tiny(&base, "switch-smollm2", "interactive")?);
    }

    // 4. Gateway overhead: the same request in-process vs over HTTP.
    let http: Vec<f64> = (0..20).map(|_| tiny(&base, "switch-smollm2", "interactive")).collect::<Result<_>>()?;
    let _ = stop.send(());
    drop(rt);
    let e = engine::Engine::load(&supply::resolve_model(&cache, "smollm2-135m")?, engine::EngineConfig { n_ctx: 4096, n_seq_max: 4, ..Default::default() })
        .context("loading smollm2 in-process")?;
    let msgs = vec![engine::ChatMessage::new("user", "Say hi.")];
    let inproc: Vec<f64> = (0..20)
        .map(|_| {
            let t0 = Instant::now();
            e.generate(GenerateRequest::new(Prompt::Chat(msgs.clone()), SamplingParams { max_tokens: 1, ..Default::default() })).map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;

    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { String::new() };
    println!("model: {model}  threads: {threads}  clients: {clients}  tokens/request: {gen}\n");
    println!("| metric | rightsize serve | llama-server | ratio |\n|---|---|---|---|");
    let pa = peer.as_ref().map(|r| r.aggregate_tps).unwrap_or(0.0);
    let pl = peer.as_ref().map(|r| r.latency_ms.p95).unwrap_or(0.0);
    println!("| aggregate tokens/s, {clients} clients | {:.1} | {:.1} | {} |", ours.aggregate_tps, pa, ratio(ours.aggregate_tps, pa));
    println!("| p95 latency, ms | {:.0} | {:.0} | {} |", ours.latency_ms.p95, pl, ratio(ours.latency_ms.p95, pl));
    println!("| interactive TTFT p95 idle, ms | {:.1} | | |", p(&idle, 95.0));
    println!("| interactive TTFT p95 under batch flood, ms | {:.1} | | {} of idle |", p(&busy, 95.0), ratio(p(&busy, 95.0), p(&idle, 95.0)));
    println!("| cold switch to SmolLM2-135M, TTFT median, ms | {:.0} | | |", p(&switch, 50.0));
    println!("| tiny request p50 over HTTP / in-process, ms | {:.2} / {:.2} | | overhead {:.2} ms |", p(&http, 50.0), p(&inproc, 50.0), p(&http, 50.0) - p(&inproc, 50.0));
    Ok(())
}
