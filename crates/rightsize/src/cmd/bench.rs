//! `rightsize bench MODEL [--peer]`: the numbers behind docs/performance.md.
//!
//! Everything is measured in this process through the public `Engine` API (what the server
//! uses), and with `--peer` the same measurements run against llama.cpp's own `llama-bench`
//! and `llama-server` in the same run, so the ratio is what counts, not the noisy absolute.

use super::run::{load_engine, EngineArgs};
use anyhow::{Context, Result};
use clap::Args;
use engine::{Engine, FinishReason, GenerateRequest, Prompt, SamplingParams};
use serde::Serialize;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Catalog id or path to a .gguf file.
    pub model: String,
    /// Prompt tokens for the prefill measurement.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated per sequence in decode measurements.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Concurrency levels for aggregate decode.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
    /// Repetitions of each single-stream measurement (the median is reported). With
    /// `--peer`, each repetition is followed by one `llama-bench` run, and the ratios are
    /// the median of these adjacent pairs (the machine's load drifts less within a pair).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Also measure llama.cpp's llama-bench and llama-server (built by bench/build-peer.sh).
    #[arg(long)]
    pub peer: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure the server instead (issue 3 targets): rightsize serve vs llama-server at
    /// 16 clients, interactive TTFT under a batch flood, cold-switch TTFT, gateway overhead.
    #[arg(long)]
    pub serve: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub model: String,
    pub threads: u32,
    pub load_s: f64,
    pub ttft_ms: f64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub aggregate_tps: Vec<(usize, f64)>,
    /// Of a single-stream decode step: time inside llama_decode, and everything else
    /// (sampling, detokenizing, channels), in milliseconds.
    pub decode_step_ms: f64,
    pub overhead_step_ms: f64,
    pub kv_cache_bytes: u64,
    pub weight_bytes: u64,
    pub peak_rss_bytes: u64,
    /// Resident after the warm-up: anonymous (KV, buffers, repacked weights) and file-backed
    /// (the weight mapping).
    pub anon_rss_bytes: u64,
    pub file_rss_bytes: u64,
    pub repack: bool,
    /// With `--peer`: single-stream tokens/s of each repetition and of the llama-bench run
    /// right after it.
    pub pairs: Vec<Pair>,
    pub peer: Option<PeerReport>,
}

#[derive(Debug, Serialize, Default, Clone, Copy)]
pub struct Pair {
    pub prefill_tps: f64,
    pub peer_prefill_tps: f64,
    pub decode_tps: f64,
    pub peer_decode_tps: f64,
}

impl Pair {
    /// Ours / llama-bench's, for (prefill, decode).
    fn ratios(&self) -> (f64, f64) {
        (
            self.prefill_tps / self.peer_prefill_tps,
            self.decode_tps / self.peer_decode_tps,
        )
    }
}

impl Report {
    /// Median over the pairs of ours / llama-bench's, for (prefill, decode).
    pub fn paired_ratios(&self) -> Option<(f64, f64)> {
        (!self.pairs.is_empty()).then(|| {
            (
                median(self.pairs.iter().map(|p| p.ratios().0).collect()),
                median(self.pairs.iter().map(|p| p.ratios().1).collect()),
            )
        })
    }
}

#[derive(Debug, Serialize, Default)]
pub struct PeerReport {
    pub version: String,
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub server_parallel: usize,
    pub server_aggregate_tps: f64,
    pub server_p95_latency_ms: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Exactly `n` prompt tokens of ordinary text.
fn prompt_of(e: &Engine, n: usize) -> Vec<i32> {
    let text = "The history of the city begins with a small settlement on the river, where traders met to exchange grain, salt and cloth. ";
    let mut toks = e.tokenize(text, true);
    while toks.len() < n {
        toks.extend(e.tokenize(text, false));
    }
    toks.truncate(n);
    toks
}

fn fixed(n: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens: n,
        ignore_eos: true,
        ..Default::default()
    }
}

/// One `llama-bench` run (prefill, decode tokens/s) on the same file, between our repetitions.
type PeerRep<'a> = &'a mut dyn FnMut() -> Result<(f64, f64)>;

