//! Stage 8: prompt → stream of tokens, with a policy for a full context window.
//!
//! A [`Generator`] owns a [`Session`] and a [`Sampler`]. [`Generator::prompt`] sets the
//! context; each [`Generator::next`] first feeds the previously returned token (so no
//! forward pass is spent on a token nobody asks to continue), then samples.
//!
//! - [`ContextMode::Shift`] (default): tokens go through the KV cache one at a time; when
//!   the window (`block_size`) is full, the most recent `block_size / 2` tokens are
//!   re-encoded at positions `0..` and decoding continues after them.
//! - [`ContextMode::Exact`]: every step recomputes the last `block_size` tokens from
//!   position 0, like nanoGPT's `generate` (crop, full forward). `O(T)` forwards a token:
//!   for tests and parity checks.
//!
//! The token history (`block_size` ids) lives in the session's memory.
use crate::error::Error;
use crate::model::Session;
use crate::sampler::Sampler;

/// What to do when the context window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextMode {
    /// Re-encode the most recent half of the window, then continue (cheap, default).
    #[default]
    Shift,
    /// Recompute the last `block_size` tokens every step (nanoGPT `generate`).
    Exact,
}

/// Streams tokens from a session.
#[derive(Debug)]
pub struct Generator<'s, 'a> {
    session: Session<'s, 'a>,
    sampler: Sampler,
    mode: ContextMode,
    /// Tokens in the window (`history[..len]`; in Shift mode also the KV positions filled).
    len: usize,
    /// Token returned by `next` and not yet fed.
    pending: Option<u32>,
    /// The session's logits belong to the current window.
    ready: bool,
}

impl<'s, 'a> Generator<'s, 'a> {
    /// A generator in [`ContextMode::Shift`].
    pub fn new(session: Session<'s, 'a>, sampler: Sampler) -> Self {
        Self::with_mode(session, sampler, ContextMode::Shift)
    }

    /// A generator with an explicit context policy.
    pub fn with_mode(session: Session<'s, 'a>, sampler: Sampler, mode: ContextMode) -> Self {
        Generator {
            session,
            sampler,
            mode,
            len: 0,
            pending: None,
            ready: false,
        }
    }

    /// Start over with `tokens` as the context (longer prompts are windowed as the mode
    /// says). Errors: [`Error::EmptyPrompt`], [`Error::TokenOutOfRange`] (checked before
    /// anything runs).
    ///
    /// The result is the state that feeding the tokens one at a time would leave, reached
    /// in at most `block_size` forward passes whatever the prompt's length: the window is
    /// always the most recent tokens, and its KV cache is exactly a fresh pass over them
    /// from position 0, so only the window's length has to be worked out
    /// ([`window_len`]).
    pub fn prompt(&mut self, tokens: &[u32]) -> Result<(), Error> {
        let cfg = *self.session.model().config();
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(Error::TokenOutOfRange {
                token,
                vocab_size: cfg.vocab_size as u32,
            });
        }
        let w = window_len(self.mode, tokens.len(), cfg.block_size);
        let window = tokens.get(tokens.len() - w..).unwrap_or(&[]);
        self.len = 0;
        self.pending = None;
        self.ready = false;
        for (slot, &t) in self.session.history.iter_mut().zip(window) {
            *slot = t;
        }
        if self.mode == ContextMode::Shift {
            for (p, &t) in window.iter().enumerate() {
                self.session.forward(t, p)?;
            }
            self.ready = true;
        }
        self.len = w;
        Ok(())
    }

    /// Sample the next token (feeding the previous one first).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<u32, Error> {
        if let Some(t) = self.pending.take() {
            self.feed(t)?;
        }
        if self.len == 0 {
            return Err(Error::EmptyPrompt);
        }
        if !self.ready {
            // Exact mode: the whole window from position 0.
            for p in 0..self.len {
                let t = self.session.history.get(p).copied().unwrap_or(0);
                self.session.forward(t, p)?;
            }
            self.ready = true;
        }
        let t = self.session.sample(&mut self.sampler)?;
        self.pending = Some(t);
        Ok(t)
    }

    fn feed(&mut self, token: u32) -> Result<(), Error> {
        let t = self.session.model().config().block_size;
        match self.mode {
            ContextMode::Shift => {
                if self.len >= t {
                    let keep = t / 2;
                    shift_left(self.session.history, t - keep, keep);
                    for p in 0..keep {
                        let tok = self.session.history.get(p).copied().unwrap_or(0);
                        self.session.forward(tok, p)?;
                    }
                    self.len = keep;
                }
                self.session.forward(token, self.len)?;
                self.ready = true;
            }
            ContextMode::Exact => {
                if self.len >= t {
                    shift_left(self.session.history, 1, t - 1);
                    self.len = t - 1;
                }
                self.ready = false;
            }
        }
        if let Some(slot) = self.session.history.get_mut(self.len) {
            *slot = token;
        }
        self.len += 1;
        Ok(())
    }

    /// Tokens in the current window (the pending token not counted).
    pub fn window(&self) -> &[u32] {
        self.session.history.get(..self.len).unwrap_or(&[])
    }

    /// The context policy.
    pub fn mode(&self) -> ContextMode {
        self.mode
    }

    /// The session (e.g. for its logits after `next`).
    pub fn session(&self) -> &Session<'s, 'a> {
        &self.session
    }

    /// The sampler.
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Take the session and sampler back.
    pub fn into_parts(self) -> (Session<'s, 'a>, Sampler) {
        (self.session, self.sampler)
    }
}

