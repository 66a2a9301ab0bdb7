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
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| match e.classify() {
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

impl InMessage {
    /// The message's text: the string, or its parts' text joined (what the audit, the task
    /// input and the chat template see).
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(p)) => p.iter().filter_map(|x| x.text.as_deref()).collect(),
        }
    }

    /// Every text of the message (the string, or each part's).
    pub fn texts(&self) -> Vec<&String> {
        match &self.content {
            Some(Content::Text(t)) => vec![t],
            Some(Content::Parts(p)) => p.iter().filter_map(|x| x.text.as_ref()).collect(),
            None => Vec::new(),
        }
    }

    /// Every text of the message, in place (what the input guards rewrite).
    pub fn texts_mut(&mut self) -> Vec<&mut String> {
        match &mut self.content {
            Some(Content::Text(t)) => vec![t],
            Some(Content::Parts(p)) => p.iter_mut().filter_map(|x| x.text.as_mut()).collect(),
            None => Vec::new(),
        }
    }
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
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
        }
    }
}

#[derive(Debug, Serialize, Clone)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Clone)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

impl From<&engine::TokenLogprob> for TokenLogprob {
    fn from(l: &engine::TokenLogprob) -> Self {
        Self {
            token: l.token.clone(),
            logprob: f64::from(l.logprob),
            bytes: l.token.as_bytes().to_vec(),
            top_logprobs: l
                .top
                .iter()
                .map(|(t, lp)| TopLogprob {
                    token: t.clone(),
                    logprob: f64::from(*lp),
                    bytes: t.as_bytes().to_vec(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, Clone)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
}

// ---------------------------------------------------------------------------------------
// Responses. Field order is the order on the wire. Floats are written as `f64` (an `f32`
// widened), as they were when these bodies were built as `serde_json::Value`s.

/// `POST /v1/chat/completions` without streaming (and `model: "task:NAME"`).
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: [ChatChoice; 1],
    pub usage: Usage,
    /// `rightsize` for the server's models; absent for tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<&'static str>,
    /// What the guardrails did (`null` when none ran), or a task's trace.
    pub rightsize: Option<Rightsize>,
}

#[derive(Debug, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: OutMessage,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub struct OutMessage {
    pub role: &'static str,
    pub content: String,
}

/// The `rightsize` extension of an answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Rightsize {
    Guard {
        guard: GuardSummary,
    },
    /// A task run's answer (`mesh::TaskAnswer` as JSON).
    Task(serde_json::Value),
}

/// What the guardrails did to a request: counters (kinds and counts, never values) and the
/// injection score when it was checked.
#[derive(Debug, Serialize)]
pub struct GuardSummary {
    pub events: std::collections::BTreeMap<String, u64>,
    pub injection_score: Option<f64>,
}

impl From<&guard::Screened> for GuardSummary {
    fn from(s: &guard::Screened) -> Self {
        Self {
            events: s.report.events(),
            injection_score: s.report.injection_score.map(f64::from),
        }
    }
}

/// One streamed chat chunk.
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub system_fingerprint: &'static str,
    pub choices: [ChunkChoice; 1],
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// What a chunk adds: the role (first chunk), text, or nothing (the finishing chunk).
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `POST /v1/completions` (whole or one streamed chunk), and the closing usage chunk of
/// either stream (no choices).
#[derive(Debug, Serialize)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<TextChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// The legacy completions API's logprobs: parallel lists, alternatives as `{token: logprob}`.
#[derive(Debug, Serialize)]
pub struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f64>,
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl From<&[TokenLogprob]> for LegacyLogprobs {
    fn from(lps: &[TokenLogprob]) -> Self {
        Self {
            tokens: lps.iter().map(|l| l.token.clone()).collect(),
            token_logprobs: lps.iter().map(|l| l.logprob).collect(),
            top_logprobs: lps
                .iter()
                .map(|l| {
                    l.top_logprobs
                        .iter()
                        .map(|t| (t.token.clone(), serde_json::Value::from(t.logprob)))
                        .collect()
                })
                .collect(),
        }
    }
}

/// The event that ends a stream in error (instead of `data: [DONE]`).
#[derive(Debug, Serialize)]
pub struct StreamError<'a> {
    pub error: StreamErrorBody<'a>,
}

#[derive(Debug, Serialize)]
pub struct StreamErrorBody<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Serialize)]
pub struct EmbeddingList {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rightsize: Option<Rightsize>,
}

#[derive(Debug, Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vector,
}

/// A vector as floats, or as base64 of its little-endian `f32`s (`encoding_format`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f64>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

