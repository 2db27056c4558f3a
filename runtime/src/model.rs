//! Stage 5: the model (validated views into the file) and a session (`forward`).
//!
//! [`Model::from_bytes`] reads the header ([`crate::header`]), the config
//! ([`crate::config`]) and the vocabulary from the metadata, then views the weights
//! ([`crate::weights`]). Nothing is copied and nothing is allocated.
//!
//! A [`Session`] owns caller memory: the f16 KV cache, the f32 activations and the int8
//! activations of the quantised matvecs. `forward`
//! follows the math of docs/FORMAT.md:
//!
//! ```text
//! x = wte[token] + wpe[pos]
//! per layer: x += c_proj · attn(ln_1(x)) + b;  x += mlp.c_proj · gelu(c_fc · ln_2(x) + b) + b
//! logits = head · ln_f(x)
//! ```
use crate::config::{Config, SessionLayout, ALIGN_SLACK, MAX_CHUNK};
use crate::error::Error;
use crate::header::{Header, TensorInfo};
use crate::kv_cache::KvCache;
use crate::names::{MetaKey, TensorId};
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;
use crate::weights::{self, ActScratch, Encoding, Weights};
use folio_kernels::f16;

/// A loaded model: validated config, vocabulary and zero-copy weight views of `'a` bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    header: Header<'a>,
    config: Config,
    tokenizer: Tokenizer,
    weights: Weights<'a>,
    layout: SessionLayout,
}