/// Tokens in the window after feeding `n` tokens one at a time into an empty window of
/// `block` positions under `mode`.
///
/// Exact keeps the last `block`. Shift fills the window, then on each token that finds it
/// full keeps the most recent `keep = block / 2` and appends: past the first `block`
/// tokens the length cycles through `keep + 1 ..= block` with period `block - keep`.
pub fn window_len(mode: ContextMode, n: usize, block: usize) -> usize {
    if n <= block {
        return n;
    }
    match mode {
        ContextMode::Exact => block,
        ContextMode::Shift => {
            let keep = block / 2;
            let period = (block - keep).max(1);
            keep + 1 + (n - 1 - block) % period
        }
    }
}

/// `h[..n] = h[from..from + n]` (a left shift, so a forward copy is safe):
/// a plain loop, not `copy_within`, whose `memmove` costs 1.5 KB of Cortex-M flash.
/// Out-of-range indices are skipped (never panics).
fn shift_left(h: &mut [u32], from: usize, n: usize) {
    for i in 0..n {
        let Some(v) = from.checked_add(i).and_then(|j| h.get(j)).copied() else {
            break;
        };
        if let Some(d) = h.get_mut(i) {
            *d = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build, Aligned, SMALL};
    use crate::{Model, SamplerConfig};
    use std::vec;
    use std::vec::Vec;

    fn run(
        model: &Model<'_>,
        mode: ContextMode,
        cfg: SamplerConfig,
        prompt: &[u32],
        n: usize,
    ) -> Vec<u32> {
        let mut mem = vec![0u8; model.session_bytes()];
        let s = model.session(&mut mem).unwrap();
        let mut g = Generator::with_mode(s, Sampler::new(cfg).unwrap(), mode);
        g.prompt(prompt).unwrap();
        (0..n).map(|_| g.next().unwrap()).collect()
    }

    #[test]
    fn shift_equals_exact_until_the_window_fills() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 11,
        };
        // Prompt 3 + 5 generated = 8 = block_size: every step fits in the window.
        let a = run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 6);
        let b = run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 6);
        assert_eq!(a, b);
        // Beyond the window both keep going and stay deterministic.
        let a = run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 40);
        assert_eq!(a, run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 40));
        let e = run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 40);
        assert_eq!(e, run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 40));
        assert!(a.iter().chain(&e).all(|&t| t < 29));
    }

    #[test]
    fn greedy_next_is_argmax_of_a_fresh_forward() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let toks = run(
            &model,
            ContextMode::Shift,
            SamplerConfig::greedy(),
            &[4, 7],
            5,
        );
        // Recompute each step from scratch with a plain session.
        let mut ctx = vec![4u32, 7];
        for &t in &toks {
            let mut mem = vec![0u8; model.session_bytes()];
            let mut s = model.session(&mut mem).unwrap();
            let mut last = Vec::new();
            for (p, &c) in ctx.iter().enumerate() {
                last = s.forward(c, p).unwrap().to_vec();
            }
            assert_eq!(folio_kernels::argmax(&last) as u32, t);
            ctx.push(t);
        }
    }

    #[test]
    fn exact_mode_window_is_the_last_block() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let mut mem = vec![0u8; model.session_bytes()];
        let s = model.session(&mut mem).unwrap();
        let mut g = Generator::with_mode(
            s,
            Sampler::new(SamplerConfig::greedy()).unwrap(),
            ContextMode::Exact,
        );
        let prompt: Vec<u32> = (0..12).collect();
        g.prompt(&prompt).unwrap();
        assert_eq!(g.window(), &prompt[4..]);
        let t = g.next().unwrap();
        g.next().unwrap();
        assert_eq!(g.window().len(), 8);
        assert_eq!(*g.window().last().unwrap(), t);
    }

    #[test]
    fn shift_mode_keeps_half_the_window() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let mut mem = vec![0u8; model.session_bytes()];
        let s = model.session(&mut mem).unwrap();
        let mut g = Generator::new(s, Sampler::new(SamplerConfig::greedy()).unwrap());
        let prompt: Vec<u32> = (0..9).collect();
        g.prompt(&prompt).unwrap();
        // 8 fill the window; the 9th shifts: keep 4 (4..8), then 8.
        assert_eq!(g.window(), &[4, 5, 6, 7, 8]);
    }

    /// The previous `prompt`: every token through `feed`, shifting as the window fills.
    fn prompt_token_by_token(g: &mut Generator<'_, '_>, tokens: &[u32]) {
        g.len = 0;
        g.pending = None;
        g.ready = false;
        for &t in tokens {
            g.feed(t).unwrap();
        }
    }

    #[test]
    fn long_prompts_skip_to_the_window_token_by_token_feeding_ends_with() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let block = model.config().block_size;
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 5,
        };
        let (mut ma, mut mb) = (
            vec![0u8; model.session_bytes()],
            vec![0u8; model.session_bytes()],
        );
        for mode in [ContextMode::Shift, ContextMode::Exact] {
            for n in 1..=5 * block + 3 {
                let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 29).collect();
                let sa = model.session(&mut ma).unwrap();
                let sb = model.session(&mut mb).unwrap();
                let mut a = Generator::with_mode(sa, Sampler::new(cfg).unwrap(), mode);
                let mut b = Generator::with_mode(sb, Sampler::new(cfg).unwrap(), mode);
                a.prompt(&prompt).unwrap();
                prompt_token_by_token(&mut b, &prompt);
                assert_eq!(a.window(), b.window(), "{mode:?} n={n}");
                assert_eq!(a.window().len(), window_len(mode, n, block));
                assert_eq!(a.ready, b.ready);
                if mode == ContextMode::Shift {
                    // Bit-identical logits: the same KV cache over the same positions.
                    let (la, lb) = (a.session().logits(), b.session().logits());
                    assert!(la.iter().zip(lb).all(|(x, y)| x.to_bits() == y.to_bits()));
                }
                // And the same continuation, across the next shifts.
                for step in 0..2 * block {
                    assert_eq!(a.next(), b.next(), "{mode:?} n={n} step {step}");
                }
            }
        }
        // Odd and tiny windows follow the same cycle.
        for block in [1, 2, 3, 5, 8] {
            let mut window = 0;
            for n in 1..40 {
                window = if window >= block {
                    block / 2 + 1
                } else {
                    window + 1
                };
                assert_eq!(
                    window_len(ContextMode::Shift, n, block),
                    window,
                    "{block} {n}"
                );
                assert_eq!(window_len(ContextMode::Exact, n, block), n.min(block));
            }
        }
    }

    #[test]
    fn errors() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let mut mem = vec![0u8; model.session_bytes()];
        let s = model.session(&mut mem).unwrap();
        let mut g = Generator::new(s, Sampler::new(SamplerConfig::greedy()).unwrap());
        assert_eq!(g.next(), Err(Error::EmptyPrompt));
        assert_eq!(g.prompt(&[]), Err(Error::EmptyPrompt));
        assert_eq!(
            g.prompt(&[1, 99]),
            Err(Error::TokenOutOfRange {
                token: 99,
                vocab_size: 29
            })
        );
    }
}
