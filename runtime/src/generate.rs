//! Stage 8: prompt → stream of tokens, with a policy for a full context window.
//!
//! A [`Generator`] owns a [`Session`] and a [`Sampler`]. [`Generator::prompt`] sets the
//! context; each [`Generator::next`] first feeds the previously returned token (so no
//! forward pass is spent on a token nobody asks to continue), then samples.
//!
//! Windows of several tokens go through [`Session::prefill`]'s chunks.
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
use crate::model::{check_tokens, Session};
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
        check_tokens(&cfg, tokens)?;
        let w = window_len(self.mode, tokens.len(), cfg.block_size);
        let window = tokens.get(tokens.len() - w..).unwrap_or(&[]);
        self.len = 0;
        self.pending = None;
        self.ready = false;
        for (slot, &t) in self.session.history.iter_mut().zip(window) {
            *slot = t;
        }
        if self.mode == ContextMode::Shift {
            self.session.prefill_history(w)?;
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
            self.session.prefill_history(self.len)?;
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
                    self.session.prefill_history(keep)?;
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

    /// The session (e.g. for its logits after `next`).
    pub fn session(&self) -> &Session<'s, 'a> {
        &self.session
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
