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
use crate::config::{Config, SessionLayout, ALIGN_SLACK};
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
        let layout = config.layout()?;
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

    /// Start a session in caller memory (at least [`Model::session_bytes`] bytes, any
    /// alignment). The KV cache is zeroed.
    pub fn session<'s>(&'s self, mem: &'s mut [u8]) -> Result<Session<'s, 'a>, Error> {
        let (l, got) = (self.layout, mem.len());
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
        Ok(Session {
            model: self,
            x: take(&mut f, c)?,
            xn: take(&mut f, c)?,
            qkv: take(&mut f, 3 * c)?,
            y: take(&mut f, c)?,
            tmp: take(&mut f, c)?,
            hb: take(&mut f, 4 * c)?,
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

/// Split the first `n` elements off `buf`.
fn take<'s, T>(buf: &mut &'s mut [T], n: usize) -> Result<&'s mut [T], Error> {
    let all = core::mem::take(buf);
    let (head, tail) = all
        .split_at_mut_checked(n)
        .ok_or(Error::BufferTooSmall { needed: n })?;
    *buf = tail;
    Ok(head)
}

/// One decoding stream: the KV cache and every activation buffer, in caller memory.
#[derive(Debug)]
pub struct Session<'s, 'a> {
    model: &'s Model<'a>,
    /// (n_layer, 2, T, C) f16
    kv: KvCache<'s>,
    /// (C) residual stream
    x: &'s mut [f32],
    /// (C) LayerNorm output
    xn: &'s mut [f32],
    /// (3C) q | k | v
    qkv: &'s mut [f32],
    /// (C) attention output, heads side by side
    y: &'s mut [f32],
    /// (C) projection output before the residual add
    tmp: &'s mut [f32],
    /// (4C) MLP hidden
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
    /// (4C) i8 + (4C / 32) f32: the quantised matvecs' int8 activations
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
        let m = self.model;
        let cfg = &m.config;
        let (c, hs) = (cfg.n_embd, cfg.head_size());
        if token as usize >= cfg.vocab_size {
            return Err(Error::TokenOutOfRange {
                token,
                vocab_size: cfg.vocab_size as u32,
            });
        }
        if pos >= cfg.block_size {
            return Err(Error::PositionOutOfRange {
                pos,
                block_size: cfg.block_size,
            });
        }
        let w = &m.weights;
        let eps = cfg.layer_norm_eps;
        // x (C) = wte[token] + wpe[pos]
        w.wte.row(token as usize, self.x);
        w.wpe.row(pos, self.tmp);
        add(self.x, self.tmp);
        for (l, layer) in w.layers.iter().enumerate() {
            layer.ln_1.apply(self.xn, self.x, eps);
            // qkv (3C) = c_attn · xn + b
            layer.attn.apply(self.qkv, self.xn, &mut self.act)?;
            let (Some(q), Some(k), Some(v)) = (
                self.qkv.get(..c),
                self.qkv.get(c..2 * c),
                self.qkv.get(2 * c..3 * c),
            ) else {
                return Err(Error::BufferTooSmall { needed: 3 * c });
            };
            self.kv.store(l, pos, k, v);
            let (kc, vc) = self.kv.layer(l); // (T, C) each
            for ((yh, qh), h) in self.y.chunks_exact_mut(hs).zip(q.chunks_exact(hs)).zip(0..) {
                let off = h * hs;
                let (kh, vh) = (kc.get(off..).unwrap_or(&[]), vc.get(off..).unwrap_or(&[]));
                folio_kernels::attention_f16(yh, qh, kh, vh, c, pos + 1, self.scores);
            }
            layer.attn_proj.apply(self.tmp, self.y, &mut self.act)?;
            add(self.x, self.tmp);
            layer.ln_2.apply(self.xn, self.x, eps);
            // hb (4C) = gelu(c_fc · xn + b)
            layer.fc.apply(self.hb, self.xn, &mut self.act)?;
            folio_kernels::gelu_tanh(self.hb);
            layer.mlp_proj.apply(self.tmp, self.hb, &mut self.act)?;
            add(self.x, self.tmp);
        }
        w.ln_f.apply(self.xn, self.x, eps);
        w.head().matvec(self.logits, self.xn, &mut self.act)?;
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
