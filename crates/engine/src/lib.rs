//! # engine — decoder inference on llama.cpp, driven from Rust
//!
//! Why this crate exists: rightsize serves small models on one CPU box or one GPU, so every
//! token must cost what it costs in llama.cpp and no more, while many requests share one
//! model. llama.cpp (through `llama-cpp-2`) measured 1.7x–3.4x faster than candle for decoding
//! on our 2-core machines, so it runs the math; this crate owns everything around it:
//!
//! - [`model`]: memory-mapped GGUF loading, with clear errors for bad files; weights stay in
//!   the mapping unless `repack` asks llama.cpp for its copied CPU layout.
//! - [`template`]: the model's own Jinja chat template, rendered with minijinja.
//! - `worker`: our continuous batching — one context, many sequence ids, new sequences join
//!   between steps, chunked prefill, KV cells freed as soon as a sequence ends. Its admission
//!   and batch-planning rules are pure functions (`worker::schedule`), tested without a model.
//! - [`prefix`]: cached KV cells of chat prompts' fixed beginnings, restored instead of
//!   prefilled (process-wide, so an evicted model comes back warm).
//! - [`sampling`]: per-sequence sampling and log-probabilities in Rust.
//! - [`constraint`]: JSON Schema / regex / label constraints through llguidance.
//! - `raw`: the two places we reinterpret llama-cpp-2's private layouts (the context's abort
//!   callback, a model loaded without repacking), each checked before it is trusted.
//!
//! The [`Engine`] handle is `Send + Sync`: callers on any thread (or async task) submit
//! requests and read tokens from a per-sequence channel. Dropping a [`Sequence`] cancels it.

pub mod constraint;
mod error;
mod mapping;
pub mod model;
pub mod prefix;
mod raw;
mod request;
pub mod sampling;
mod stats;
pub mod stop;
pub mod template;
mod worker;

pub use constraint::Constraint;
pub use error::EngineError;
pub use model::{Model, ModelInfo};
pub use request::{
    Completion, Event, Finish, FinishReason, GenerateRequest, Priority, Prompt, Sequence, TokenEvent, TokenLogprob,
};
pub use sampling::SamplingParams;
pub use stats::{EngineStats, StatsSnapshot};
pub use template::ChatMessage;

use constraint::ConstraintCompiler;
use llama_cpp_2::{context::params::LlamaContextParams, token::LlamaToken};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{atomic::AtomicBool, atomic::Ordering, mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;
use worker::{Cmd, GenJob, Interrupt, Job, Limits, ScoreJob};

/// How one loaded model is run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// KV cache cells in total (0: `n_seq_max` × min(trained context, 2048)). Each sequence
    /// may use `n_ctx / n_seq_max` of them, or all of them with `kv_unified`.
    pub n_ctx: u32,
    /// Most sequences decoded together.
    pub n_seq_max: u32,
    /// Most tokens in one decode step.
    pub n_batch: u32,
    /// Most prompt tokens added to a step while other sequences are decoding.
    pub prefill_chunk: u32,
    /// CPU threads (0: all cores).
    pub n_threads: u32,
    /// Layers offloaded to the GPU (only with the `cuda` feature; 0 on CPU builds).
    pub n_gpu_layers: u32,
    /// Most requests waiting for a slot before `submit` answers `QueueFull`.
    pub max_queue: usize,
    /// Batch requests are refused once this many requests wait (at most `max_queue`), so a
    /// batch flood leaves `max_queue - max_queue_batch` places for interactive arrivals.
    pub max_queue_batch: Option<usize>,
    /// Milliseconds a batch request may wait before it is admitted ahead of new interactive
    /// arrivals (aging, so batch work is never starved).
    pub batch_aging_ms: u64,
    /// One KV cell pool shared by all sequences instead of a fixed share each. More flexible
    /// for mixed prompt lengths, but attention then spans the shared pool and greedy output
    /// of a batched sequence can differ from the same sequence alone; off by default so that
    /// batching never changes an answer.
    pub kv_unified: bool,
    /// Flash attention: `None` lets llama.cpp decide.
    pub flash_attn: Option<bool>,
    /// Let llama.cpp repack quantised CPU weights (Q4_0, Q4_K, IQ4_NL) into its interleaved
    /// layout: a copy of those tensors in anonymous memory. Off by default: the weights stay
    /// the file mapping only. Measured on Qwen2.5-1.5B Q4_K_M (2 cores): repack costs 597 MiB
    /// of RAM and 4x the load time, prefill is 27% slower, single-stream decode 8% faster.
    pub repack: bool,
    /// Keep the KV cells of chat prompts' fixed beginnings (template preamble, earlier
    /// turns) and restore them for the next prompt that starts the same way (see `prefix`).
    /// Off by default: the prefill is then cut at the prefix boundary, and llama.cpp's
    /// numbers depend on where a prompt is cut (a SmolLM2 label probability moved from 0.87
    /// to 0.80), so confidence thresholds calibrated without it can shift.
    pub prefix_cache: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            n_ctx: 0,
            n_seq_max: 16,
            n_batch: 512,
            prefill_chunk: 256,
            n_threads: 0,
            n_gpu_layers: if cfg!(feature = "cuda") { 999 } else { 0 },
            max_queue: 256,
            max_queue_batch: None,
            batch_aging_ms: 10_000,
            kv_unified: false,
            flash_attn: None,
            repack: false,
            prefix_cache: false,
        }
    }
}

