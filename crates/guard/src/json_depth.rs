//! Nesting depth of JSON text, measured without parsing (so `[[[[…` 100k deep costs a
//! linear scan, never a deep recursion).

/// Deepest array/object nesting in `text`, or `Err(limit)` as soon as it exceeds
/// `limit`. Brackets inside strings (escapes honoured) do not count. Malformed JSON is
/// measured too; the parser reports it afterwards.
pub fn nesting_depth(text: &str, limit: usize) -> Result<usize, usize> {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_str, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Err(limit);
                }
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_structure_not_strings() {
        assert_eq!(nesting_depth(r#"{"a": [1, {"b": "[[[{{{"}]}"#, 10), Ok(3));
        assert_eq!(nesting_depth(r#"["\"[[["]"#, 10), Ok(1));
        assert_eq!(nesting_depth("1", 10), Ok(0));
        assert_eq!(nesting_depth(&"[".repeat(100_000), 128), Err(128));
    }
}
