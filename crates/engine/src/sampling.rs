//! Per-sequence sampling over raw logits, in Rust.
//!
//! Each sequence carries its own parameters and RNG, so one batched decode step can sample
//! sixteen sequences with sixteen different settings. The order follows llama.cpp's default
//! chain: penalties → top-k → temperature → top-p → min-p → draw. Temperature 0 is greedy.

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Sampling parameters of one sequence (OpenAI and llama.cpp names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    pub min_p: f32,
    /// HF-style repetition penalty (1.0 = off), applied over the last `penalty_last_n` tokens.
    pub repetition_penalty: f32,
    /// OpenAI presence penalty (0 = off).
    pub presence_penalty: f32,
    /// OpenAI frequency penalty (0 = off).
    pub frequency_penalty: f32,
    /// Window of recent tokens (prompt and output) the penalties look at.
    pub penalty_last_n: usize,
    /// Fixed seed for reproducible sampling; `None` draws one.
    pub seed: Option<u64>,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
            max_tokens: 256,
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    /// Reject values no sampler can honour, with the parameter's name.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |name: &str, why: &str| Err(format!("`{name}` {why}"));
        if !self.temperature.is_finite() || self.temperature < 0.0 || self.temperature > 2.0 {
            return bad("temperature", "must be between 0 and 2");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty <= 10.0) {
            return bad("repetition_penalty", "must be in (0, 10]");
        }
        for (n, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(n, "must be between -2 and 2");
            }
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1");
        }
        if self.stop.len() > 16 {
            return bad("stop", "allows at most 16 strings");
        }
        Ok(())
    }
}

/// Sampler state of one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    recent: std::collections::VecDeque<i32>,
    scratch: Vec<(i32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt_tail: &[i32]) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        let n = params.penalty_last_n;
        let recent = prompt_tail[prompt_tail.len().saturating_sub(n)..]
            .iter()
            .copied()
            .collect();
        Self {
            params,
            rng: StdRng::seed_from_u64(seed),
            recent,
            scratch: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Record a token the sequence emitted (feeds the penalties).
    pub fn accept(&mut self, token: i32) {
        if self.params.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Whether penalties will change logits (then [`Sampler::sample`] works on a copy).
    fn penalises(&self) -> bool {
        let p = &self.params;
        !self.recent.is_empty()
            && (p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0)
    }

    /// Pick the next token from `logits` (disallowed tokens already -inf). `work` is scratch
    /// space, used only when penalties apply, so the common case copies nothing.
    pub fn sample(&mut self, logits: &[f32], work: &mut Vec<f32>) -> i32 {
        let logits = if self.penalises() {
            work.clear();
            work.extend_from_slice(logits);
            self.apply_penalties(work);
            &work[..]
        } else {
            logits
        };
        let p = &self.params;
        if p.temperature <= 0.0 {
            return argmax(logits) as i32;
        }
        let cands = &mut self.scratch;
        cands.clear();
        cands.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as i32, l)),
        );
        if cands.is_empty() {
            return argmax(logits) as i32;
        }
        let k = if p.top_k == 0 {
            cands.len()
        } else {
            p.top_k.min(cands.len())
        };
        if k < cands.len() {
            cands.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            cands.truncate(k);
        }
        cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        // Temperature, then softmax (in place: .1 becomes the probability).
        let max = cands[0].1 / p.temperature;
        let mut sum = 0.0f64;
        for c in cands.iter_mut() {
            c.1 = ((c.1 / p.temperature) - max).exp();
            sum += c.1 as f64;
        }
        for c in cands.iter_mut() {
            c.1 = (c.1 as f64 / sum) as f32;
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut cut = cands.len();
            for (i, c) in cands.iter().enumerate() {
                acc += c.1;
                if acc >= p.top_p {
                    cut = i + 1;
                    break;
                }
            }
            cands.truncate(cut);
        }
        if p.min_p > 0.0 {
            let floor = cands[0].1 * p.min_p;
            cands.retain(|c| c.1 >= floor);
        }
        let total: f32 = cands.iter().map(|c| c.1).sum();
        let mut r = self.rng.gen::<f32>() * total;
        for c in cands.iter() {
            r -= c.1;
            if r <= 0.0 {
                return c.0;
            }
        }
        cands.last().map(|c| c.0).unwrap_or(0)
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        let mut counts: HashMap<i32, u32> = HashMap::new();
        for &t in &self.recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            if !l.is_finite() {
                continue;
            }
            if p.repetition_penalty != 1.0 {
                *l = if *l > 0.0 {
                    *l / p.repetition_penalty
                } else {
                    *l * p.repetition_penalty
                };
            }
            *l -= p.frequency_penalty * n as f32 + p.presence_penalty;
        }
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// log-sum-exp of the finite values, for log-softmax without a full copy.
pub fn log_sum_exp(xs: &[f32]) -> f32 {
    let max = xs
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f32::NEG_INFINITY;
    }
    let s: f64 = xs
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| ((x - max) as f64).exp())
        .sum();
    max + s.ln() as f32
}