/// KV cells per sequence a freshly loaded engine allocates (split KV only); grown to the
/// configured `n_ctx` the first time a sequence needs more.
pub const INITIAL_KV_CELLS_PER_SEQ: u32 = 256;

/// Default CPU thread count: every core the process may use.
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

struct Shared {
    model: Arc<Model>,
    compiler: OnceLock<Result<ConstraintCompiler, String>>,
    limits_per_seq: usize,
    n_ctx: usize,
    max_queue: usize,
    max_queue_batch: usize,
    stats: Arc<EngineStats>,
    /// Outlives the worker's context, whose abort callback points at it.
    interrupt: Interrupt,
}

/// A loaded model and its batching loop.
pub struct Engine {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Cmd>,
    worker: Mutex<Option<JoinHandle<()>>>,
    config: EngineConfig,
    load_time: std::time::Duration,
}

impl Engine {
    /// Load `path` (memory-mapped) and start its batching loop.
    pub fn load(path: &Path, config: EngineConfig) -> Result<Self, EngineError> {
        let t0 = Instant::now();
        check_config(&config)?;
        let model = Arc::new(Model::load(path, config.n_gpu_layers, config.repack)?);
        let t_model = t0.elapsed();
        let mut engine = Self::start(model, config)?;
        engine.load_time = t0.elapsed();
        tracing::debug!(
            model_ms = t_model.as_secs_f64() * 1e3,
            total_ms = engine.load_time.as_secs_f64() * 1e3,
            "engine loaded"
        );
        Ok(engine)
    }

