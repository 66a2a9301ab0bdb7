//! `rightsize`: serve the smallest model that does the job.
//!
//! This binary is the edge: it parses commands and hands off to the library crates
//! (`supply` for models on disk, `engine` for decoding, `encoder` for embeddings,
//! `bench` for measurements). `anyhow` lives here and nowhere else.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "rightsize", version, about = "Run small language models in production")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch a model into the cache: a catalog id, `hf:owner/repo/file.gguf[@rev]`, or a local file.
    Pull(cmd::pull::PullArgs),
    /// List the catalog and what is cached.
    Models(cmd::pull::ModelsArgs),
    /// Generate with a model, printing tokens as they come.
    Run(cmd::run::RunArgs),
    /// Measure a model (load, TTFT, prefill, decode, concurrency, RSS), optionally against llama.cpp.
    Bench(cmd::bench::BenchArgs),
    /// Serve the OpenAI-compatible API over the default (or configured) models.
    Serve(cmd::serve::ServeArgs),
    /// Create, list and revoke API keys.
    Keys(cmd::admin::KeysArgs),
    /// Show the models resident in a running server.
    Ps(cmd::admin::RemoteArgs),
    /// Load a model into a running server.
    Load {
        model: String,
        #[command(flatten)]
        remote: cmd::admin::RemoteArgs,
    },
    /// List, show and validate task files.
    Tasks(cmd::tasks::TasksArgs),
    /// Run a task through its ladder: `rightsize task triage --input ticket="..."`.
    Task(cmd::tasks::TaskArgs),
    /// Guardrails on their own: `rightsize guard pii "text"`.
    Guard(cmd::guard::GuardArgs),
    /// Evaluate a task's ladder on its data set: quality vs cost, right-sizing, gate, apply.
    Eval(cmd::eval::EvalArgs),
    /// Build task data sets from pulled corpora: `rightsize data bbc-topic`.
    Data(cmd::data::DataArgs),
    /// Per-task unit economics per day: runs, cost per run, latency, escalation and error rates.
    Stats(cmd::tasks::StatsArgs),
    /// The audit log: `verify` the hash chain, `export` JSON lines, `prune` by age.
    Audit(cmd::audit::AuditArgs),
    /// Unload a model from a running server: its weights and KV cache are freed and a decoder
    /// stays asleep (parsed vocabulary only, ~15–40 MiB) to load again in milliseconds.
    Unload {
        model: String,
        /// Free what stays asleep too.
        #[arg(long)]
        forget: bool,
        #[command(flatten)]
        remote: cmd::admin::RemoteArgs,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIGHTSIZE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(a) => cmd::pull::pull(a),
        Command::Models(a) => cmd::pull::models(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Bench(a) => cmd::bench::bench(a),
        Command::Serve(a) => cmd::serve::serve(a),
        Command::Keys(a) => cmd::admin::keys(a),
        Command::Ps(r) => cmd::admin::ps(r),
        Command::Load { model, remote } => cmd::admin::load(remote, &model),
        Command::Unload { model, forget, remote } => cmd::admin::unload(remote, &model, forget),
        Command::Tasks(a) => cmd::tasks::tasks(a),
        Command::Task(a) => cmd::tasks::task(a),
        Command::Stats(a) => cmd::tasks::stats(a),
        Command::Audit(a) => cmd::audit::audit(a),
        Command::Eval(a) => cmd::eval::eval(a),
        Command::Data(a) => cmd::data::data(a),
        Command::Guard(a) => {
            return cmd::guard::guard(a).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