/// The `n` most likely tokens as `(token, logprob)`, best first.
pub fn top_logprobs(logits: &[f32], lse: f32, n: usize) -> Vec<(i32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut idx: Vec<(i32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as i32, l))
        .collect();
    let n = n.min(idx.len());
    if n == 0 {
        return idx;
    }
    if n < idx.len() {
        idx.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        idx.truncate(n);
    }
    idx.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
    idx.into_iter().map(|(t, l)| (t, l - lse)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            seed: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(params(0.0), &[]);
        assert_eq!(s.sample(&[0.1, 3.0, 2.9, -1.0], &mut Vec::new()), 1);
    }

    #[test]
    fn same_seed_same_draws_different_seed_differs() {
        let logits = vec![1.0f32; 50];
        let draw = |seed| {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature: 1.0,
                    seed: Some(seed),
                    ..Default::default()
                },
                &[],
            );
            (0..20).map(|_| s.sample(&logits, &mut Vec::new())).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        let mut s = Sampler::new(params(1.5), &[]);
        for _ in 0..200 {
            let l = vec![5.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
            let t = s.sample(&l, &mut Vec::new());
            assert!(t == 0 || t == 2, "drew masked token {t}");
        }
    }

    #[test]
    fn top_k_one_is_greedy_even_when_hot() {
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 2.0,
                top_k: 1,
                seed: Some(3),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.0, 0.5, 0.4], &mut Vec::new()), 1);
        }
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.7 keeps two tokens.
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                top_p: 0.7,
                seed: Some(1),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..300 {
            let t = s.sample(&[3.0, 2.0, 1.0, 0.0], &mut Vec::new());
            assert!(t == 0 || t == 1);
        }
    }

    #[test]
    fn min_p_cuts_unlikely_tokens() {
        let mut s = Sampler::new(
            SamplingParams {
                temperature: 1.0,
                min_p: 0.2,
                seed: Some(1),
                ..Default::default()
            },
            &[],
        );
        for _ in 0..300 {
            // p(2) / p(0) = e^-3 ≈ 0.05 < 0.2
            assert_ne!(s.sample(&[3.0, 2.5, 0.0], &mut Vec::new()), 2);
        }
    }

    #[test]
    fn penalties_change_the_greedy_choice() {
        let mut p = params(0.0);
        p.presence_penalty = 1.0;
        let mut s = Sampler::new(p, &[0]);
        assert_eq!(
            s.sample(&[2.0, 1.5], &mut Vec::new()),
            1,
            "token 0 was seen: 2.0 - 1.0 < 1.5"
        );
        let mut p = params(0.0);
        p.repetition_penalty = 2.0;
        let mut s = Sampler::new(p, &[]);
        s.accept(0);
        assert_eq!(s.sample(&[2.0, 1.5], &mut Vec::new()), 1, "2.0 / 2 < 1.5");
        let mut p = params(0.0);
        p.frequency_penalty = 0.3;
        let mut s = Sampler::new(p, &[0, 0]);
        assert_eq!(s.sample(&[2.0, 1.5], &mut Vec::new()), 1, "2.0 - 0.6 < 1.5");
    }

    #[test]
    fn logprobs_are_normalised() {
        let logits = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        let lse = log_sum_exp(&logits);
        let top = top_logprobs(&logits, lse, 10);
        assert_eq!(top.len(), 3, "masked tokens are not alternatives");
        assert_eq!(top[0].0, 2);
        let total: f32 = top.iter().map(|(_, lp)| lp.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn validate_names_the_bad_parameter() {
        let p = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("top_p"));
        let p = SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("temperature"));
        for r in [0.0, -1.0, 1e30, f32::INFINITY, f32::NAN] {
            let p = SamplingParams {
                repetition_penalty: r,
                ..Default::default()
            };
            assert!(p.validate().unwrap_err().contains("repetition_penalty"), "{r}");
        }
        assert!(SamplingParams::default().validate().is_ok());
    }
}
