//! `rightsize bench MODEL --serve`: the serving targets, measured in one run.
//!
//! 1. Throughput: the same 16-client load (exactly `gen_tokens` each) against `rightsize serve`
//!    and, with `--peer`, `llama-server -np 16`: aggregate tokens/s and p95 latency.
//! 2. Interactive time-to-first-token (a `max_tokens: 1` request) idle, and while a flood of
//!    batch requests keeps every slot busy.
//! 3. Cold switch: TTFT of SmolLM2-135M right after it was unloaded (load included): asleep
//!    (the default unload: the parsed model stays, weights and KV go), with nothing kept
//!    (`unload?forget=true`: a full load), asleep with the prompt-prefix cache on, and the
//!    first request to a model prepared at start (`prepare = true`).
//! 4. Gateway overhead: per request, the client's HTTP latency minus the engine's own time
//!    (`x-rightsize-engine-ms`), p50/p95 over 200 tiny requests; and the same request in-process.

use super::bench::{load_spec, BenchArgs};
use anyhow::{Context, Result};
use engine::{GenerateRequest, Prompt, SamplingParams};
use serde_json::json;
use std::time::{Duration, Instant};

fn p(values: &[f64], q: f64) -> f64 {
    bench::stats::percentile(values, q).unwrap_or(0.0)
}

/// One tiny request's client-side latency, with what the server says about it.
struct Tiny {
    ms: f64,
    /// `x-rightsize-engine-ms`: the engine's own time for the request.
    engine_ms: Option<f64>,
    /// `server-timing`: where the server's time went.
    timing: String,
}

fn tiny_with(c: &reqwest::blocking::Client, base: &str, model: &str, priority: &str) -> Result<Tiny> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1, "temperature": 0, "priority": priority});
    let t0 = Instant::now();
    let r = c.post(format!("{base}/v1/chat/completions")).json(&body).send()?;
    anyhow::ensure!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().unwrap_or_default()
    );
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let engine_ms = header(server::ENGINE_MS_HEADER).and_then(|v| v.parse().ok());
    let timing = header("server-timing").unwrap_or_default();
    let _ = r.bytes()?;
    Ok(Tiny {
        ms: t0.elapsed().as_secs_f64() * 1e3,
        engine_ms,
        timing,
    })
}

fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?)
}

