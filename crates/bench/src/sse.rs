//! Reading an OpenAI chat-completions SSE stream: time of the first content
//! delta, number of content chunks, and the final `usage` when the server sends it.

use std::time::Duration;

use serde_json::Value;

/// `(completion_tokens, prompt_tokens)` from a response or chunk carrying `usage`.
pub(crate) fn usage_of(v: &Value) -> Option<(u64, u64)> {
    let u = v.get("usage")?;
    let c = u.get("completion_tokens")?.as_u64()?;
    Some((c, u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0)))
}

pub(crate) enum SseStep {
    Continue,
    Done,
}

/// State of one SSE response.
#[derive(Default)]
pub(crate) struct SseCounter {
    pub(crate) first_token: Option<Duration>,
    pub(crate) content_chunks: u64,
    pub(crate) usage: Option<(u64, u64)>,
}

impl SseCounter {
    pub(crate) fn line(&mut self, line: &str, now: Duration) -> Result<SseStep, String> {
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(SseStep::Continue); // blank separators, comments, event:/id: lines
        };
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(SseStep::Done);
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("bad SSE JSON ({e}): {data}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("server error in stream: {err}"));
        }
        if let Some(u) = usage_of(&v) {
            self.usage = Some(u);
        }
        let has_content = v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("delta"))
            .any(|d| {
                ["content", "reasoning_content"]
                    .iter()
                    .any(|k| d.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
            });
        if has_content {
            self.content_chunks += 1;
            self.first_token.get_or_insert(now);
        }
        Ok(SseStep::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_counter_skips_role_chunk_and_reads_usage() {
        let mut c = SseCounter::default();
        let ms = Duration::from_millis;
        let lines = [
            r#"data: {"choices":[{"delta":{"role":"assistant","content":null}}]}"#,
            "",
            r#"data: {"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"data: {"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"data: {"choices":[],"usage":{"completion_tokens":7,"prompt_tokens":3}}"#,
        ];
        for (i, l) in lines.iter().enumerate() {
            assert!(matches!(c.line(l, ms(i as u64)).unwrap(), SseStep::Continue));
        }
        assert!(matches!(c.line("data: [DONE]", ms(9)).unwrap(), SseStep::Done));
        assert_eq!(c.first_token, Some(ms(2)));
        assert_eq!(c.content_chunks, 2);
        assert_eq!(c.usage, Some((7, 3)));
        assert!(c.line(r#"data: {"error":{"message":"x"}}"#, ms(1)).is_err());
    }
}
