//! An OpenAI-compatible load generator, usable against any server that speaks
//! `/v1/chat/completions` (llama-server now, rightsize's own server later).
//!
//! `clients` concurrent clients each send `requests_per_client` requests back to
//! back. With `stream: true` (the default) responses are read as SSE: the time to
//! the first content delta is the TTFT, and the completion token count comes from
//! the final `usage` chunk (`stream_options.include_usage`), falling back to
//! counting content chunks when a server sends no usage. With `ignore_eos` every
//! request asks for exactly `max_tokens` (llama-server's `ignore_eos` extension),
//! so two servers decode the same number of tokens.
//!
//! Bounded by construction: a fixed number of requests, an overall deadline, and
//! loopback targets only (127.0.0.0/8, localhost, [::1]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant as TokioInstant;

use crate::sse::{usage_of, SseCounter, SseStep};
use crate::stats::Percentiles;
use crate::BenchError;

/// What load to send where.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// e.g. `http://127.0.0.1:8080` (a trailing `/v1` is fine).
    pub base_url: String,
    /// The `model` field of each request.
    pub model: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub api_key: Option<String>,
    pub clients: usize,
    pub requests_per_client: usize,
    /// User messages, used round-robin over all requests. Must not be empty.
    pub prompts: Vec<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub stream: bool,
    /// Add `"ignore_eos": true` so each request generates exactly `max_tokens`.
    pub ignore_eos: bool,
    /// Deadline for the whole run; requests still running then count as errors.
    pub timeout: Duration,
}

impl LoadSpec {
    /// One client, one request, streaming, temperature 0, 64 tokens, 5 minute deadline.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            clients: 1,
            requests_per_client: 1,
            prompts: vec![prompt.into()],
            max_tokens: 64,
            temperature: 0.0,
            stream: true,
            ignore_eos: false,
            timeout: Duration::from_secs(300),
        }
    }

    /// The full URL requests go to.
    pub fn endpoint(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        }
    }

    /// The JSON body for `prompt`.
    pub fn request_body(&self, prompt: &str) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": self.stream,
        });
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if self.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        body
    }

    fn validate(&self) -> Result<(), BenchError> {
        if self.clients == 0 || self.requests_per_client == 0 {
            return Err(BenchError::InvalidSpec(
                "clients and requests_per_client must be > 0".into(),
            ));
        }
        if self.prompts.is_empty() {
            return Err(BenchError::InvalidSpec("no prompts".into()));
        }
        ensure_loopback(&self.base_url)
    }
}

/// Reject any URL whose host is not on this machine.
pub fn ensure_loopback(url: &str) -> Result<(), BenchError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| BenchError::InvalidSpec(format!("bad url {url}: {e}")))?;
    let host = parsed.host_str().unwrap_or("");
    let ok = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if ok && matches!(parsed.scheme(), "http" | "https") {
        Ok(())
    } else {
        Err(BenchError::NotLoopback(url.to_string()))
    }
}

/// Aggregate outcome of a load run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests planned (`clients * requests_per_client`).
    pub requests: usize,
    pub ok: usize,
    pub errors: usize,
    /// Up to 5 error messages, for diagnosis.
    pub error_samples: Vec<String>,
    pub total_completion_tokens: u64,
    pub total_prompt_tokens: u64,
    /// True when every successful request reported `usage`; false when some
    /// counts came from counting content chunks.
    pub tokens_from_usage: bool,
    /// From the first request sent to the last response finished.
    pub wall_s: f64,
    /// `total_completion_tokens / wall_s`.
    pub aggregate_tps: f64,
    /// Time to first content token (equals latency when not streaming).
    pub ttft_ms: Percentiles,
    /// Whole request latency.
    pub latency_ms: Percentiles,
    /// Per-request decode speed after the first token: `(tokens - 1) / (latency - ttft)`.
    pub decode_tps_per_request: Percentiles,
    /// The overall deadline cut the run short.
    pub timed_out: bool,
}

#[derive(Debug)]
struct Sample {
    ttft: Duration,
    latency: Duration,
    completion_tokens: u64,
    prompt_tokens: u64,
    from_usage: bool,
}