impl<'a> Model<'a> {
    /// Validate a folio file (docs/FORMAT.md) held in `bytes` and view its weights in
    /// place; the data section (at `8 + header length`) must lie at a 4-byte aligned
    /// address. Every malformed input is an [`Error`], never a panic.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let header = Header::parse(bytes)?;
        let config = Config::from_header(&header)?;
        let tokenizer = Tokenizer::parse(header.folio(MetaKey::Vocab)?, config.vocab_size)?;
        let layout = config.layout(1)?;
        let weights = weights::load(&header, &config)?;
        Ok(Model {
            header,
            config,
            tokenizer,
            weights,
            layout,
        })
    }

    /// The validated hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The vocabulary from `folio.vocab`.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The weight views.
    pub fn weights(&self) -> &Weights<'a> {
        &self.weights
    }

    /// The header: every tensor entry (used or ignored) and the raw `__metadata__` values.
    pub fn header(&self) -> &Header<'a> {
        &self.header
    }

    /// The role of a tensor of this file if the forward pass reads it, else `None`.
    pub fn tensor_id(&self, t: &TensorInfo<'_>) -> Option<TensorId> {
        weights::tensor_id_of(t).filter(|&id| weights::is_used(&self.config, id))
    }

    /// Each 2-D weight the forward pass reads, with its encoding.
    pub fn encodings(&self) -> impl Iterator<Item = (TensorId, Encoding)> + '_ {
        self.weights.matrices().map(|(id, m)| (id, m.encoding()))
    }

    /// Bytes of weights the forward pass reads.
    pub fn weight_bytes(&self) -> usize {
        let used = self
            .header
            .tensors()
            .filter(|t| self.tensor_id(t).is_some());
        used.map(|t| t.bytes() as usize).sum()
    }

    /// Bytes of the KV cache of a session: `n_layer * 2 * block_size * n_embd * 2`.
    pub fn kv_bytes(&self) -> usize {
        self.layout.n_f16 * 2
    }

    /// Exact size of the memory [`Model::session`] needs, alignment slack included.
    pub fn session_bytes(&self) -> usize {
        self.layout.bytes
    }

    /// Size of a session whose prompt chunks hold `chunk` tokens (at most
    /// [`MAX_CHUNK`]; 1 gives [`Model::session_bytes`]); `None` on overflow.
    pub fn session_bytes_for(&self, chunk: usize) -> Option<usize> {
        self.config
            .layout(chunk.clamp(1, MAX_CHUNK))
            .ok()
            .map(|l| l.bytes)
    }

    /// Start a session in caller memory (at least [`Model::session_bytes`] bytes, any
    /// alignment). The KV cache is zeroed. Prompts go through the matrices in chunks of
    /// as many tokens as the memory holds, up to [`MAX_CHUNK`]
    /// ([`Model::session_bytes_for`]).
    pub fn session<'s>(&'s self, mem: &'s mut [u8]) -> Result<Session<'s, 'a>, Error> {
        let got = mem.len();
        let chunk = (2..=MAX_CHUNK)
            .rev()
            .find(|&p| self.session_bytes_for(p).is_some_and(|b| b <= got))
            .unwrap_or(1);
        let l = self.config.layout(chunk)?;
        let off = mem.as_ptr().align_offset(core::mem::align_of::<f32>());
        if off > ALIGN_SLACK {
            return Err(Error::BufferMisaligned);
        }
        if got < l.bytes {
            return Err(Error::SessionTooSmall {
                needed: l.bytes,
                got,
            });
        }
        // The buffers below fit: `l.bytes` counts them and the slack.
        let mut mem = mem.get_mut(off..).unwrap_or_default();
        let (fb, ub) = (take(&mut mem, l.n_f32 * 4)?, take(&mut mem, l.n_u32 * 4)?);
        let (hb, ib) = (take(&mut mem, l.n_f16 * 2)?, take(&mut mem, l.n_i8)?);
        let cast = |_| Error::BufferMisaligned;
        let mut f: &mut [f32] = bytemuck::try_cast_slice_mut(fb).map_err(cast)?;
        let mut u: &mut [u32] = bytemuck::try_cast_slice_mut(ub).map_err(cast)?;
        let kv: &mut [f16] = bytemuck::try_cast_slice_mut(hb).map_err(cast)?;
        kv.fill(f16::ZERO);
        let xq: &mut [i8] = bytemuck::try_cast_slice_mut(ib).map_err(cast)?;
        let cfg = &self.config;
        let (c, t, v) = (cfg.n_embd, cfg.block_size, cfg.vocab_size);
        let pc = chunk * c;
        Ok(Session {
            model: self,
            chunk,
            x: take(&mut f, pc)?,
            xn: take(&mut f, pc)?,
            qkv: take(&mut f, 3 * pc)?,
            y: take(&mut f, pc)?,
            tmp: take(&mut f, pc)?,
            hb: take(&mut f, 4 * pc)?,
            scores: take(&mut f, t)?,
            logits: take(&mut f, v)?,
            probs: take(&mut f, v)?,
            idx: take(&mut u, v)?,
            history: take(&mut u, t)?,
            act: ActScratch {
                xs: take(&mut f, l.n_i8 / folio_kernels::QK)?,
                xq,
            },
            kv: KvCache::new(kv, t, c),
        })
    }
}

/// [`Error::EmptyPrompt`] for no tokens, [`Error::TokenOutOfRange`] for the first token
/// not below `vocab_size`.
pub(crate) fn check_tokens(cfg: &Config, tokens: &[u32]) -> Result<(), Error> {
    if tokens.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    match tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        Some(&token) => Err(Error::TokenOutOfRange {
            token,
            vocab_size: cfg.vocab_size as u32,
        }),
        None => Ok(()),
    }
}

/// Split the first `n` elements off `buf`.
fn take<'s, T>(buf: &mut &'s mut [T], n: usize) -> Result<&'s mut [T], Error> {
    let all = core::mem::take(buf);
    let (head, tail) = all
        .split_at_mut_checked(n)
        .ok_or(Error::BufferTooSmall { needed: n })?;
    *buf = tail;
    Ok(head)
}

