//! Stage 5: the model (validated views into the file) and a session (`forward`).
//!
//! [`Model::from_bytes`] reads the header twice with the streaming reader of
//! [`crate::format`]: pass 1 checks the JSON, every tensor's offsets (in range, length =
//! shape × dtype size, no overlaps: an `O(n²)` check over a fixed table of
//! [`MAX_TENSORS`] ranges) and finds `__metadata__`; then the config and vocabulary are
//! parsed; pass 2 checks each used tensor's dtype, shape and alignment and keeps a typed
//! view of it. Nothing is copied and nothing is allocated.
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
use crate::config::{self, Config, SessionLayout, ALIGN_SLACK};
use crate::error::{Error, MetaKey, TensorId, TensorKind};
use crate::format::{self, Entry, TensorInfo};
use crate::kv_cache::KvCache;
use crate::sampler::Sampler;
use crate::tokenizer::Tokenizer;
use crate::weights::{ActScratch, Encoding, Loader, Weights};
use crate::MAX_TENSORS;
use folio_kernels::f16;

/// A loaded model: validated config, vocabulary and zero-copy weight views of `'a` bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    header: &'a str,
    config: Config,
    tokenizer: Tokenizer,
    weights: Weights<'a>,
    layout: SessionLayout,
    n_tensors: usize,
}

const OTHER: TensorId = TensorId {
    kind: TensorKind::Other,
    layer: 0,
    scale: false,
};

impl<'a> Model<'a> {
    /// Validate a folio safetensors file held in `bytes` (which must start 4-byte aligned)
    /// and view its weights in place. Every malformed input is an [`Error`], never a panic.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let (header, data, _) = format::split(bytes)?;
        if bytes.as_ptr().align_offset(core::mem::align_of::<f32>()) != 0 {
            return Err(Error::BufferMisaligned);
        }

        // Pass 1: JSON, offsets, metadata.
        let mut ranges: heapless::Vec<(usize, usize, TensorId), MAX_TENSORS> = heapless::Vec::new();
        let mut meta = None;
        for entry in format::entries(header) {
            match entry? {
                Entry::Metadata(m) => {
                    if meta.is_some() {
                        let offset = (m.as_ptr() as usize).saturating_sub(header.as_ptr() as usize);
                        return Err(Error::DuplicateName { offset });
                    }
                    meta = Some(m);
                }
                Entry::Tensor(t) => {
                    let tensor = t.id().unwrap_or(OTHER);
                    let range = usize::try_from(t.begin)
                        .ok()
                        .zip(usize::try_from(t.end).ok());
                    let Some((b, e)) = range.filter(|&(b, e)| b <= e && e <= data.len()) else {
                        return Err(Error::OffsetsOutOfRange { tensor });
                    };
                    let want = t.numel.and_then(|n| n.checked_mul(t.dtype.size() as u64));
                    if want != Some(t.end - t.begin) {
                        return Err(Error::OffsetsLength { tensor });
                    }
                    ranges
                        .push((b, e, tensor))
                        .map_err(|_| Error::TooManyTensors {
                            max: MAX_TENSORS as u32,
                        })?;
                }
            }
        }
        for (i, &(b0, e0, a)) in ranges.iter().enumerate() {
            for &(b1, e1, b) in ranges.iter().skip(i + 1) {
                if b0 < e1 && b1 < e0 {
                    return Err(Error::OffsetsOverlap { a, b });
                }
            }
        }
        let n_tensors = ranges.len();

        // Metadata: format, config, vocabulary.
        let meta = meta.ok_or(Error::MissingMetadata {
            key: MetaKey::Format,
        })?;
        let get = |key: MetaKey| {
            format::metadata_in(meta, key.as_str()).ok_or(Error::MissingMetadata { key })
        };
        config::check_format(get(MetaKey::Format)?)?;
        let config = config::parse(get(MetaKey::Config)?)?;
        let tokenizer = Tokenizer::parse(get(MetaKey::Vocab)?, config.vocab_size)?;
        let layout = config.layout().ok_or(Error::ConfigTooLarge {
            field: crate::error::ConfigField::NEmbd,
            max: u32::MAX,
        })?;

