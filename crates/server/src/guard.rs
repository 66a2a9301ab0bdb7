//! `POST /v1/guard/pii`: the PII detector alone — find, redact, mask, hash or block.

use crate::error::ApiError;
use crate::openai::Body;
use axum::Json;
use guard::{Detector, GuardError, Mode, PiiConfig, Policy};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The built-in recognisers (compiled once per process).
pub fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new(PiiConfig::default()).expect("built-in recognisers compile"))
}

/// Salt for `hash` mode: random per process, so hashes correlate within a run only.
pub fn salt() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| format!("{:032x}", rand::random::<u128>()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiRequest {
    pub input: String,
    /// redact (default), mask, hash, block or pseudonymize.
    #[serde(default)]
    pub mode: Option<Mode>,
}

pub async fn pii(Body(r): Body<PiiRequest>) -> Result<Json<Value>, ApiError> {
    let d = detector();
    let spans = d.detect(&r.input);
    let policy = Policy::new(r.mode.unwrap_or(Mode::Redact)).with_salt(salt());
    match d.apply(&r.input, &policy) {
        Ok(red) => Ok(Json(json!({
            "entities": spans.iter().map(|s| json!({"kind": s.kind, "start": s.start, "end": s.end})).collect::<Vec<_>>(),
            "counts": red.counts,
            "text": red.text,
        }))),
        Err(e @ GuardError::Blocked { .. }) => Err(ApiError::unprocessable(e.to_string()).param("input")),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}