/// One decoding stream: the KV cache and every activation buffer, in caller memory. The
/// activations are `P = chunk` tokens deep.
#[derive(Debug)]
pub struct Session<'s, 'a> {
    model: &'s Model<'a>,
    /// Tokens a step takes at once.
    chunk: usize,
    /// (n_layer, 2, T, C) f16
    kv: KvCache<'s>,
    /// (P, C) residual stream
    x: &'s mut [f32],
    /// (P, C) LayerNorm output
    xn: &'s mut [f32],
    /// (P, 3C) q | k | v
    qkv: &'s mut [f32],
    /// (P, C) attention output, heads side by side
    y: &'s mut [f32],
    /// (P, C) projection output before the residual add
    tmp: &'s mut [f32],
    /// (P, 4C) MLP hidden
    hb: &'s mut [f32],
    /// (T) one head's attention weights
    scores: &'s mut [f32],
    /// (V)
    logits: &'s mut [f32],
    /// (V) sampler scratch
    probs: &'s mut [f32],
    /// (V) sampler scratch
    idx: &'s mut [u32],
    /// (T) the token at each cached position (kept by [`crate::Generator`])
    pub(crate) history: &'s mut [u32],
    /// (P, 4C) i8 + (P, 4C / 32) f32: the quantised matvecs' int8 activations
    act: ActScratch<'s>,
}

impl<'s, 'a> Session<'s, 'a> {
    /// The model.
    pub fn model(&self) -> &'s Model<'a> {
        self.model
    }

    /// Run `token` at position `pos` (writing its K/V at `pos`; positions `0..pos` must
    /// hold the earlier tokens) and return the logits `(V)` for the next token.
    pub fn forward(&mut self, token: u32, pos: usize) -> Result<&[f32], Error> {
        self.prefill(&[token], pos)
    }

    /// Run `tokens` at positions `pos..` (writing their K/V; positions `0..pos` must hold
    /// the earlier tokens) and return the logits `(V)` after the last. Each matrix takes
    /// the session's chunk of tokens at once, reading its weights once a chunk; the
    /// result has the bits of [`Session::forward`] token by token.
    pub fn prefill(&mut self, tokens: &[u32], pos: usize) -> Result<&[f32], Error> {
        let cfg = self.model.config;
        check_tokens(&cfg, tokens)?;
        let last = pos.saturating_add(tokens.len() - 1);
        if last >= cfg.block_size {
            return Err(Error::PositionOutOfRange {
                pos: last,
                block_size: cfg.block_size,
            });
        }
        for (k, part) in tokens.chunks(self.chunk).enumerate() {
            self.step(part, pos + k * self.chunk)?;
        }
        self.finish(tokens.len())
    }

    /// [`Session::prefill`] of `history[..n]` at position 0 (re-encoding a window);
    /// nothing for `n = 0`.
    pub(crate) fn prefill_history(&mut self, n: usize) -> Result<(), Error> {
        if n == 0 {
            return Ok(());
        }
        // The chunk is copied out: `step` borrows the whole session.
        let mut ids = [0u32; MAX_CHUNK];
        for p in (0..n).step_by(self.chunk) {
            let part = self.history.get(p..n.min(p + self.chunk)).unwrap_or(&[]);
            let ids = ids.get_mut(..part.len()).unwrap_or(&mut []);
            ids.copy_from_slice(part);
            self.step(ids, p)?;
        }
        self.finish(n).map(|_| ())
    }

