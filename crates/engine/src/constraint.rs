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
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"}))),
            Constraint::Regex(rx) => {
                regex_syntax::parse(rx).map_err(|e| EngineError::InvalidConstraint(format!("invalid regex: {e}")))?;
                TopLevelGrammar::from_regex(rx)
            }
            Constraint::Labels(labels) => {
                if labels.is_empty() || labels.iter().any(|l| l.is_empty()) {
                    return Err(EngineError::InvalidConstraint(
                        "labels must be non-empty strings".into(),
                    ));
                }
                let alts: Vec<String> = labels.iter().map(|l| regex_syntax::escape(l)).collect();
                TopLevelGrammar::from_regex(&format!("({})", alts.join("|")))
            }
        })
    }
}

/// Small models given free whitespace inside JSON tend to emit newlines until `max_tokens`;
/// fix the layout to `{"a": 1, "b": [2, 3]}` unless the schema sets its own `x-guidance`.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    close_objects(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(
            || serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// An object schema that lists `properties` but says nothing of `additionalProperties` is
/// closed (as OpenAI's strict mode requires): otherwise a small model invents keys forever.
/// Only narrows the valid set; set `additionalProperties` explicitly to allow extra keys.
fn close_objects(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(obj) => {
            let open_by_default = obj.contains_key("properties")
                && !obj.contains_key("additionalProperties")
                && !obj.contains_key("patternProperties")
                && !obj.contains_key("unevaluatedProperties");
            if open_by_default {
                obj.insert("additionalProperties".into(), serde_json::Value::Bool(false));
            }
            for (k, child) in obj.iter_mut() {
                // `properties`, `$defs` and `definitions` map names to schemas; `enum` and
                // `const` hold data, not schemas.
                if k == "enum" || k == "const" || k == "x-guidance" || k == "default" || k == "examples" {
                    continue;
                }
                close_objects(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
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
        Ok(Self {
            factory: Arc::new(factory),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_with_properties_are_closed_unless_explicit() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                "c": {"type": "object", "properties": {}, "additionalProperties": true},
                "d": {"enum": [{"properties": {}}]}
            },
            "$defs": {"x": {"type": "object", "properties": {"y": {"type": "integer"}}}}
        });
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["a"]["additionalProperties"], json!(false));
        assert_eq!(
            s["properties"]["c"]["additionalProperties"],
            json!(true),
            "explicit choice kept"
        );
        assert_eq!(
            s["properties"]["d"]["enum"][0],
            json!({"properties": {}}),
            "data untouched"
        );
        assert_eq!(s["$defs"]["x"]["additionalProperties"], json!(false));
        let mut free = json!({"type": "object"});
        close_objects(&mut free);
        assert_eq!(free, json!({"type": "object"}), "json_object mode stays open");
    }
}
