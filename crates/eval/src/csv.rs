//! CSV import: one row per item, one column holds the expected answer, the others
//! become input variables. A small RFC 4180 reader (quoted fields, doubled quotes,
//! newlines inside quotes, CRLF; a quote inside an unquoted field is kept literally),
//! so no extra dependency is needed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::dataset::{Expected, Item, Split};
use crate::error::{EvalError, Result};

/// How [`import_csv`] reads a file.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// Field separator (default `,`).
    pub delimiter: char,
    /// Column holding item ids; default: `line-N` (the row's first line in the file).
    pub id_column: Option<String>,
    /// Column holding `dev`/`test` (empty cell = assign by hash).
    pub split_column: Option<String>,
    /// Parse expected cells that are numbers or JSON objects as such (default: all text).
    pub parse_expected: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            id_column: None,
            split_column: None,
            parse_expected: false,
        }
    }
}

/// Reads a CSV file with a header row into items. Write them back with
/// [`Dataset::write_jsonl`](crate::Dataset::write_jsonl).
pub fn import_csv(path: &Path, expected_column: &str, opts: &CsvOptions) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    parse_csv_items(&text, &path.display().to_string(), expected_column, opts)
}

/// [`import_csv`] on text; `source` names it in error messages.
pub fn parse_csv_items(text: &str, source: &str, expected_column: &str, opts: &CsvOptions) -> Result<Vec<Item>> {
    let rows = parse_records(text, opts.delimiter).map_err(|(line, msg)| EvalError::Parse {
        file: source.into(),
        line,
        msg,
    })?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(EvalError::Parse {
            file: source.into(),
            line: 1,
            msg: "empty file: a header row is needed".into(),
        });
    };
    let col = |name: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| EvalError::Parse {
                file: source.into(),
                line: 1,
                msg: format!("no column `{name}` in the header (columns: {})", header.join(", ")),
            })
    };
    let exp_col = col(expected_column)?;
    let id_col = opts.id_column.as_deref().map(col).transpose()?;
    let split_col = opts.split_column.as_deref().map(col).transpose()?;
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (line, fields) in rows {
        let err = |msg: String| EvalError::Parse {
            file: source.into(),
            line,
            msg,
        };
        if fields.len() == 1 && fields[0].is_empty() {
            continue; // blank line
        }
        if fields.len() != header.len() {
            return Err(err(format!(
                "{} fields, but the header has {}",
                fields.len(),
                header.len()
            )));
        }
        let id = match id_col {
            Some(c) if !fields[c].trim().is_empty() => fields[c].trim().to_string(),
            Some(_) => return Err(err("empty id".into())),
            None => format!("line-{line}"),
        };
        if let Some(prev) = seen.insert(id.clone(), line) {
            return Err(err(format!("duplicate id `{id}` (first on line {prev})")));
        }
        let split = match split_col.map(|c| fields[c].trim().to_lowercase()) {
            None => None,
            Some(s) if s.is_empty() => None,
            Some(s) if s == "dev" => Some(Split::Dev),
            Some(s) if s == "test" => Some(Split::Test),
            Some(s) => return Err(err(format!("split must be `dev` or `test`, got `{s}`"))),
        };
        let raw = &fields[exp_col];
        let expected = if opts.parse_expected {
            match serde_json::from_str::<serde_json::Value>(raw.trim()) {
                Ok(serde_json::Value::Number(n)) => {
                    n.as_f64().map(Expected::Number).unwrap_or(Expected::Text(raw.clone()))
                }
                Ok(serde_json::Value::Object(m)) => Expected::Json(m),
                _ => Expected::Text(raw.clone()),
            }
        } else {
            Expected::Text(raw.clone())
        };
        let input: BTreeMap<String, String> = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != exp_col && Some(*i) != id_col && Some(*i) != split_col)
            .map(|(i, h)| (h.trim().to_string(), fields[i].clone()))
            .collect();
        items.push(Item {
            id,
            input,
            expected,
            split,
        });
    }
    Ok(items)
}

/// Splits CSV text into records, each with the 1-based line it starts on.
/// A CSV record with the 1-based line it starts on; a parse failure with its line.
type Records = std::result::Result<Vec<(usize, Vec<String>)>, (usize, String)>;

fn parse_records(text: &str, delim: char) -> Records {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut start_line) = (1usize, 1usize);
    let (mut in_quotes, mut quoted_field) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted_field => {
                in_quotes = true;
                quoted_field = true;
            }
            '"' if !quoted_field => field.push('"'), // a quote inside an unquoted field is literal
            c if c == delim => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut fields)));
                quoted_field = false;
                line += 1;
                start_line = line;
            }
            _ if quoted_field => return Err((line, "text after a closing quote".into())),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((start_line, "unterminated quoted field".into()));
    }
    if !field.is_empty() || !fields.is_empty() || quoted_field {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    #[test]
    fn csv_import_round_trips_through_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("data.csv");
        let text = "id,text,label,split\r\nA1,\"Hello, \"\"world\"\"\",pos,dev\r\nA2,\"two\nlines\",neg,\r\n\r\nA3,plain,neg,TEST\r\n";
        std::fs::write(&csv_path, text).unwrap();
        let opts = CsvOptions {
            id_column: Some("id".into()),
            split_column: Some("split".into()),
            ..Default::default()
        };
        let items = import_csv(&csv_path, "label", &opts).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].id, "A1");
        assert_eq!(items[0].input["text"], "Hello, \"world\"");
        assert_eq!(items[0].input.len(), 1);
        assert_eq!(items[0].split, Some(Split::Dev));
        assert_eq!(items[1].input["text"], "two\nlines");
        assert_eq!(items[1].split, None);
        assert_eq!(items[2].split, Some(Split::Test));
        assert_eq!(items[2].expected, Expected::Text("neg".into()));

        let jsonl = dir.path().join("data.jsonl");
        Dataset::from_items("csv", items.clone()).write_jsonl(&jsonl).unwrap();
        assert_eq!(Dataset::load(&jsonl).unwrap().items, items);
    }

    #[test]
    fn csv_defaults_errors_and_parsed_expected() {
        let opts = CsvOptions {
            parse_expected: true,
            ..Default::default()
        };
        let items = parse_csv_items(
            "q;a\nx;3.5\ny;{\"k\":1}\nz;abc",
            "m",
            "a",
            &CsvOptions { delimiter: ';', ..opts },
        )
        .unwrap();
        assert_eq!(items[0].id, "line-2");
        assert_eq!(items[0].expected, Expected::Number(3.5));
        assert!(matches!(items[1].expected, Expected::Json(_)));
        assert_eq!(items[2].expected, Expected::Text("abc".into()));

        let e = parse_csv_items("q,a\nx,1,extra\n", "f.csv", "a", &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "f.csv:2: 3 fields, but the header has 2");
        let e = parse_csv_items("q,a\nx,1\n", "f.csv", "label", &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column `label`"), "{e}");
        let e = parse_csv_items("q,a\n\"x,1\n", "f.csv", "a", &CsvOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.csv:2: unterminated"), "{e}");
    }
}