        // Pass 2: typed views of the tensors folio reads.
        let mut loader = Loader::new(config, data);
        for entry in format::entries(header) {
            if let Entry::Tensor(t) = entry? {
                if let Some(id) = t.id().filter(|&id| loader.wants(id)) {
                    loader.add(&t, id)?;
                }
            }
        }
        let weights = loader.finish()?;
        Ok(Model {
            header,
            config,
            tokenizer,
            weights,
            layout,
            n_tensors,
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

    /// The raw (still JSON-escaped) string value of a `__metadata__` key, without the
    /// quotes; decode it with [`crate::format::unescape`].
    pub fn metadata(&self, key: &str) -> Option<&'a str> {
        let meta = format::entries(self.header).find_map(|e| match e {
            Ok(Entry::Metadata(m)) => Some(m),
            _ => None,
        })?;
        format::metadata_in(meta, key)
    }

    /// Every tensor of the header, in file order (used and ignored ones).
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo<'a>> + 'a {
        format::entries(self.header).filter_map(|e| match e {
            Ok(Entry::Tensor(t)) => Some(t),
            _ => None,
        })
    }

    /// Number of tensors in the header.
    pub fn tensor_count(&self) -> usize {
        self.n_tensors
    }

    /// Each 2-D weight the forward pass reads, with its encoding.
    pub fn encodings(&self) -> impl Iterator<Item = (TensorId, Encoding)> + '_ {
        self.weights.matrices().map(|(id, m)| (id, m.encoding()))
    }

