//! Constrained decoding with llguidance: at each step a token mask allows only tokens that
//! keep the output inside the grammar (a JSON Schema, a regex, or one of a fixed label set),
//! so even a 135M model can only emit valid JSON for the schema.

use crate::EngineError;
use llguidance::{api::TopLevelGrammar, Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A per-sequence output constraint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Constraint {
    /// Output is JSON valid for this JSON Schema.
    JsonSchema(serde_json::Value),
    /// Output is any JSON object (OpenAI `json_object`).
    JsonObject,
    /// Output matches this regular expression in full.
    Regex(String),
    /// Output is exactly one of these strings.
    Labels(Vec<String>),
}

impl Constraint {
    fn grammar(&self) -> Result<TopLevelGrammar, EngineError> {
        Ok(match self {
            Constraint::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(EngineError::InvalidConstraint("a JSON Schema must be an object".into()));
                }
                TopLevelGrammar::from_json_schema(schema.clone())
            }
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(serde_json::json!({"type": "object"})),
            Constraint::Regex(rx) => {
                regex_syntax::parse(rx).map_err(|e| EngineError::InvalidConstraint(format!("invalid regex: {e}")))?;
                TopLevelGrammar::from_regex(rx)
            }
            Constraint::Labels(labels) => {
                if labels.is_empty() || labels.iter().any(|l| l.is_empty()) {
                    return Err(EngineError::InvalidConstraint("labels must be non-empty strings".into()));
                }
                let alts: Vec<String> = labels.iter().map(|l| regex_syntax::escape(l)).collect();
                TopLevelGrammar::from_regex(&format!("({})", alts.join("|")))
            }
        })
    }
}

/// Compiles constraints against one model's vocabulary (built once per model).
#[derive(Clone)]
pub struct ConstraintCompiler {
    factory: Arc<ParserFactory>,
}

impl ConstraintCompiler {
    pub fn new(tok_env: toktrie::TokEnv) -> Result<Self, EngineError> {
        let mut factory =
            ParserFactory::new_simple(&tok_env).map_err(|e| EngineError::InvalidConstraint(e.to_string()))?;
        factory.set_stderr_log_level(0);
        Ok(Self { factory: Arc::new(factory) })
    }

    /// Compile a constraint into a fresh matcher; a schema llguidance cannot compile is an error.
    pub fn compile(&self, c: &Constraint) -> Result<Matcher, EngineError> {
        let parser = self
            .factory
            .create_parser(c.grammar()?)
            .map_err(|e| EngineError::InvalidConstraint(e.to_string()))?;
        let m = Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            return Err(EngineError::InvalidConstraint(e));
        }
        Ok(m)
    }
}
