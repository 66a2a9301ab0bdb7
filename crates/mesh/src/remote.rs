//! Calling an OpenAI-compatible endpoint as a tier: one chat completion with logprobs, retried
//! with exponential backoff on transient failures, each attempt under the tier's timeout.

use crate::tier_spec::TierSpec;
use serde_json::{json, Value};
use std::time::Duration;

/// What came back from the endpoint.
#[derive(Debug, Clone)]
pub struct RemoteAnswer {
    pub text: String,
    /// `(token, logprob)` per generated token when the endpoint returns logprobs.
    pub tokens: Vec<(String, f32)>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("API key variable `{0}` is not set")]
    MissingKey(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("unexpected response: {0}")]
    Malformed(String),
}

impl RemoteError {
    fn transient(&self) -> bool {
        match self {
            RemoteError::Timeout(_) | RemoteError::Unreachable(_) => true,
            RemoteError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// One call with retries. `body_extra` adds fields (e.g. `response_format`).
pub async fn chat(
    http: &reqwest::Client,
    tier: &TierSpec,
    messages: Value,
    max_tokens: usize,
    body_extra: Value,
) -> Result<RemoteAnswer, RemoteError> {
    let key = match &tier.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| RemoteError::MissingKey(var.clone()))?),
        None => None,
    };
    let url = format!(
        "{}/chat/completions",
        tier.base_url.as_deref().unwrap_or("").trim_end_matches('/')
    );
    let mut body = json!({
        "model": tier.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "logprobs": true,
        "top_logprobs": 1,
    });
    if let (Some(b), Some(extra)) = (body.as_object_mut(), body_extra.as_object()) {
        b.extend(extra.clone());
    }
    let timeout_ms = tier.timeout_ms.unwrap_or(30_000);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let once = async {
            let mut req = http.post(&url).json(&body);
            if let Some(k) = &key {
                req = req.bearer_auth(k);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| RemoteError::Unreachable(without_url(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = resp
                .text()
                .await
                .map_err(|e| RemoteError::Unreachable(without_url(&e)))?;
            if status != 200 {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(RemoteError::Status {
                    status,
                    message,
                    retry_after,
                });
            }
            parse(&text)
        };
        let result = match tokio::time::timeout(Duration::from_millis(timeout_ms), once).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Timeout(timeout_ms)),
        };
        match result {
            Ok(mut a) => {
                a.attempts = attempt;
                return Ok(a);
            }
            Err(e) if e.transient() && attempt <= tier.retries => {
                let base = tier.backoff_ms.saturating_mul(1 << (attempt - 1).min(10));
                let jitter = rand::random::<u64>() % (base / 2 + 1);
                let wait = match &e {
                    RemoteError::Status {
                        retry_after: Some(ra), ..
                    } => (*ra).min(Duration::from_secs(10)),
                    _ => Duration::from_millis(base + jitter),
                };
                tracing::debug!(tier = %tier.id(), attempt, error = %e, ?wait, "retrying remote tier");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// reqwest errors print the URL, which may carry credentials in query strings: drop it.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<endpoint>");
    }
    s
}

fn parse(text: &str) -> Result<RemoteAnswer, RemoteError> {
    let v: Value = serde_json::from_str(text).map_err(|e| RemoteError::Malformed(format!("not JSON: {e}")))?;
    let choice = &v["choices"][0];
    let content = choice["message"]["content"]
        .as_str()
        .ok_or_else(|| RemoteError::Malformed("no choices[0].message.content".into()))?;
    let tokens = choice["logprobs"]["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["token"].as_str()?.to_owned(), t["logprob"].as_f64()? as f32)))
                .collect()
        })
        .unwrap_or_default();
    Ok(RemoteAnswer {
        text: content.to_owned(),
        tokens,
        tokens_in: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        tokens_out: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        attempts: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_shape_with_logprobs() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"logprobs":{"content":[{"token":"hi","logprob":-0.25,"top_logprobs":[]}]}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let a = parse(body).unwrap();
        assert_eq!(a.text, "hi");
        assert_eq!(a.tokens, vec![("hi".to_string(), -0.25)]);
        assert_eq!((a.tokens_in, a.tokens_out), (5, 1));
        assert!(matches!(parse(r#"{"choices":[]}"#), Err(RemoteError::Malformed(_))));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(RemoteError::Timeout(5).transient());
        assert!(RemoteError::Status {
            status: 503,
            message: String::new(),
            retry_after: None
        }
        .transient());
        assert!(RemoteError::Status {
            status: 429,
            message: String::new(),
            retry_after: None
        }
        .transient());
        assert!(!RemoteError::Status {
            status: 400,
            message: String::new(),
            retry_after: None
        }
        .transient());
        assert!(!RemoteError::MissingKey("K".into()).transient());
    }
}