pub fn finish_reason(r: engine::FinishReason) -> &'static str {
    match r {
        engine::FinishReason::Stop => "stop",
        engine::FinishReason::Length => "length",
        engine::FinishReason::Cancelled => "stop",
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parse a keep-alive value: seconds as a number, or "30s", "5m", "1h"; negative = forever.
/// NaN, infinities and durations too long to represent are a 400, never a panic.
pub fn parse_keep_alive(v: &serde_json::Value) -> Result<Option<std::time::Duration>, ApiError> {
    let bad = || {
        ApiError::bad_request("`keep_alive` must be seconds or a duration like \"30s\", \"5m\", \"1h\"")
            .param("keep_alive")
    };
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
    std::time::Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The typed bodies write what the `json!` bodies they replaced wrote, byte for byte
    /// (field order, `null`s, omitted fields, `f32`s widened to `f64`).
    #[test]
    fn typed_bodies_match_the_json_they_replaced() {
        let lp = TokenLogprob::from(&engine::TokenLogprob {
            token: "hi".into(),
            logprob: -0.1,
            top: vec![("hi".into(), -0.1), ("yo".into(), -2.3)],
        });
        // What the old `TokenLogprob` (with `f32`s) became inside a `json!` body.
        let old_lp = json!({"token": "hi", "logprob": -0.1f32, "bytes": [104, 105],
                            "top_logprobs": [{"token": "hi", "logprob": -0.1f32, "bytes": [104, 105]}, {"token": "yo", "logprob": -2.3f32, "bytes": [121, 111]}]});
        let usage = Usage::new(3, 2);
        let chat = ChatCompletion {
            id: "chatcmpl-1".into(),
            object: "chat.completion",
            created: 7,
            model: "smol".into(),
            choices: [ChatChoice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: "hi".into(),
                },
                logprobs: Some(ChoiceLogprobs {
                    content: vec![lp.clone()],
                }),
                finish_reason: "stop",
            }],
            usage,
            system_fingerprint: Some("rightsize"),
            rightsize: None,
        };
        let old = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7u64, "model": "smol",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "logprobs": json!({"content": [old_lp]}), "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "rightsize", "rightsize": Option::<serde_json::Value>::None,
        });
        assert_eq!(serde_json::to_string(&chat).unwrap(), old.to_string());

        let legacy = LegacyLogprobs::from(std::slice::from_ref(&lp));
        let old_legacy = json!({
            "tokens": ["hi"], "token_logprobs": [-0.1f32],
            "top_logprobs": [{"hi": -0.1f32, "yo": -2.3f32}],
        });
        assert_eq!(serde_json::to_string(&legacy).unwrap(), old_legacy.to_string());
        let chunk = TextCompletion {
            id: "cmpl-1",
            object: "text_completion",
            created: 7,
            model: "smol",
            choices: vec![TextChoice {
                index: 0,
                text: "hi".into(),
                logprobs: Some(legacy),
                finish_reason: None,
            }],
            usage: None,
        };
        let old = json!({"id": "cmpl-1", "object": "text_completion", "created": 7u64, "model": "smol",
                         "choices": [{"index": 0, "text": "hi", "logprobs": old_legacy, "finish_reason": Option::<&str>::None}]});
        assert_eq!(serde_json::to_string(&chunk).unwrap(), old.to_string());

        let chunk = ChatChunk {
            id: "c",
            object: "chat.completion.chunk",
            created: 7,
            model: "smol",
            system_fingerprint: "rightsize",
            choices: [ChunkChoice {
                index: 0,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some("length"),
            }],
        };
        let old = json!({"id": "c", "object": "chat.completion.chunk", "created": 7u64, "model": "smol", "system_fingerprint": "rightsize",
                         "choices": [{"index": 0, "delta": {}, "logprobs": Option::<serde_json::Value>::None, "finish_reason": "length"}]});
        assert_eq!(serde_json::to_string(&chunk).unwrap(), old.to_string());

        let v = vec![0.1f32, -1.0 / 3.0];
        let emb = EmbeddingList {
            object: "list",
            data: vec![Embedding {
                object: "embedding",
                index: 0,
                embedding: Vector::Float(v.iter().copied().map(f64::from).collect()),
            }],
            model: "minilm".into(),
            usage: EmbeddingUsage {
                prompt_tokens: 4,
                total_tokens: 4,
            },
            rightsize: None,
        };
        let old = json!({"object": "list", "data": [json!({"object": "embedding", "index": 0, "embedding": json!(v)})], "model": "minilm", "usage": {"prompt_tokens": 4, "total_tokens": 4}});
        assert_eq!(serde_json::to_string(&emb).unwrap(), old.to_string());
    }

    #[test]
    fn keep_alive_rejects_what_is_not_a_duration_without_panicking() {
        assert_eq!(
            parse_keep_alive(&json!("5m")).unwrap(),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_keep_alive(&json!(1.5)).unwrap(),
            Some(std::time::Duration::from_millis(1500))
        );
        assert!(
            parse_keep_alive(&json!(-1))
                .unwrap()
                .is_some_and(|d| d.as_secs() > 1 << 40),
            "negative: forever"
        );
        for v in [
            json!(1e300),
            json!("1e300"),
            json!("1e300h"),
            json!("NaN"),
            json!("inf"),
            json!("-inf"),
            json!("infs"),
            json!("nanm"),
            json!("5é"),
            json!(""),
            json!(true),
        ] {
            let e = parse_keep_alive(&v).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{v}");
            assert_eq!(e.param.as_deref(), Some("keep_alive"));
        }
    }
}
