//! Post-generation confidence signals, per output kind. Each returns a number in 0..=1 that a
//! tier's threshold is compared with, plus the raw signals for the trace.

use serde_json::{json, Value};

/// Label tasks: the chosen label's probability within the label set and its margin over the
/// runner-up. `probs` must sum to 1 over the labels.
pub fn label(probs: &[f64]) -> (usize, f64, f64) {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let best = order[0];
    let second = order.get(1).map(|&i| probs[i]).unwrap_or(0.0);
    (best, probs[best], probs[best] - second)
}

/// Free text: `exp(mean logprob)` (the geometric-mean token probability) and the minimum
/// token logprob.
pub fn text(logprobs: &[f32]) -> Option<(f64, f64)> {
    if logprobs.is_empty() {
        return None;
    }
    let mean = logprobs.iter().map(|&l| l as f64).sum::<f64>() / logprobs.len() as f64;
    let min = logprobs.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    Some((mean.exp(), min))
}

/// Agreement of k samples: the share that equals the most common answer (after trimming and
/// lower-casing), and that answer's index.
pub fn agreement(answers: &[String]) -> (usize, f64) {
    let norm: Vec<String> = answers
        .iter()
        .map(|a| a.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
        .collect();
    let mut best = (0, 0);
    for (i, a) in norm.iter().enumerate() {
        let n = norm.iter().filter(|b| *b == a).count();
        if n > best.1 {
            best = (i, n);
        }
    }
    (best.0, best.1 as f64 / answers.len().max(1) as f64)
}

/// JSON tasks: confidence per top-level field, from the logprobs of the tokens that wrote its
/// value (keys and punctuation are forced by the schema, so they say nothing). A field's
/// confidence is `exp(mean logprob)` of its value tokens; the answer's is the lowest field's.
/// `tokens` are the generated pieces in order; their concatenation is `text`.
pub fn json_fields(text: &str, tokens: &[(String, f32)]) -> (f64, Value) {
    let spans = value_spans(text);
    let mut starts = Vec::with_capacity(tokens.len());
    let mut at = 0usize;
    for (t, _) in tokens {
        starts.push((at, at + t.len()));
        at += t.len();
    }
    let mut fields = serde_json::Map::new();
    let mut lowest = 1.0f64;
    for (name, (s, e)) in spans {
        let lps: Vec<f64> = tokens
            .iter()
            .zip(&starts)
            .filter(|(_, (ts, te))| *ts < e && *te > s)
            .map(|((_, lp), _)| *lp as f64)
            .collect();
        if lps.is_empty() {
            continue;
        }
        let c = (lps.iter().sum::<f64>() / lps.len() as f64).exp();
        lowest = lowest.min(c);
        fields.insert(name, json!(c));
    }
    (lowest, Value::Object(fields))
}

/// Byte spans of the values of a top-level JSON object's fields.
fn value_spans(text: &str) -> Vec<(String, (usize, usize))> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = match text.find('{') {
        Some(i) => i + 1,
        None => return out,
    };
    loop {
        i = skip_ws(b, i);
        if i >= b.len() || b[i] != b'"' {
            return out;
        }
        let key_end = skip_string(b, i);
        let key: String = serde_json::from_str(&text[i..key_end.min(text.len())]).unwrap_or_default();
        i = skip_ws(b, key_end);
        if i >= b.len() || b[i] != b':' {
            return out;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start);
        out.push((key, (start, end)));
        i = skip_ws(b, end);
        if i >= b.len() || b[i] != b',' {
            return out;
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// `i` at an opening quote; returns the index after the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_value(b: &[u8], i: usize) -> usize {
    if i >= b.len() {
        return i;
    }
    match b[i] {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace() {
                j += 1;
            }
            j
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_margin_is_best_minus_second() {
        let (i, p, m) = label(&[0.2, 0.7, 0.1]);
        assert_eq!(i, 1);
        assert!((p - 0.7).abs() < 1e-12 && (m - 0.5).abs() < 1e-12);
    }

    #[test]
    fn agreement_picks_the_majority_ignoring_case_and_spacing() {
        let a = vec!["Paris".to_string(), " paris ".to_string(), "Lyon".to_string()];
        let (i, share) = agreement(&a);
        assert!(i == 0 || i == 1);
        assert!((share - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn json_field_confidence_uses_value_tokens_only() {
        // {"name":"Ann","age":7}: keys/punctuation forced (logprob 0), values uncertain.
        let toks: Vec<(String, f32)> = vec![
            ("{\"name\":\"".into(), 0.0),
            ("Ann".into(), -0.1),
            ("\",\"age\":".into(), 0.0),
            ("7".into(), -2.0),
            ("}".into(), 0.0),
        ];
        let text: String = toks.iter().map(|t| t.0.as_str()).collect();
        let (lowest, fields) = json_fields(&text, &toks);
        let age = fields["age"].as_f64().unwrap();
        assert!((age - (-2.0f64).exp()).abs() < 1e-6, "{fields}");
        // The name's value span includes its quotes, which share tokens with forced text.
        assert!(fields["name"].as_f64().unwrap() > age);
        assert!((lowest - age).abs() < 1e-9);
    }

    #[test]
    fn value_spans_handle_nesting_and_escapes() {
        let t = r#"{"a": {"x": [1, "}"]}, "b": "q\"uote", "c": null}"#;
        let spans = value_spans(t);
        let got: Vec<(&str, &str)> = spans.iter().map(|(k, (s, e))| (k.as_str(), &t[*s..*e])).collect();
        assert_eq!(
            got,
            vec![("a", r#"{"x": [1, "}"]}"#), ("b", r#""q\"uote""#), ("c", "null")]
        );
    }

    #[test]
    fn text_confidence_is_geometric_mean_probability() {
        let (c, min) = text(&[-0.5, -1.5]).unwrap();
        assert!((c - (-1.0f64).exp()).abs() < 1e-9);
        assert_eq!(min, -1.5);
        assert!(text(&[]).is_none());
    }
}