    /// One chunk (`tokens.len() <= chunk`, in range) at positions `pos..`: the K/V of
    /// every layer and the final residual stream of each token.
    fn step(&mut self, tokens: &[u32], pos: usize) -> Result<(), Error> {
        let m = self.model;
        let cfg = &m.config;
        let (c, hs, n) = (cfg.n_embd, cfg.head_size(), tokens.len());
        let too_small = Error::BufferTooSmall { needed: n * 4 * c };
        let w = &m.weights;
        let eps = cfg.layer_norm_eps;
        let x = self.x.get_mut(..n * c).ok_or(too_small)?;
        let xn = self.xn.get_mut(..n * c).ok_or(too_small)?;
        let qkv = self.qkv.get_mut(..n * 3 * c).ok_or(too_small)?;
        let y = self.y.get_mut(..n * c).ok_or(too_small)?;
        let tmp = self.tmp.get_mut(..n * c).ok_or(too_small)?;
        let hb = self.hb.get_mut(..n * 4 * c).ok_or(too_small)?;
        // x (n, C) = wte[token] + wpe[pos]
        for (i, (&t, (x, e))) in tokens.iter().zip(rows(x, c).zip(rows(tmp, c))).enumerate() {
            w.wte.row(t as usize, x);
            w.wpe.row(pos + i, e);
            add(x, e);
        }
        for (l, layer) in w.layers.iter().enumerate() {
            rows(xn, c)
                .zip(rows(x, c))
                .for_each(|(o, x)| layer.ln_1.apply(o, x, eps));
            // qkv (n, 3C) = c_attn · xn + b
            layer.attn.apply(qkv, xn, c, &mut self.act)?;
            for (i, r) in rows(qkv, 3 * c).enumerate() {
                let kv = r.get(c..).unwrap_or(&[]);
                let (k, v) = kv.split_at(kv.len() / 2);
                self.kv.store(l, pos + i, k, v);
            }
            let (kc, vc) = self.kv.layer(l); // (T, C) each
            for (i, (y, r)) in rows(y, c).zip(rows(qkv, 3 * c)).enumerate() {
                let q = r.get(..c).unwrap_or(&[]);
                for ((yh, qh), off) in y
                    .chunks_exact_mut(hs)
                    .zip(q.chunks_exact(hs))
                    .zip((0..).step_by(hs))
                {
                    let (kh, vh) = (kc.get(off..).unwrap_or(&[]), vc.get(off..).unwrap_or(&[]));
                    folio_kernels::attention_f16(yh, qh, kh, vh, c, pos + i + 1, self.scores);
                }
            }
            layer.attn_proj.apply(tmp, y, c, &mut self.act)?;
            add(x, tmp);
            rows(xn, c)
                .zip(rows(x, c))
                .for_each(|(o, x)| layer.ln_2.apply(o, x, eps));
            // hb (n, 4C) = gelu(c_fc · xn + b)
            layer.fc.apply(hb, xn, c, &mut self.act)?;
            rows(hb, 4 * c).for_each(folio_kernels::gelu_tanh);
            layer.mlp_proj.apply(tmp, hb, 4 * c, &mut self.act)?;
            add(x, tmp);
        }
        Ok(())
    }

    /// The logits `(V)` of the last token of a run of `n` tokens (whose last chunk is
    /// still in `x`): `head · ln_f(x)`.
    fn finish(&mut self, n: usize) -> Result<&[f32], Error> {
        let (c, w) = (self.model.config.n_embd, &self.model.weights);
        let i = n.saturating_sub(1) % self.chunk;
        let x = self.x.get(i * c..(i + 1) * c).ok_or(Error::EmptyPrompt)?;
        let xn = self.xn.get_mut(..c).ok_or(Error::EmptyPrompt)?;
        w.ln_f.apply(xn, x, self.model.config.layer_norm_eps);
        w.head().matvec(self.logits, xn, &mut self.act)?;
        Ok(self.logits)
    }

    /// The logits `(V)` of the last `forward`.
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Sample the next token from the last logits, with the session's own scratch.
    pub fn sample(&mut self, sampler: &mut Sampler) -> Result<u32, Error> {
        sampler.sample(self.logits, self.probs, self.idx)
    }
}

/// `buf` as rows of `width` (`width` 0: none).
fn rows(buf: &mut [f32], width: usize) -> core::slice::ChunksExactMut<'_, f32> {
    buf.chunks_exact_mut(width.max(1))
}

/// `x += y`.
fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_small() {
        let size = core::mem::size_of::<super::Model<'static>>();
        // 64-bit host; the 32-bit layout is about half (pointer-sized slices).
        assert!(size < 8 * 1024, "size_of::<Model>() = {size}");
    }
}
