//! A task's labelled examples (JSONL, one per line: `{"input": {...}, "expected": ...}`):
//! the training data of its classifier tier and router.

use crate::error::MeshError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub input: BTreeMap<String, String>,
    pub expected: serde_json::Value,
}

pub fn load(path: &Path) -> Result<Vec<Example>, MeshError> {
    let text = std::fs::read_to_string(path).map_err(|e| MeshError::BadInput(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| MeshError::BadInput(format!("{}:{}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// The text an encoder sees for an input: the values in variable order, one per line (the
/// prompt's fixed wording would only dilute the embedding).
pub fn encoder_text(inputs: &[String], values: &BTreeMap<String, String>) -> String {
    inputs
        .iter()
        .filter_map(|k| values.get(k).map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}
