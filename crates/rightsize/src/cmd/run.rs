//! `rightsize run MODEL [PROMPT]`: generate with a cached model, printing tokens as they come.
//! Without a prompt it reads stdin: piped text is one prompt; a terminal gets a chat loop.

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{ChatMessage, Constraint, Engine, EngineConfig, Event, GenerateRequest, Prompt, SamplingParams};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Catalog id (e.g. smollm2-135m) or path to a .gguf file.
    pub model: String,
    /// The prompt; read from stdin when absent.
    pub prompt: Option<String>,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt as-is, without the model's chat template.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Constrain the output to JSON valid for this JSON Schema file.
    #[arg(long, value_name = "FILE")]
    pub json_schema: Option<PathBuf>,
    /// Print each token's logprob and N alternatives to stderr.
    #[arg(long, value_name = "N")]
    pub logprobs: Option<usize>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, short = 'n', default_value_t = 512)]
    pub max_tokens: usize,
    /// Stop at this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// CPU threads (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// KV cache cells (default: the model's context, at most 8192).
    #[arg(long, default_value_t = 0)]
    pub ctx: u32,
    /// Layers to offload to the GPU (cuda builds).
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Let llama.cpp repack quantised weights (Q4_0/Q4_K/IQ4_NL) into anonymous memory for
    /// its CPU kernels: faster single-stream decode, slower load and prefill, more RAM.
    #[arg(long)]
    pub repack: bool,
}

impl EngineArgs {
    pub fn config(&self, n_seq_max: u32) -> EngineConfig {
        let d = EngineConfig::default();
        EngineConfig {
            n_threads: self.threads,
            n_ctx: self.ctx,
            n_seq_max,
            n_gpu_layers: self.gpu_layers.unwrap_or(d.n_gpu_layers),
            repack: self.repack,
            ..d
        }
    }
}

pub fn load_engine(model: &str, cfg: EngineConfig) -> Result<Engine> {
    let cache = supply::Cache::from_env();
    let path = supply::resolve_model(&cache, model)?;
    Engine::load(&path, cfg).with_context(|| format!("loading {}", path.display()))
}

pub fn run(args: RunArgs) -> Result<()> {
    let constraint = match &args.json_schema {
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let schema: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", f.display()))?;
            Some(Constraint::JsonSchema(schema))
        }
        None => None,
    };
    let params = args.sampling.params();
    params.validate().map_err(anyhow::Error::msg)?;
    let engine = load_engine(&args.model, args.engine.config(1))?;
    if let Some(c) = &constraint {
        engine.check_constraint(c)?;
    }
    let mut history: Vec<ChatMessage> = args.system.iter().map(|s| ChatMessage::new("system", s)).collect();
    let one_shot = match args.prompt.clone() {
        Some(p) => Some(p),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Some(s)
        }
        None => None,
    };
    if let Some(text) = one_shot {
        if text.trim().is_empty() {
            bail!("the prompt is empty");
        }
        history.push(ChatMessage::new("user", text.trim_end()));
        turn(&engine, &args, &history, &params, &constraint)?;
        return Ok(());
    }
    eprintln!("chatting with {} — empty line or Ctrl-D to quit", args.model);
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        history.push(ChatMessage::new("user", line.trim_end()));
        let answer = turn(&engine, &args, &history, &params, &constraint)?;
        history.push(ChatMessage::new("assistant", answer));
    }
}

fn turn(
    engine: &Engine,
    args: &RunArgs,
    history: &[ChatMessage],
    params: &SamplingParams,
    constraint: &Option<Constraint>,
) -> Result<String> {
    let prompt = if args.raw {
        Prompt::Text(
            history
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    } else {
        Prompt::Chat(history.to_vec())
    };
    let mut req = GenerateRequest::new(prompt, params.clone());
    req.constraint = constraint.clone();
    req.logprobs = args.logprobs;
    let mut seq = engine.submit(req)?;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    while let Some(ev) = seq.next_blocking() {
        match ev {
            Event::Token(t) => {
                out.write_all(t.text.as_bytes())?;
                out.flush()?;
                text.push_str(&t.text);
                if let Some(lp) = &t.logprob {
                    let alts: Vec<String> = lp.top.iter().map(|(s, l)| format!("{s:?}:{l:.2}")).collect();
                    eprintln!("  [{:?} {:.3}] {}", lp.token, lp.logprob, alts.join(" "));
                }
            }
            Event::Done(f) => {
                out.write_all(f.tail.as_bytes())?;
                text.push_str(&f.tail);
                writeln!(out)?;
                let decode = f.total_time.saturating_sub(f.time_to_first_token).as_secs_f64();
                let tps = if f.completion_tokens > 1 && decode > 0.0 {
                    (f.completion_tokens - 1) as f64 / decode
                } else {
                    0.0
                };
                eprintln!(
                    "[{} prompt + {} completion tokens, first token {:.0} ms, {:.1} tokens/s, finish: {:?}]",
                    f.prompt_tokens,
                    f.completion_tokens,
                    f.time_to_first_token.as_secs_f64() * 1e3,
                    tps,
                    f.reason
                );
            }
            Event::Error(e) => bail!("generation failed: {e}"),
        }
    }
    Ok(text)
}
