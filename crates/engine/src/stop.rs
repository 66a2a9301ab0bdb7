//! Streaming text assembly: UTF-8 reassembly across token boundaries and stop strings.
//!
//! Tokens are byte pieces; a multi-byte character may be split across two tokens, and a stop
//! string may be split across several. [`TextStream`] only releases text that can no longer
//! become part of a stop string, so a streamed answer never shows half a stop sequence.

/// Accumulates token bytes and releases safe text deltas.
#[derive(Debug, Default)]
pub struct TextStream {
    pending_bytes: Vec<u8>,
    /// Decoded text not yet released (may be the start of a stop string).
    held: String,
    stops: Vec<String>,
    max_stop_len: usize,
}

/// What happened after feeding a token piece.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// Text that may be shown now.
    pub delta: String,
    /// A stop string matched: generation ends; `delta` holds the text before it.
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stops: &[String]) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let max_stop_len = stops.iter().map(|s| s.len()).max().unwrap_or(0);
        Self {
            stops,
            max_stop_len,
            ..Default::default()
        }
    }

    /// Feed the bytes of one token.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        self.pending_bytes.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Truly invalid bytes (not just incomplete): replace them rather than stall.
                let s = String::from_utf8_lossy(&self.pending_bytes).into_owned();
                self.pending_bytes.clear();
                self.held.push_str(&s);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&self.pending_bytes[..valid])
            .expect("checked")
            .to_owned();
        self.pending_bytes.drain(..valid);
        self.held.push_str(&text);
        self.release()
    }

    fn release(&mut self) -> Fed {
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let delta = self.held[..pos].to_owned();
            self.held.clear();
            return Fed { delta, stopped: true };
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for k in (1..s.len().min(self.held.len() + 1)).rev() {
                if self.held.is_char_boundary(self.held.len() - k)
                    && s.is_char_boundary(k)
                    && self.held.ends_with(&s[..k])
                {
                    keep = keep.max(k);
                    break;
                }
            }
        }
        debug_assert!(keep < self.max_stop_len.max(1));
        let cut = self.held.len() - keep;
        let delta = self.held[..cut].to_owned();
        self.held.drain(..cut);
        Fed { delta, stopped: false }
    }

    /// Release whatever is held at the end of generation (no stop matched).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.pending_bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending_bytes));
            self.pending_bytes.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut ts = TextStream::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let fed = ts.feed(p);
            out.push_str(&fed.delta);
            if fed.stopped {
                return (out, true);
            }
        }
        out.push_str(&ts.finish());
        (out, false)
    }

    #[test]
    fn stop_split_across_tokens_is_not_leaked() {
        let stops = vec!["\n\nUser:".to_string()];
        let mut ts = TextStream::new(&stops);
        assert_eq!(ts.feed(b"Hello").delta, "Hello");
        let f = ts.feed(b"\n\nUs");
        assert_eq!(f.delta, "", "a possible stop prefix must be held back");
        let f = ts.feed(b"er: hi");
        assert!(f.stopped);
        assert_eq!(f.delta, "");
    }

    #[test]
    fn held_prefix_released_when_it_diverges() {
        assert_eq!(run(&["STOP"], &[b"a ST", b"ART b"]), ("a START b".to_string(), false));
    }

    #[test]
    fn multibyte_char_split_across_tokens() {
        let euro = "€".as_bytes();
        let (out, stopped) = run(&[], &[&euro[..1], &euro[1..], b"!"]);
        assert_eq!(out, "€!");
        assert!(!stopped);
    }

    #[test]
    fn earliest_stop_wins() {
        assert_eq!(run(&["b", "a"], &[b"xxab"]), ("xx".to_string(), true));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_stalled() {
        let (out, _) = run(&[], &[&[0xff, b'a']]);
        assert_eq!(out, "\u{fffd}a");
    }
}