/// Run the load and aggregate. Must be called inside a tokio runtime.
pub async fn run_load(spec: &LoadSpec) -> Result<LoadResult, BenchError> {
    spec.validate()?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        // A fresh connection per request: a pooled keep-alive connection that the
        // server closes while idle fails the next send, an artefact of the client
        // rather than a server error. Loopback connects cost microseconds.
        .pool_max_idle_per_host(0)
        .build()?;
    let endpoint = spec.endpoint();
    let start = Instant::now();
    let deadline = TokioInstant::now() + spec.timeout;

    let mut set = tokio::task::JoinSet::new();
    for c in 0..spec.clients {
        let client = client.clone();
        let spec = spec.clone();
        let endpoint = endpoint.clone();
        set.spawn(async move {
            let mut out: Vec<Result<Sample, String>> = Vec::with_capacity(spec.requests_per_client);
            for r in 0..spec.requests_per_client {
                if TokioInstant::now() >= deadline {
                    out.push(Err("deadline passed before the request was sent".into()));
                    continue;
                }
                let prompt = &spec.prompts[(c * spec.requests_per_client + r) % spec.prompts.len()];
                let res = tokio::time::timeout_at(deadline, one_request(&client, &endpoint, &spec, prompt)).await;
                out.push(match res {
                    Ok(r) => r,
                    Err(_) => Err("overall deadline reached mid-request".into()),
                });
            }
            out
        });
    }
    let mut samples = Vec::new();
    let mut result = LoadResult {
        requests: spec.clients * spec.requests_per_client,
        tokens_from_usage: true,
        ..Default::default()
    };
    while let Some(joined) = set.join_next().await {
        let per_client = joined.map_err(|e| BenchError::InvalidSpec(format!("client task failed: {e}")))?;
        for r in per_client {
            match r {
                Ok(s) => samples.push(s),
                Err(e) => {
                    result.timed_out |= e.contains("deadline");
                    result.errors += 1;
                    if result.error_samples.len() < 5 {
                        result.error_samples.push(e);
                    }
                }
            }
        }
    }
    result.wall_s = start.elapsed().as_secs_f64();
    result.ok = samples.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ttft: Vec<f64> = samples.iter().map(|s| ms(s.ttft)).collect();
    let lat: Vec<f64> = samples.iter().map(|s| ms(s.latency)).collect();
    let decode: Vec<f64> = samples
        .iter()
        .filter(|s| s.completion_tokens > 1 && s.latency > s.ttft)
        .map(|s| (s.completion_tokens - 1) as f64 / (s.latency - s.ttft).as_secs_f64())
        .collect();
    result.ttft_ms = Percentiles::of(&ttft);
    result.latency_ms = Percentiles::of(&lat);
    result.decode_tps_per_request = Percentiles::of(&decode);
    result.total_completion_tokens = samples.iter().map(|s| s.completion_tokens).sum();
    result.total_prompt_tokens = samples.iter().map(|s| s.prompt_tokens).sum();
    result.tokens_from_usage = samples.iter().all(|s| s.from_usage);
    result.aggregate_tps = if result.wall_s > 0.0 {
        result.total_completion_tokens as f64 / result.wall_s
    } else {
        0.0
    };
    Ok(result)
}

/// [`run_load`] on a private tokio runtime, for callers without one.
/// Panics if called from inside a tokio runtime.
pub fn run_load_blocking(spec: &LoadSpec) -> Result<LoadResult, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_load(spec))
}

async fn one_request(
    client: &reqwest::Client,
    endpoint: &str,
    spec: &LoadSpec,
    prompt: &str,
) -> Result<Sample, String> {
    let t0 = Instant::now();
    let mut req = client.post(endpoint).json(&spec.request_body(prompt));
    if let Some(key) = &spec.api_key {
        req = req.bearer_auth(key);
    }
    let mut resp = req.send().await.map_err(|e| format!("send: {}", error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {}", body.chars().take(300).collect::<String>()));
    }
    if !spec.stream {
        let v: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
        let latency = t0.elapsed();
        let (completion, prompt_tokens) = usage_of(&v).ok_or("response without usage")?;
        return Ok(Sample {
            ttft: latency,
            latency,
            completion_tokens: completion,
            prompt_tokens,
            from_usage: true,
        });
    }

    let mut sse = SseCounter::default();
    let mut buf: Vec<u8> = Vec::new();
    'read: while let Some(chunk) = resp.chunk().await.map_err(|e| format!("stream: {}", error_chain(&e)))? {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            match sse.line(line.trim_end_matches(['\r', '\n']), t0.elapsed())? {
                SseStep::Continue => {}
                SseStep::Done => break 'read,
            }
        }
    }
    let latency = t0.elapsed();
    let ttft = sse.first_token.ok_or("stream ended without any content")?;
    let (completion_tokens, prompt_tokens, from_usage) = match sse.usage {
        Some((c, p)) => (c, p, true),
        None => (sse.content_chunks, 0, false),
    };
    Ok(Sample {
        ttft,
        latency,
        completion_tokens,
        prompt_tokens,
        from_usage,
    })
}

/// `e: cause: cause...`, since reqwest's own message hides the root cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1/v1",
            "http://[::1]:9",
            "http://127.3.4.5",
        ] {
            assert!(ensure_loopback(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://192.168.1.2",
            "ftp://127.0.0.1",
            "nonsense",
        ] {
            assert!(ensure_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_and_body() {
        let mut s = LoadSpec::new("http://127.0.0.1:1/", "m", "hi");
        assert_eq!(s.endpoint(), "http://127.0.0.1:1/v1/chat/completions");
        s.base_url = "http://127.0.0.1:1/v1".into();
        assert_eq!(s.endpoint(), "http://127.0.0.1:1/v1/chat/completions");
        let b = s.request_body("hi");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert!(b.get("ignore_eos").is_none());
        s.ignore_eos = true;
        s.stream = false;
        let b = s.request_body("hi");
        assert_eq!(b["ignore_eos"], true);
        assert!(b.get("stream_options").is_none());
    }
}
