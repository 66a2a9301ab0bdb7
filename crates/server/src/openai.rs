//! OpenAI wire types (the subset rightsize serves) and a JSON body extractor whose errors are
//! OpenAI-shaped: malformed JSON or invalid UTF-8 → 400, wrong types → 422, too large → 413.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// `Json<T>` with OpenAI-shaped rejections.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("request body is larger than the server's limit")
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ApiError::bad_request("request body is not valid UTF-8"));
        }
        serde_json::from_slice(&bytes).map(Body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::unprocessable(format!("invalid request: {e}")),
            _ => ApiError::bad_request(format!("request body is not valid JSON: {e}")),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// Message content: a string or a list of `{type: "text", text}` parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaSpec },
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub schema: serde_json::Value,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// Sampling fields shared by chat and completions (OpenAI names, plus llama.cpp extensions).
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<StringOrList>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub n: Option<u32>,
    /// rightsize: `interactive` (default) or `batch`.
    pub priority: Option<String>,
    /// rightsize/Ollama: how long to keep the model resident after this request ("5m", "30s", seconds).
    pub keep_alive: Option<serde_json::Value>,
    /// llama.cpp extension: keep generating past end-of-generation (benchmarks).
    pub ignore_eos: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Option<serde_json::Value>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: StringOrList,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Legacy API: number of alternatives per token.
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<serde_json::Value>),
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt: usize, completion: usize) -> Self {
        Self { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
    }
}

#[derive(Debug, Serialize, Clone)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Clone)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

impl From<&engine::TokenLogprob> for TokenLogprob {
    fn from(l: &engine::TokenLogprob) -> Self {
        Self {
            token: l.token.clone(),
            logprob: l.logprob,
            bytes: l.token.as_bytes().to_vec(),
            top_logprobs: l.top.iter().map(|(t, lp)| TopLogprob { token: t.clone(), logprob: *lp, bytes: t.as_bytes().to_vec() }).collect(),
        }
    }
}

#[derive(Debug, Serialize, Clone)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
}

pub fn finish_reason(r: engine::FinishReason) -> &'static str {
    match r {
        engine::FinishReason::Stop => "stop",
        engine::FinishReason::Length => "length",
        engine::FinishReason::Cancelled => "stop",
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Parse a keep-alive value: seconds as a number, or "30s", "5m", "1h"; negative = forever.
/// NaN, infinities and durations too long to represent are a 400, never a panic.
pub fn parse_keep_alive(v: &serde_json::Value) -> Result<Option<std::time::Duration>, ApiError> {
    let bad = || ApiError::bad_request("`keep_alive` must be seconds or a duration like \"30s\", \"5m\", \"1h\"").param("keep_alive");
    let secs: f64 = match v {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let (num, mult) = if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else if let Some(n) = s.strip_suffix('m') {
                (n, 60.0)
            } else if let Some(n) = s.strip_suffix('h') {
                (n, 3600.0)
            } else {
                (s, 1.0)
            };
            num.parse::<f64>().map_err(|_| bad())? * mult
        }
        _ => return Err(bad()),
    };
    if !secs.is_finite() {
        return Err(bad());
    }
    if secs < 0.0 {
        return Ok(Some(std::time::Duration::from_secs(u64::MAX / 4)));
    }
    std::time::Duration::try_from_secs_f64(secs).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_rejects_what_is_not_a_duration_without_panicking() {
        assert_eq!(parse_keep_alive(&json!("5m")).unwrap(), Some(std::time::Duration::from_secs(300)));
        assert_eq!(parse_keep_alive(&json!(1.5)).unwrap(), Some(std::time::Duration::from_millis(1500)));
        assert!(parse_keep_alive(&json!(-1)).unwrap().is_some_and(|d| d.as_secs() > 1 << 40), "negative: forever");
        for v in [json!(1e300), json!("1e300"), json!("1e300h"), json!("NaN"), json!("inf"), json!("-inf"), json!("infs"), json!("nanm"), json!("5é"), json!(""), json!(true)] {
            let e = parse_keep_alive(&v).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(e.param.as_deref(), Some("keep_alive"));
        }
    }
}