    /// Start a batching loop on a model already parsed, e.g. one kept asleep after its last
    /// engine was evicted (see [`Model`]): only the context is created.
    pub fn start(model: Arc<Model>, config: EngineConfig) -> Result<Self, EngineError> {
        let t0 = Instant::now();
        check_config(&config)?;
        if !model.loaded_with(config.n_gpu_layers, config.repack) {
            return Err(EngineError::InvalidRequest(
                "the model was loaded with other GPU-layer or repack settings than this engine asks for".into(),
            ));
        }
        let info = model.info();
        let path = info.path.clone();
        let n_ctx = if config.n_ctx == 0 {
            config.n_seq_max * info.context_length.min(2048)
        } else {
            config.n_ctx
        };
        if !config.kv_unified && n_ctx / config.n_seq_max < 16 {
            return Err(EngineError::InvalidRequest(format!(
                "n_ctx {n_ctx} leaves fewer than 16 cells per sequence for {} sequences",
                config.n_seq_max
            )));
        }
        let per_seq = if config.kv_unified {
            n_ctx
        } else {
            n_ctx / config.n_seq_max
        }
        .min(info.context_length) as usize;
        let stats = Arc::new(EngineStats::default());
        let layout = format!(
            "fa={:?};gpu={};unified={}",
            config.flash_attn, config.n_gpu_layers, config.kv_unified
        );
        // Keyed by the file as this model was loaded from it, not as it is on disk now.
        let prefix_scope = config.prefix_cache.then(|| {
            let (len, modified) = model.file_stamp();
            prefix::Scope::new(&path, len, modified, layout)
        });
        let kv_bytes_per_token = info.kv_bytes_per_token() as usize;
        let shared = Arc::new(Shared {
            model,
            compiler: OnceLock::new(),
            limits_per_seq: per_seq,
            n_ctx: n_ctx as usize,
            max_queue: config.max_queue,
            max_queue_batch: config.max_queue_batch.unwrap_or(config.max_queue).min(config.max_queue),
            stats: stats.clone(),
            // On unless `RIGHTSIZE_STEP_INTERRUPT=0` (kept for A/B measurement).
            interrupt: Interrupt::new(std::env::var("RIGHTSIZE_STEP_INTERRUPT").map_or(true, |v| v != "0")),
        });
        let threads = if config.n_threads == 0 {
            default_threads()
        } else {
            config.n_threads
        } as i32;
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(config.n_batch)
            .with_n_ubatch(config.n_batch)
            .with_n_seq_max(config.n_seq_max)
            .with_kv_unified(config.kv_unified)
            .with_flash_attention_policy(match config.flash_attn {
                None => -1,
                Some(false) => 0,
                Some(true) => 1,
            })
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        // Freshly loaded: KV for `INITIAL_KV_CELLS_PER_SEQ` cells per sequence. Touching fresh
        // memory is what a cold load mostly waits on here (page faults while llama.cpp clears
        // the cache); a sequence that needs more makes the worker allocate the full size.
        let initial_ctx = if config.kv_unified {
            n_ctx
        } else {
            n_ctx.min(config.n_seq_max * INITIAL_KV_CELLS_PER_SEQ)
        };
        let limits = Limits {
            n_ctx: n_ctx as usize,
            n_seq_max: config.n_seq_max as usize,
            n_batch: config.n_batch as usize,
            prefill_chunk: config.prefill_chunk as usize,
            per_seq_limit: per_seq,
            batch_aging: std::time::Duration::from_millis(config.batch_aging_ms),
            threads: threads as usize,
            prefix: prefix_scope,
            kv_bytes_per_token,
        };
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let sh = shared.clone();
        let worker = std::thread::Builder::new()
            .name(format!("engine:{}", sh.model.info().name.clone().unwrap_or_default()))
            .spawn(move || {
                let t_ctx = Instant::now();
                let full = worker::with_interrupt(ctx_params, &sh.interrupt);
                // Start with a KV cache sized for short sequences; the worker grows it to the
                // configured size the first time a sequence needs more (see `worker::Kv`).
                let first = if initial_ctx < n_ctx {
                    full.clone().with_n_ctx(NonZeroU32::new(initial_ctx))
                } else {
                    full.clone()
                };
                let ctx = match sh.model.llama().new_context(model::backend(), first) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                tracing::debug!(
                    context_ms = t_ctx.elapsed().as_secs_f64() * 1e3,
                    "context created (KV allocated and cleared, graphs reserved)"
                );
                let _ = ready_tx.send(Ok(()));
                let kv = worker::Kv {
                    full,
                    grown: initial_ctx >= n_ctx,
                };
                worker::Worker::new(sh.model.llama(), ctx, rx, limits, stats, &sh.interrupt, kv).run();
            })
            .map_err(|e| EngineError::Context(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(EngineError::Context(e)),
            Err(_) => return Err(EngineError::Context("engine thread exited during start-up".into())),
        }
        shared.model.engine_started();
        tracing::debug!(context_ms = t0.elapsed().as_secs_f64() * 1e3, n_ctx, "engine started");
        Ok(Self {
            shared,
            tx,
            worker: Mutex::new(Some(worker)),
            config,
            load_time: t0.elapsed(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        self.shared.model.info()
    }

    /// The parsed model this engine runs on (to keep it asleep once the engine is dropped).
    pub fn model(&self) -> &Arc<Model> {
        &self.shared.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Wall time `load` (file map and parse, context and KV allocation, thread start) or
    /// `start` (the same without the parse) took.
    pub fn load_time(&self) -> std::time::Duration {
        self.load_time
    }

    /// KV cells in total, and the most one sequence may use.
    pub fn context_cells(&self) -> (usize, usize) {
        (self.shared.n_ctx, self.shared.limits_per_seq)
    }

    /// Bytes of the KV cache (f16 K and V for every cell).
    pub fn kv_cache_bytes(&self) -> u64 {
        self.shared.n_ctx as u64 * self.info().kv_bytes_per_token()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Tokenize text; special-token markup (e.g. `<|im_start|>`) is parsed, BOS added when the
    /// model asks for it.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Vec<i32> {
        self.shared
            .model
            .llama()
            .vocab()
            .tokenize(text.as_bytes(), add_bos, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Text of tokens.
    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let v = self.shared.model.llama().vocab();
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| v.token_to_piece(LlamaToken(t), false, None))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Format chat messages with the model's own template.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        self.shared
            .model
            .template()
            .ok_or(EngineError::NoChatTemplate)?
            .render(messages)
    }

    /// The prompt as tokens.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<i32>, EngineError> {
        let tokens = match prompt {
            Prompt::Tokens(t) => {
                let n_vocab = self.info().n_vocab as i32;
                if let Some(bad) = t.iter().find(|&&x| x < 0 || x >= n_vocab) {
                    return Err(EngineError::InvalidRequest(format!(
                        "token id {bad} is outside the vocabulary (0..{n_vocab})"
                    )));
                }
                t.clone()
            }
            Prompt::Text(s) => self.tokenize(s, true),
            Prompt::Chat(m) => {
                let text = self.apply_chat_template(m)?;
                let bos = self.info().bos_token.as_deref().unwrap_or("");
                // The template may already write BOS; never add a second one.
                let starts_with_bos = !bos.is_empty() && text.starts_with(bos);
                self.tokenize(&text, !starts_with_bos)
            }
        };
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        Ok(tokens)
    }

    /// The prompt's tokens and how many of the first ones are the chat's fixed beginning,
    /// worth caching (0: none, e.g. a plain-text prompt or the cache is off).
    fn prompt_and_prefix(&self, prompt: &Prompt) -> Result<(Vec<i32>, usize), EngineError> {
        let tokens = self.prompt_tokens(prompt)?;
        let prefix = match prompt {
            Prompt::Chat(m) if self.config.prefix_cache => self.chat_prefix(m, &tokens),
            _ => 0,
        };
        Ok((tokens, prefix))
    }

    /// Tokens of the rendered chat before the last message's content: the template's
    /// preamble (e.g. a default system prompt) and every earlier turn. Found by rendering the
    /// chat with a marker as that content; only tokens equal to the real prompt's count, so
    /// a merge across the boundary just shortens the prefix.
    fn chat_prefix(&self, messages: &[ChatMessage], tokens: &[i32]) -> usize {
        const MARK: &str = "\u{1}rightsize-prefix\u{1}";
        let mut probe = messages.to_vec();
        let Some(last) = probe.last_mut() else { return 0 };
        last.content = MARK.into();
        let Ok(text) = self.apply_chat_template(&probe) else {
            return 0;
        };
        let Some(at) = text.find(MARK) else { return 0 };
        let head = &text[..at];
        let bos = self.info().bos_token.as_deref().unwrap_or("");
        let head_tokens = self.tokenize(head, bos.is_empty() || !head.starts_with(bos));
        let n = prefix::common_prefix(&head_tokens, tokens).min(tokens.len().saturating_sub(1));
        if n >= prefix::MIN_TOKENS {
            n
        } else {
            0
        }
    }

    fn compiler(&self) -> Result<&ConstraintCompiler, EngineError> {
        self.shared
            .compiler
            .get_or_init(|| {
                let env = llama_cpp_2::sampling::LlamaSampler::llguidance_tok_env(self.shared.model.llama());
                ConstraintCompiler::new(env).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| EngineError::InvalidConstraint(e.clone()))
    }

    /// Check a constraint compiles for this model, without running anything.
    pub fn check_constraint(&self, c: &Constraint) -> Result<(), EngineError> {
        self.compiler()?.compile(c).map(|_| ())
    }

    fn enqueue(&self, job: Job) -> Result<(), EngineError> {
        // Room = free sequence slots (a job is counted as queued until the worker admits
        // it) plus `max_queue` waiting.
        let free = (self.config.n_seq_max as usize).saturating_sub(self.shared.stats.running.load(Ordering::Relaxed));
        let bound = match job.priority() {
            Priority::Batch => self.shared.max_queue_batch,
            Priority::Interactive => self.shared.max_queue,
        };
        let q = self.shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        if q >= bound + free {
            self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(EngineError::QueueFull(q));
        }
        let urgent = job.priority() == Priority::Interactive;
        self.tx.send(Cmd::Job(Box::new(job))).map_err(|_| {
            self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
            EngineError::ShutDown
        })?;
        // After the send: the worker clears the request before draining its queue, so this job
        // is always seen by the round the interrupt starts.
        if urgent {
            self.shared.interrupt.request();
        }
        Ok(())
    }

    /// Start a sequence. Tokenizing, templating and compiling the constraint happen here, on
    /// the caller's thread, so bad input fails before it is queued.
    pub fn submit(&self, req: GenerateRequest) -> Result<Sequence, EngineError> {
        req.params.validate().map_err(EngineError::InvalidRequest)?;
        let (tokens, prefix) = self.prompt_and_prefix(&req.prompt)?;
        let limit = self.shared.limits_per_seq;
        if tokens.len() >= limit {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: tokens.len(),
                limit,
            });
        }
        let matcher = match &req.constraint {
            Some(c) => Some(self.compiler()?.compile(c)?),
            None => None,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let prompt_tokens = tokens.len();
        let max_tokens = req.params.max_tokens.min(limit - tokens.len());
        let job = GenJob {
            sampler: sampling::Sampler::new(req.params.clone(), &tokens),
            tokens,
            prefix,
            matcher,
            stops: req.params.stop.clone(),
            logprobs: req.logprobs,
            max_tokens,
            ignore_eos: req.params.ignore_eos,
            priority: req.priority,
            tx,
            cancel: cancel.clone(),
            submitted: Instant::now(),
        };
        self.enqueue(Job::Generate(job))?;
        Ok(Sequence {
            rx,
            cancel,
            prompt_tokens,
        })
    }

    /// Generate to the end (blocking; not for async contexts).
    pub fn generate(&self, req: GenerateRequest) -> Result<Completion, EngineError> {
        self.submit(req)?.collect_blocking(|_| {})
    }

    /// Log-likelihood of each continuation after `prompt`: `sum log p(token)` over the
    /// continuation's tokens. Used to score a fixed label set: the prompt is prefilled once
    /// for all continuations (see `worker::ScoreJob`). Scheduled as `priority` work. Blocking.
    pub fn score_continuations(
        &self,
        prompt: &Prompt,
        continuations: &[String],
        priority: Priority,
    ) -> Result<Vec<ContinuationScore>, EngineError> {
        let (base, prefix) = self.prompt_and_prefix(prompt)?;
        let mut conts = Vec::new();
        for (index, c) in continuations.iter().enumerate() {
            let cont = self.tokenize(c, false);
            if cont.is_empty() {
                return Err(EngineError::InvalidRequest(format!("continuation {index} is empty")));
            }
            if cont.len() > MAX_CONTINUATION_TOKENS {
                return Err(EngineError::InvalidRequest(format!(
                    "continuation {index} has {} tokens; at most {MAX_CONTINUATION_TOKENS} can be scored",
                    cont.len()
                )));
            }
            if base.len() + cont.len() >= self.shared.limits_per_seq {
                return Err(EngineError::PromptTooLong {
                    prompt_tokens: base.len() + cont.len(),
                    limit: self.shared.limits_per_seq,
                });
            }
            conts.push(cont);
        }
        if conts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, results) = mpsc::channel();
        let mut job = ScoreJob::new(base, conts.clone(), priority, reply);
        job.prefix = prefix;
        self.enqueue(Job::Score(job))?;
        let (scores, compute_s) = results
            .recv()
            .map_err(|_| EngineError::Decode("scoring was interrupted".into()))?;
        let share = compute_s / conts.len() as f64;
        Ok(scores
            .into_iter()
            .zip(&conts)
            .map(|(logprob, c)| ContinuationScore {
                logprob,
                n_tokens: c.len(),
                compute_s: share,
            })
            .collect())
    }
}

/// Longest continuation `score_continuations` accepts (labels are short; this keeps one
/// continuation within any batch).
pub const MAX_CONTINUATION_TOKENS: usize = 64;

/// Log-likelihood of one continuation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ContinuationScore {
    pub logprob: f64,
    pub n_tokens: usize,
    /// Core-seconds attributed to scoring this continuation (see `Finish::compute_s`).
    pub compute_s: f64,
}

/// Softmax of label log-likelihoods: each label's probability within the label set.
pub fn normalise_scores(scores: &[ContinuationScore]) -> Vec<f64> {
    let max = scores.iter().map(|s| s.logprob).fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s.logprob - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn check_config(config: &EngineConfig) -> Result<(), EngineError> {
    if config.n_seq_max == 0 || config.n_batch == 0 || config.prefill_chunk == 0 {
        return Err(EngineError::InvalidRequest(
            "n_seq_max, n_batch and prefill_chunk must be > 0".into(),
        ));
    }
    if config.n_batch < config.n_seq_max {
        return Err(EngineError::InvalidRequest("n_batch must be at least n_seq_max".into()));
    }
    Ok(())
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(h) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            let _ = h.join();
        }
        // The last engine on a model someone keeps (asleep): give its weight pages back. A
        // model nobody keeps is unmapped right after this anyway.
        let model = &self.shared.model;
        if model.engine_stopped() && Arc::strong_count(model) > 1 {
            model.release_pages();
        }
    }
}