fn tiny(base: &str, model: &str, priority: &str) -> Result<f64> {
    Ok(tiny_with(&client()?, base, model, priority)?.ms)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let model = args.model.clone();
    let gen = args.gen_tokens;
    let clients = args.concurrency.iter().copied().max().unwrap_or(16);
    let cache = supply::Cache::from_env();
    let path = supply::resolve_model(&cache, &model)?;
    let threads = if args.engine.threads == 0 {
        engine::default_threads()
    } else {
        args.engine.threads
    };
    let toml = format!(
        "memory_budget = \"90%\"\nrequest_timeout_s = 600\n[[model]]\nid = \"{model}\"\nmax_sequences = {clients}\nctx = {ctx}\nmax_queue = 256\nthreads = {threads}\npin = true\nprefix_cache = true\n[[model]]\nid = \"switch-smollm2\"\nsource = \"smollm2-135m\"\nmax_sequences = 4\nctx = 1024\n[[model]]\nid = \"switch-smollm2-prefix\"\nsource = \"smollm2-135m\"\nmax_sequences = 4\nctx = 1024\nprefix_cache = true\n[[model]]\nid = \"switch-smollm2-prepared\"\nsource = \"smollm2-135m\"\nmax_sequences = 4\nctx = 1024\nprepare = true\n",
        ctx = gen + 128
    );
    let cfg = server::ServerConfig::from_toml(&toml)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (base, stop, admin_token) = rt.block_on(async {
        let state = server::Builder::new(cfg, cache.clone()).build()?;
        let admin_token = state.admin_token().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve_on(listener, state, async {
            let _ = rx.await;
        }));
        anyhow::Ok((base, tx, admin_token))
    })?;
    let c = reqwest::blocking::Client::new();
    let t0 = Instant::now();
    while !c
        .get(format!("{base}/ready"))
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false)
    {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(300), "server never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tiny(&base, &model, "interactive")?; // warm-up

    // 1. Throughput, same load as the peer.
    let ours = bench::load::run_load_blocking(&load_spec(base.clone(), &model, clients, gen))?;
    anyhow::ensure!(ours.errors == 0, "rightsize load had errors: {:?}", ours.error_samples);
    let peer = if args.peer {
        let bins = bench::peer::PeerBins::locate()?;
        let server =
            bench::server::PeerServer::start(&bins, &path, threads, clients as u32, (clients * (gen + 128)) as u32, 0)?;
        let r = bench::load::run_load_blocking(&load_spec(server.base_url(), "peer", clients, gen))?;
        anyhow::ensure!(r.errors == 0, "llama-server load had errors: {:?}", r.error_samples);
        drop(server);
        Some(r)
    } else {
        None
    };

    // 2. Interactive TTFT, idle and under a batch flood.
    let tc = client()?;
    let idle: Vec<Tiny> = (0..10)
        .map(|_| tiny_with(&tc, &base, &model, "interactive"))
        .collect::<Result<_>>()?;
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
    let busy: Vec<Tiny> = (0..10)
        .map(|_| tiny_with(&tc, &base, &model, "interactive"))
        .collect::<Result<_>>()?;
    for (label, runs) in [("idle", &idle), ("flood", &busy)] {
        for t in runs.iter() {
            eprintln!(
                "interactive {label}: {:.1} ms client, {} (server-timing)",
                t.ms, t.timing
            );
        }
    }
    let idle: Vec<f64> = idle.iter().map(|t| t.ms).collect();
    let busy: Vec<f64> = busy.iter().map(|t| t.ms).collect();
    let flood_codes: Vec<u16> = flood.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    anyhow::ensure!(
        flood_codes.iter().all(|&c| c == 200),
        "batch flood failed: {flood_codes:?}"
    );

    // 3. Cold switch to SmolLM2-135M: unloaded with nothing kept (a full load each time; the
    //    first in this process also pays one-time costs), then asleep (the default unload),
    //    then asleep with the prompt-prefix cache (the first two requests capture it).
    let switch = |id: &str, forget: bool, n: usize| -> Result<Vec<f64>> {
        (0..n)
            .map(|_| {
                c.post(format!("{base}/admin/models/{id}/unload?forget={forget}"))
                    .bearer_auth(&admin_token)
                    .send()?;
                let t = tiny_with(&tc, &base, id, "interactive")?;
                eprintln!(
                    "cold switch {id} (forget={forget}): {:.1} ms client, {} (server-timing; lease includes the load)",
                    t.ms, t.timing
                );
                Ok(t.ms)
            })
            .collect()
    };
    // A prepared model (parsed at start, asleep): its first request ever is a wake.
    let t0 = Instant::now();
    while !c
        .get(format!("{base}/admin/models"))
        .bearer_auth(&admin_token)
        .send()?
        .json::<serde_json::Value>()?["models"]
        .as_array()
        .is_some_and(|m| {
            m.iter()
                .any(|m| m["id"] == "switch-smollm2-prepared" && m["state"] == "asleep")
        })
    {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "switch-smollm2-prepared was never prepared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let prepared = tiny_with(&tc, &base, "switch-smollm2-prepared", "interactive")?;
    eprintln!(
        "first request to a prepared model: {:.1} ms client, {}",
        prepared.ms, prepared.timing
    );
    let fresh = switch("switch-smollm2", true, 4)?;
    let asleep = switch("switch-smollm2", false, 10)?;
    let cached = switch("switch-smollm2-prefix", false, 7)?;
    // 4. Gateway overhead: the same request in-process vs over HTTP.
    let http: Vec<Tiny> = (0..200)
        .map(|_| tiny_with(&tc, &base, "switch-smollm2", "interactive"))
        .collect::<Result<_>>()?;
    let overhead: Vec<f64> = http.iter().filter_map(|t| t.engine_ms.map(|e| t.ms - e)).collect();
    anyhow::ensure!(
        overhead.len() == http.len(),
        "the server sent no {} header",
        server::ENGINE_MS_HEADER
    );
    for t in http.iter().take(5) {
        eprintln!("tiny over HTTP: {:.2} ms client, {}", t.ms, t.timing);
    }
    let http: Vec<f64> = http.iter().map(|t| t.ms).collect();
    let _ = stop.send(());
    drop(rt);
    let e = engine::Engine::load(
        &supply::resolve_model(&cache, "smollm2-135m")?,
        engine::EngineConfig {
            n_ctx: 4096,
            n_seq_max: 4,
            ..Default::default()
        },
    )
    .context("loading smollm2 in-process")?;
    let msgs = vec![engine::ChatMessage::new("user", "Say hi.")];
    let inproc: Vec<f64> = (0..50)
        .map(|_| {
            let t0 = Instant::now();
            e.generate(GenerateRequest::new(
                Prompt::Chat(msgs.clone()),
                SamplingParams {
                    max_tokens: 1,
                    ..Default::default()
                },
            ))
            .map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;

    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            String::new()
        }
    };
    println!("model: {model}  threads: {threads}  clients: {clients}  tokens/request: {gen}\n");
    println!("| metric | rightsize serve | llama-server | ratio |\n|---|---|---|---|");
    let pa = peer.as_ref().map(|r| r.aggregate_tps).unwrap_or(0.0);
    let pl = peer.as_ref().map(|r| r.latency_ms.p95).unwrap_or(0.0);
    println!(
        "| aggregate tokens/s, {clients} clients | {:.1} | {:.1} | {} |",
        ours.aggregate_tps,
        pa,
        ratio(ours.aggregate_tps, pa)
    );
    println!(
        "| p95 latency, ms | {:.0} | {:.0} | {} |",
        ours.latency_ms.p95,
        pl,
        ratio(ours.latency_ms.p95, pl)
    );
    println!("| interactive TTFT p95 idle, ms | {:.1} | | |", p(&idle, 95.0));
    println!(
        "| interactive TTFT p95 under batch flood, ms | {:.1} | | {} of idle |",
        p(&busy, 95.0),
        ratio(p(&busy, 95.0), p(&idle, 95.0))
    );
    let med = |v: &[f64]| p(v, 50.0);
    println!(
        "| cold switch to SmolLM2-135M, asleep (default unload/eviction), median of {}, ms | {:.0} | | |",
        asleep.len(),
        med(&asleep)
    );
    println!("| cold switch to SmolLM2-135M, nothing kept (`unload --forget`), median of {} / first in process, ms | {:.0} / {:.0} | | |", fresh.len() - 1, med(&fresh[1..]), fresh[0]);
    println!(
        "| cold switch to SmolLM2-135M, asleep + prompt-prefix cache, median of {}, ms | {:.0} | | |",
        cached.len() - 2,
        med(&cached[2..])
    );
    println!(
        "| first request ever to a prepared SmolLM2-135M (`prepare = true`: parsed at start, asleep), ms | {:.0} | | |",
        prepared.ms
    );
    println!(
        "| tiny request p50 over HTTP / in-process, ms | {:.2} / {:.2} | | |",
        p(&http, 50.0),
        p(&inproc, 50.0)
    );
    println!(
        "| gateway overhead per request (HTTP latency - engine time), {} requests: p50 / p95, ms | {:.2} / {:.2} | | |",
        overhead.len(),
        p(&overhead, 50.0),
        p(&overhead, 95.0)
    );
    Ok(())
}
