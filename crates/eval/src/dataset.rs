//! Evaluation data sets: JSONL items, deterministic dev/test splits, leak check.
//!
//! See the crate docs for the file format.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{EvalError, Result};
use crate::split::{check_no_leak, hash_split, SplitConfig, Splits};
use serde::{Deserialize, Serialize};

/// Which half of a data set an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to choose a configuration (calibration, right-sizing).
    Dev,
    /// Held out: used only to report the chosen configuration.
    Test,
}

/// The reference answer of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Expected {
    /// A label or a free-text answer.
    Text(String),
    /// A numeric answer.
    Number(f64),
    /// A structured answer (scored field by field).
    Json(serde_json::Map<String, serde_json::Value>),
}

impl Expected {
    /// The answer as text: the string, the number, or the object as compact JSON.
    pub fn as_text(&self) -> String {
        match self {
            Expected::Text(s) => s.clone(),
            Expected::Number(n) => serde_json::Value::from(*n).to_string(),
            Expected::Json(m) => serde_json::Value::Object(m.clone()).to_string(),
        }
    }

    /// The answer as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Expected::Text(s) => serde_json::Value::String(s.clone()),
            Expected::Number(n) => serde_json::Value::from(*n),
            Expected::Json(m) => serde_json::Value::Object(m.clone()),
        }
    }
}

/// One evaluation item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Unique id (`line-N` when the file gives none).
    pub id: String,
    /// Template variables of the task's prompt, by name.
    pub input: BTreeMap<String, String>,
    /// The reference answer.
    pub expected: Expected,
    /// The split given in the file; `None` means "assign by hash".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

impl Item {
    /// The input in canonical form: variables sorted by name, values trimmed, inner
    /// whitespace collapsed and lowercased. Two items with the same normalised input
    /// are "the same question" for split assignment and the leak check.
    pub fn normalized_input(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.input {
            out.push_str(k);
            out.push('\u{1f}');
            out.push_str(&v.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase());
            out.push('\u{1e}');
        }
        out
    }

    /// The split this item falls in: its explicit split, else by hash of the normalised input.
    pub fn resolved_split(&self, cfg: &SplitConfig) -> Split {
        self.split.unwrap_or_else(|| hash_split(&self.normalized_input(), cfg))
    }
}

/// A loaded data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it came from (file path or a name), for messages and reports.
    pub source: String,
    /// The items, in file order.
    pub items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    #[serde(default)]
    id: Option<serde_json::Value>,
    input: serde_json::Map<String, serde_json::Value>,
    expected: serde_json::Value,
    #[serde(default)]
    split: Option<Split>,
}

impl Dataset {
    /// Reads a JSONL file. Errors name the file and the 1-based line.
    pub fn load(path: &Path) -> Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        Dataset::parse(&text, &path.display().to_string())
    }

    /// Parses JSONL text; `source` names it in error messages. Blank lines and lines
    /// starting with `#` or `//` are skipped. Ids must be unique.
    pub fn parse(text: &str, source: &str) -> Result<Dataset> {
        let mut items = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with("//") {
                continue;
            }
            let err = |msg: String| EvalError::Parse {
                file: source.to_string(),
                line: line_no,
                msg,
            };
            let raw: RawItem = serde_json::from_str(t).map_err(|e| err(e.to_string()))?;
            let item = raw_to_item(raw, line_no).map_err(err)?;
            if let Some(prev) = seen.insert(item.id.clone(), line_no) {
                return Err(err(format!("duplicate id `{}` (first on line {prev})", item.id)));
            }
            items.push(item);
        }
        Ok(Dataset {
            source: source.to_string(),
            items,
        })
    }

    /// Builds a data set from items (e.g. from [`import_csv`](crate::import_csv)).
    pub fn from_items(source: impl Into<String>, items: Vec<Item>) -> Dataset {
        Dataset {
            source: source.into(),
            items,
        }
    }

    /// The items as JSONL text (one object a line, `split` only where explicit).
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            out.push_str(&serde_json::to_string(item).expect("items serialise"));
            out.push('\n');
        }
        out
    }

    /// Writes the items as JSONL.
    pub fn write_jsonl(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_jsonl()).map_err(|e| EvalError::io(path, e))
    }

    /// Splits into dev and test (explicit splits kept, the rest by hash). Order is kept.
    pub fn split(&self, cfg: &SplitConfig) -> Splits {
        let mut s = Splits::default();
        for item in &self.items {
            match item.resolved_split(cfg) {
                Split::Dev => s.dev.push(item.clone()),
                Split::Test => s.test.push(item.clone()),
            }
        }
        s
    }

    /// Fails with [`EvalError::Leak`] if any normalised input lands in both splits
    /// (possible only through explicit splits or duplicates with conflicting splits).
    pub fn check_no_leak(&self, cfg: &SplitConfig) -> Result<()> {
        check_no_leak(&self.items, cfg)
    }
}

fn raw_to_item(raw: RawItem, line_no: usize) -> std::result::Result<Item, String> {
    let id = match raw.id {
        None | Some(serde_json::Value::Null) => format!("line-{line_no}"),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("`id` must be a non-empty string, got {other}")),
    };
    let mut input = BTreeMap::new();
    for (k, v) in raw.input {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
            other => return Err(format!("input `{k}` must be a string, number or bool, got {other}")),
        };
        input.insert(k, text);
    }
    let expected = match raw.expected {
        serde_json::Value::String(s) => Expected::Text(s),
        serde_json::Value::Number(n) => Expected::Number(n.as_f64().ok_or("`expected` number out of range")?),
        serde_json::Value::Object(m) => Expected::Json(m),
        other => {
            return Err(format!(
                "`expected` must be a string, a number or a JSON object, got {other}"
            ))
        }
    };
    Ok(Item {
        id,
        input,
        expected,
        split: raw.split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_expected_kinds_and_defaults_ids() {
        let text = "{\"input\":{\"q\":\"a\",\"n\":3},\"expected\":\"yes\"}\n\n# comment\n{\"id\":\"b\",\"input\":{\"q\":\"b\"},\"expected\":4.5,\"split\":\"test\"}\n{\"input\":{\"q\":\"c\"},\"expected\":{\"k\":[1,2]}}\n";
        let ds = Dataset::parse(text, "mem").unwrap();
        assert_eq!(ds.items.len(), 3);
        assert_eq!(ds.items[0].id, "line-1");
        assert_eq!(ds.items[0].input["n"], "3");
        assert_eq!(ds.items[1].expected, Expected::Number(4.5));
        assert_eq!(ds.items[1].split, Some(Split::Test));
        assert!(matches!(ds.items[2].expected, Expected::Json(_)));
        assert_eq!(ds.items[2].id, "line-5");
        // Round trip through JSONL.
        assert_eq!(Dataset::parse(&ds.to_jsonl(), "again").unwrap().items, ds.items);
    }

    #[test]
    fn errors_name_file_and_line() {
        let text = "{\"input\":{\"q\":\"a\"},\"expected\":\"y\"}\n{\"input\":{\"q\":\"b\"},\"expected\":[1]}\n";
        let e = Dataset::parse(text, "data.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("data.jsonl:2: `expected`"), "{e}");
        let e = Dataset::parse("{\"input\":{}, \"expected\":\"y\"}\nnot json\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: "), "{e}");
        let e = Dataset::parse(
            "{\"id\":\"a\",\"input\":{},\"expected\":\"y\"}\n{\"id\":\"a\",\"input\":{},\"expected\":\"n\"}",
            "f",
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate id `a` (first on line 1)"), "{e}");
    }
}