fn measure(e: &Engine, args: &BenchArgs, mut peer_rep: Option<PeerRep>) -> Result<Report> {
    let mut r = Report {
        model: args.model.clone(),
        load_s: e.load_time().as_secs_f64(),
        kv_cache_bytes: e.kv_cache_bytes(),
        weight_bytes: e.info().weight_bytes,
        repack: e.config().repack,
        ..Default::default()
    };
    // Warm-up: first decode touches every mapped page.
    e.generate(GenerateRequest::new(Prompt::Tokens(prompt_of(e, 16)), fixed(8)))?;
    r.anon_rss_bytes = bench::rss::anon_rss().unwrap_or(0);
    r.file_rss_bytes = bench::rss::file_rss().unwrap_or(0);

    let short = prompt_of(e, 16);
    let mut ttft = Vec::new();
    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..args.reps {
        let c = e.generate(GenerateRequest::new(Prompt::Tokens(short.clone()), fixed(1)))?;
        ttft.push(c.finish.time_to_first_token.as_secs_f64() * 1e3);
        let c = e.generate(GenerateRequest::new(
            Prompt::Tokens(prompt_of(e, args.prompt_tokens)),
            fixed(1),
        ))?;
        prefill.push(args.prompt_tokens as f64 / c.finish.time_to_first_token.as_secs_f64());
        let before = e.stats();
        let c = e.generate(GenerateRequest::new(
            Prompt::Tokens(short.clone()),
            fixed(args.gen_tokens),
        ))?;
        let after = e.stats();
        let steps = (after.steps - before.steps).max(1) as f64;
        let in_decode = (after.decode_time - before.decode_time).as_secs_f64() * 1e3 / steps;
        let per_step = c.finish.total_time.as_secs_f64() * 1e3 / steps;
        r.decode_step_ms = in_decode;
        r.overhead_step_ms = per_step - in_decode;
        anyhow::ensure!(c.finish.reason == FinishReason::Length && c.finish.completion_tokens == args.gen_tokens);
        let t = (c.finish.total_time - c.finish.time_to_first_token).as_secs_f64();
        decode.push((args.gen_tokens - 1) as f64 / t);
        if let Some(f) = peer_rep.as_mut() {
            let (pp, tg) = f()?;
            r.pairs.push(Pair {
                prefill_tps: prefill[prefill.len() - 1],
                peer_prefill_tps: pp,
                decode_tps: decode[decode.len() - 1],
                peer_decode_tps: tg,
            });
        }
    }
    r.ttft_ms = median(ttft);
    r.prefill_tps = median(prefill);
    r.decode_tps = median(decode);
    for &c in &args.concurrency {
        let t0 = Instant::now();
        let seqs = (0..c)
            .map(|i| {
                let mut p = prompt_of(e, 16);
                p[1] = p[1 + i % 8]; // distinct prompts
                e.submit(GenerateRequest::new(Prompt::Tokens(p), fixed(args.gen_tokens)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut total = 0;
        for s in seqs {
            total += s.collect_blocking(|_| {})?.finish.completion_tokens;
        }
        r.aggregate_tps.push((c, total as f64 / t0.elapsed().as_secs_f64()));
    }
    r.peak_rss_bytes = bench::rss::peak_rss().unwrap_or(0);
    Ok(r)
}

/// llama-server under the same 16-stream load; llama-bench's numbers come from the pairs.
fn peer(args: &BenchArgs, path: &std::path::Path, threads: u32, pairs: &[Pair]) -> Result<PeerReport> {
    let bins = bench::peer::PeerBins::locate()?;
    let parallel = args.concurrency.iter().copied().max().unwrap_or(16);
    let ctx = (parallel * (args.gen_tokens + 64)) as u32;
    let server = bench::server::PeerServer::start(&bins, path, threads, parallel as u32, ctx.max(2048), 0)?;
    let spec = load_spec(server.base_url(), "peer", parallel, args.gen_tokens);
    let load = bench::load::run_load_blocking(&spec)?;
    anyhow::ensure!(
        load.errors == 0,
        "llama-server load had errors: {:?}",
        load.error_samples
    );
    Ok(PeerReport {
        version: bins.describe(),
        prefill_tps: median(pairs.iter().map(|p| p.peer_prefill_tps).collect()),
        decode_tps: median(pairs.iter().map(|p| p.peer_decode_tps).collect()),
        server_parallel: parallel,
        server_aggregate_tps: load.aggregate_tps,
        server_p95_latency_ms: load.latency_ms.p95,
    })
}

/// The same load for every server: `clients` streams, each generating exactly `gen` tokens.
pub fn load_spec(base_url: String, model: &str, clients: usize, gen: usize) -> bench::load::LoadSpec {
    let mut spec = bench::load::LoadSpec::new(base_url, model, "Tell me about the history of the city by the river.");
    spec.prompts = (0..clients)
        .map(|i| format!("Tell me about the history of city number {i} by the river."))
        .collect();
    spec.clients = clients;
    spec.requests_per_client = 1;
    spec.max_tokens = gen as u32;
    spec.ignore_eos = true;
    spec
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.serve {
        return super::bench_serve::run(&args);
    }
    anyhow::ensure!(args.reps > 0, "--reps must be at least 1");
    let n_seq = args.concurrency.iter().copied().max().unwrap_or(1).max(1) as u32;
    let mut cfg = args.engine.config(n_seq);
    if cfg.n_ctx == 0 {
        // Split KV: every sequence needs room for the prefill prompt and the decode run.
        let per_seq = (args.gen_tokens + 32).max(args.prompt_tokens + 64);
        cfg.n_ctx = (n_seq as usize * per_seq) as u32;
    }
    let threads = if cfg.n_threads == 0 {
        engine::default_threads()
    } else {
        cfg.n_threads
    };
    let e = load_engine(&args.model, cfg)?;
    let path = e.info().path.clone();
    let mut report = if args.peer {
        let bins = bench::peer::PeerBins::locate().context("the llama.cpp peer (bench/build-peer.sh)")?;
        let mut one = || -> Result<(f64, f64)> {
            let lb = bench::peer::run_llama_bench(
                &bins,
                &path,
                threads,
                args.prompt_tokens as u32,
                args.gen_tokens as u32,
                1,
            )?;
            Ok((lb.prefill_tps, lb.decode_tps))
        };
        measure(&e, &args, Some(&mut one))?
    } else {
        measure(&e, &args, None)?
    };
    report.threads = threads;
    drop(e);
    if args.peer {
        report.peer = Some(peer(&args, &path, threads, &report.pairs).context("measuring the llama.cpp peer")?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

pub fn table(r: &Report) -> String {
    let mb = |b: u64| format!("{:.0} MiB", b as f64 / (1 << 20) as f64);
    let p = r.peer.as_ref();
    let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|t| format!("{:.2}x", ours / t)).unwrap_or_default();
    let paired = r.paired_ratios();
    let pair_ratio = |i: usize| {
        paired
            .map(|(pp, tg)| format!("{:.2}x (paired)", [pp, tg][i]))
            .unwrap_or_default()
    };
    let peer_cell = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "—".into());
    let mut s = format!(
        "model: {}  threads: {}\n\n| metric | rightsize | llama.cpp | ratio |\n|---|---|---|---|\n",
        r.model, r.threads
    );
    s += &format!("| load time | {:.2} s | | |\n", r.load_s);
    s += &format!("| time to first token (16-token prompt) | {:.1} ms | | |\n", r.ttft_ms);
    s += &format!(
        "| prefill tokens/s | {:.1} | {} | {} |\n",
        r.prefill_tps,
        peer_cell(p.map(|p| p.prefill_tps)),
        pair_ratio(0)
    );
    s += &format!(
        "| decode tokens/s, single stream | {:.1} | {} | {} |\n",
        r.decode_tps,
        peer_cell(p.map(|p| p.decode_tps)),
        pair_ratio(1)
    );
    if !r.pairs.is_empty() {
        let each = |f: fn(&Pair) -> f64| {
            r.pairs
                .iter()
                .map(|x| format!("{:.2}", f(x)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        s += &format!("| prefill ratio of each pair | {} | | |\n", each(|x| x.ratios().0));
        s += &format!("| decode ratio of each pair | {} | | |\n", each(|x| x.ratios().1));
    }
    s += &format!(
        "| single-stream step: in llama_decode / rest, ms | {:.2} / {:.2} | | |\n",
        r.decode_step_ms, r.overhead_step_ms
    );
    for &(c, tps) in &r.aggregate_tps {
        let theirs = p.filter(|p| p.server_parallel == c).map(|p| p.server_aggregate_tps);
        let label = if theirs.is_some() { " (peer: llama-server)" } else { "" };
        s += &format!(
            "| aggregate decode tokens/s, {c} sequences{label} | {tps:.1} | {} | {} |\n",
            peer_cell(theirs),
            ratio(tps, theirs)
        );
    }
    if let Some(one) = r.aggregate_tps.iter().find(|x| x.0 == 1).map(|x| x.1) {
        for &(c, tps) in r.aggregate_tps.iter().filter(|x| x.0 > 1) {
            s += &format!("| scaling: {c} sequences vs 1 | {:.2}x | | |\n", tps / one);
        }
    }
    s += &format!(
        "| weights (mmap) / KV cache | {} / {} | | |\n",
        mb(r.weight_bytes),
        mb(r.kv_cache_bytes)
    );
    s += &format!("| peak RSS | {} | | |\n", mb(r.peak_rss_bytes));
    s += &format!(
        "| resident after warm-up: anonymous / file-backed (repack {}) | {} / {} | | |\n",
        if r.repack { "on" } else { "off" },
        mb(r.anon_rss_bytes),
        mb(r.file_rss_bytes)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ratios_are_the_median_of_adjacent_pairs() {
        let pair = |ours: f64, theirs: f64| Pair {
            prefill_tps: ours * 2.0,
            peer_prefill_tps: theirs * 2.0,
            decode_tps: ours,
            peer_decode_tps: theirs,
        };
        // A noisy peer: the ratio of medians (100/90 = 1.11) differs from the paired median.
        let r = Report {
            pairs: vec![pair(100.0, 100.0), pair(90.0, 60.0), pair(80.0, 90.0)],
            ..Default::default()
        };
        let (pp, tg) = r.paired_ratios().unwrap();
        assert!((tg - 1.0).abs() < 1e-9 && (pp - 1.0).abs() < 1e-9, "{pp} {tg}");
        let t = table(&r);
        assert!(t.contains("| decode ratio of each pair | 1.00 1.50 0.89 |"), "{t}");
        assert!(Report::default().paired_ratios().is_none());
    }
}