    /// Bytes of weights the forward pass reads.
    pub fn weight_bytes(&self) -> usize {
        self.weights.bytes()
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
        let l = self.layout;
        let got = mem.len();
        if got < l.bytes {
            return Err(Error::SessionTooSmall {
                needed: l.bytes,
                got,
            });
        }
        let off = mem.as_ptr().align_offset(core::mem::align_of::<f32>());
        if off > ALIGN_SLACK {
            return Err(Error::BufferMisaligned);
        }
        let too_small = Error::SessionTooSmall {
            needed: l.bytes,
            got,
        };
        let mem = mem.get_mut(off..).ok_or(too_small)?;
        let (fb, rest) = mem.split_at_mut_checked(l.n_f32 * 4).ok_or(too_small)?;
        let (ub, rest) = rest.split_at_mut_checked(l.n_u32 * 4).ok_or(too_small)?;
        let (hb, rest) = rest.split_at_mut_checked(l.n_f16 * 2).ok_or(too_small)?;
        let ib = rest.get_mut(..l.n_i8).ok_or(too_small)?;
        let mut f: &mut [f32] =
            bytemuck::try_cast_slice_mut(fb).map_err(|_| Error::BufferMisaligned)?;
        let mut u: &mut [u32] =
            bytemuck::try_cast_slice_mut(ub).map_err(|_| Error::BufferMisaligned)?;
        let kv: &mut [f16] =
            bytemuck::try_cast_slice_mut(hb).map_err(|_| Error::BufferMisaligned)?;
        kv.fill(f16::ZERO);
        let xq: &mut [i8] =
            bytemuck::try_cast_slice_mut(ib).map_err(|_| Error::BufferMisaligned)?;
        let (c, t, v) = (
            self.config.n_embd,
            self.config.block_size,
            self.config.vocab_size,
        );
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
            layer.attn.matvec(self.qkv, self.xn, &mut self.act)?;
            layer.attn_bias.add_to(self.qkv);
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
            layer.attn_proj.matvec(self.tmp, self.y, &mut self.act)?;
            layer.attn_proj_bias.add_to(self.tmp);
            add(self.x, self.tmp);
            layer.ln_2.apply(self.xn, self.x, eps);
            // hb (4C) = gelu(c_fc · xn + b)
            layer.fc.matvec(self.hb, self.xn, &mut self.act)?;
            layer.fc_bias.add_to(self.hb);
            folio_kernels::gelu_tanh(self.hb);
            layer.mlp_proj.matvec(self.tmp, self.hb, &mut self.act)?;
            layer.mlp_proj_bias.add_to(self.tmp);
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

    /// Bytes of the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }
}

/// `x += y`.
fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build, Aligned, SMALL};
    use crate::weights::Encoding;
    use std::vec;
    use std::vec::Vec;

    fn logits_all(model: &Model<'_>, tokens: &[u32]) -> Vec<Vec<f32>> {
        let mut mem = vec![0u8; model.session_bytes()];
        let mut s = model.session(&mut mem).unwrap();
        tokens
            .iter()
            .enumerate()
            .map(|(p, &t)| s.forward(t, p).unwrap().to_vec())
            .collect()
    }

    #[test]
    fn model_is_small() {
        let size = core::mem::size_of::<Model<'static>>();
        // 64-bit host; the 32-bit layout is about half (pointer-sized slices).
        assert!(size < 8 * 1024, "size_of::<Model>() = {size}");
    }

    #[test]
    fn loads_every_encoding_and_runs() {
        for enc in [Encoding::F32, Encoding::F16, Encoding::Q8_0, Encoding::Q4_0] {
            for tied in [true, false] {
                let file = Aligned::new(&build(&crate::testutil::Spec { enc, tied, ..SMALL }));
                let model = Model::from_bytes(file.bytes()).unwrap();
                assert_eq!(model.config().vocab_size, 29);
                assert_eq!(model.tokenizer().len(), 29);
                assert!(model.encodings().all(|(_, e)| e == enc));
                assert_eq!(model.encodings().count(), 2 + 4 * 2 + usize::from(!tied));
                let ls = logits_all(&model, &[1, 5, 9, 2]);
                assert!(ls.iter().flatten().all(|v| v.is_finite()));
                assert_ne!(ls[0], ls[1]);
            }
        }
    }

    #[test]
    fn encodings_agree_with_f32() {
        let reference = Aligned::new(&build(&SMALL));
        let reference = logits_all(
            &Model::from_bytes(reference.bytes()).unwrap(),
            &[3, 1, 4, 1, 5, 9, 2, 6],
        );
        for (enc, tol) in [
            (Encoding::F16, 0.01),
            (Encoding::Q8_0, 0.05),
            (Encoding::Q4_0, 0.5),
        ] {
            let file = Aligned::new(&build(&crate::testutil::Spec { enc, ..SMALL }));
            let got = logits_all(
                &Model::from_bytes(file.bytes()).unwrap(),
                &[3, 1, 4, 1, 5, 9, 2, 6],
            );
            let scale = reference.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .flatten()
                .zip(reference.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err <= tol * scale, "{enc:?}: {err} vs scale {scale}");
        }
    }

    #[test]
    fn session_bytes_is_exact_at_any_alignment() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let need = model.session_bytes();
        let mut mem = vec![0u8; need + 8];
        for skew in 0..4 {
            assert!(
                model.session(&mut mem[skew..skew + need]).is_ok(),
                "skew {skew}"
            );
            let e = model.session(&mut mem[skew..skew + need - 1]).unwrap_err();
            assert_eq!(
                e,
                Error::SessionTooSmall {
                    needed: need,
                    got: need - 1
                }
            );
        }
        // The documented layout: 3 + 4 (11C + T + 2V + 4C / 32) + 4 (V + T)
        // + 2 (L * 2 * T * C) + 4C.
        let (c, t, v, l) = (32, 8, 29, 2);
        assert_eq!(
            need,
            3 + 4 * (11 * c + t + 2 * v + 4 * c / 32) + 4 * (v + t) + 2 * (l * 2 * t * c) + 4 * c
        );
        assert_eq!(model.kv_bytes(), 2 * (l * 2 * t * c));
    }

    #[test]
    fn forward_checks_token_and_position() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        let mut mem = vec![0u8; model.session_bytes()];
        let mut s = model.session(&mut mem).unwrap();
        assert_eq!(
            s.forward(29, 0).unwrap_err(),
            Error::TokenOutOfRange {
                token: 29,
                vocab_size: 29
            }
        );
        assert_eq!(
            s.forward(0, 8).unwrap_err(),
            Error::PositionOutOfRange {
                pos: 8,
                block_size: 8
            }
        );
        assert_eq!(s.forward(0, 7).map(|l| l.len()), Ok(29));
    }

    #[test]
    fn misaligned_bytes_are_an_error_not_a_copy() {
        let f = build(&SMALL);
        let mut words = vec![0u64; f.len() / 8 + 2];
        let all: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        all[1..1 + f.len()].copy_from_slice(&f);
        assert_eq!(
            Model::from_bytes(&all[1..1 + f.len()]).unwrap_err(),
            Error::BufferMisaligned
        );
    }

    #[test]
    fn no_input_panics() {
        // Every truncation, and single-byte corruptions across the header.
        let f = build(&crate::testutil::Spec { layer: 1, ..SMALL });
        let header_end = 8 + u64::from_le_bytes(f[..8].try_into().unwrap()) as usize;
        for n in (0..header_end + 64).chain([f.len() - 1]) {
            let a = Aligned::new(&f[..n]);
            assert!(Model::from_bytes(a.bytes()).is_err(), "prefix {n}");
        }
        let mut g = f.clone();
        for i in (0..header_end).step_by(3) {
            for b in [b'"', b'\\', b'{', b'9', 0xff, b' '] {
                let old = g[i];
                g[i] = b;
                let a = Aligned::new(&g);
                let _ = Model::from_bytes(a.bytes());
                g[i] = old;
            }
        }
    }

    #[test]
    fn metadata_and_tensor_table() {
        let file = Aligned::new(&build(&SMALL));
        let model = Model::from_bytes(file.bytes()).unwrap();
        assert_eq!(model.metadata("folio.format"), Some("1"));
        assert_eq!(model.metadata("folio.train"), None);
        let vocab: std::string::String =
            crate::format::unescape(model.metadata("folio.vocab").unwrap()).collect();
        assert!(vocab.starts_with("[\"\\n\", \" \""), "{vocab}");
        assert_eq!(model.tensors().count(), model.tensor_count());
        assert_eq!(model.tensor_count(), 2 + 12 * 2 + 2);
        let total: u64 = model.tensors().map(|t| t.bytes()).sum();
        assert_eq!(total as usize, model.weight_bytes());
    }
}
