//! Stage 3: tensor entries → typed zero-copy views of the weights.
//!
//! Every view is a `bytemuck::try_cast_slice` of the file bytes: a tensor whose offset is
//! not a multiple of its element size is [`Error::Misaligned`], a buffer whose address
//! breaks the alignment is [`Error::BufferMisaligned`]; nothing is ever copied.
//! [`Matrix`] is one 2-D weight in any of the four encodings and dispatches `matvec` and
//! `row` to `folio_kernels`.
use crate::config::Config;
use crate::error::{Dtype, Error, TensorId, TensorKind};
use crate::format::TensorInfo;
use crate::MAX_LAYERS;
use folio_kernels::{f16, QK};

/// How one 2-D weight is stored.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// F32 `[rows, cols]`.
    F32,
    /// F16 `[rows, cols]`.
    F16,
    /// I8 `[rows, cols]` + F16 scales `[rows, cols/32]`.
    Q8_0,
    /// U8 `[rows, cols/2]` (two nibbles a byte) + F16 scales `[rows, cols/32]`.
    Q4_0,
}

impl Encoding {
    /// Lower-case name as in `folio.dtype`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }
}

/// A 2-D weight `[rows, cols]`, row-major, viewed in place.
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'a> {
    /// (rows, cols) f32.
    F32(&'a [f32]),
    /// (rows, cols) f16.
    F16(&'a [f16]),
    /// q8_0: `q` (rows, cols) i8, `scales` (rows, cols / 32) f16.
    Q8_0 {
        /// Codes.
        q: &'a [i8],
        /// One scale per 32 columns of a row.
        scales: &'a [f16],
    },
    /// q4_0: `q` (rows, cols / 2) u8, `scales` (rows, cols / 32) f16.
    Q4_0 {
        /// Codes: in each group's 16 bytes, byte `j` holds column `j` (low nibble) and
        /// `j + 16` (high nibble).
        q: &'a [u8],
        /// One scale per 32 columns of a row.
        scales: &'a [f16],
    },
}

impl Matrix<'_> {
    /// The storage encoding.
    pub fn encoding(&self) -> Encoding {
        match self {
            Self::F32(_) => Encoding::F32,
            Self::F16(_) => Encoding::F16,
            Self::Q8_0 { .. } => Encoding::Q8_0,
            Self::Q4_0 { .. } => Encoding::Q4_0,
        }
    }

    /// Bytes of file data this matrix reads (scales included).
    pub fn bytes(&self) -> usize {
        match self {
            Self::F32(w) => core::mem::size_of_val(*w),
            Self::F16(w) => core::mem::size_of_val(*w),
            Self::Q8_0 { q, scales } => q.len() + core::mem::size_of_val(*scales),
            Self::Q4_0 { q, scales } => q.len() + core::mem::size_of_val(*scales),
        }
    }

    /// `out (rows) = self (rows, cols) · x (cols)`. The quantised encodings first quantise
    /// `x` to int8 groups in `act` (`folio_kernels::quantize_act`); an `act` shorter than
    /// `x` is [`Error::BufferTooSmall`].
    pub fn matvec(
        &self,
        out: &mut [f32],
        x: &[f32],
        act: &mut ActScratch<'_>,
    ) -> Result<(), Error> {
        match *self {
            Self::F32(w) => folio_kernels::matvec_f32(out, w, x),
            Self::F16(w) => folio_kernels::matvec_f16(out, w, x),
            Self::Q8_0 { q, scales } => {
                let (xq, xs) = act.quantize(x)?;
                folio_kernels::matvec_q8(out, q, scales, xq, xs)
            }
            Self::Q4_0 { q, scales } => {
                let (xq, xs) = act.quantize(x)?;
                folio_kernels::matvec_q4(out, q, scales, xq, xs)
            }
        }
        Ok(())
    }

    /// `out (cols) = self[r, ..]` widened/dequantised to f32 (out of range: zeros).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let cols = out.len();
        let span = |per_row: usize| {
            r.checked_mul(per_row)
                .and_then(|a| Some(a..a.checked_add(per_row)?))
        };
        let groups = cols / QK;
        let done = match *self {
            Self::F32(w) => span(cols)
                .and_then(|s| w.get(s))
                .map(|w| out.copy_from_slice(w)),
            Self::F16(w) => span(cols)
                .and_then(|s| w.get(s))
                .map(|w| folio_kernels::f16_to_f32(out, w)),
            Self::Q8_0 { q, scales } => span(cols)
                .and_then(|s| q.get(s))
                .zip(span(groups).and_then(|s| scales.get(s)))
                .map(|(q, s)| folio_kernels::quant::dequantize_row_q8(out, q, s)),
            Self::Q4_0 { q, scales } => span(cols / 2)
                .and_then(|s| q.get(s))
                .zip(span(groups).and_then(|s| scales.get(s)))
                .map(|(q, s)| folio_kernels::quant::dequantize_row_q4(out, q, s)),
        };
        if done.is_none() {
            out.fill(0.0);
        }
    }
}

/// Caller memory for the int8 activations of the q8_0 and q4_0 matvecs.
#[derive(Debug)]
pub struct ActScratch<'s> {
    /// (cols) codes, at least the widest matrix's columns.
    pub xq: &'s mut [i8],
    /// (cols / 32) group scales.
    pub xs: &'s mut [f32],
}

impl ActScratch<'_> {
    /// `x` quantised into the first `x.len()` codes and `x.len() / 32` scales.
    fn quantize(&mut self, x: &[f32]) -> Result<(&[i8], &[f32]), Error> {
        let cols = x.len();
        let xq = self
            .xq
            .get_mut(..cols)
            .ok_or(Error::BufferTooSmall { needed: cols })?;
        let xs = self
            .xs
            .get_mut(..cols / QK)
            .ok_or(Error::BufferTooSmall { needed: cols / QK })?;
        folio_kernels::quantize_act(xq, xs, x);
        Ok((xq, xs))
    }
}

/// A 1-D parameter, F32 or F16.
#[derive(Debug, Clone, Copy)]
pub enum Vector<'a> {
    /// f32.
    F32(&'a [f32]),
    /// f16.
    F16(&'a [f16]),
}

impl Vector<'_> {
    /// Bytes of file data.
    pub fn bytes(&self) -> usize {
        match self {
            Self::F32(v) => core::mem::size_of_val(*v),
            Self::F16(v) => core::mem::size_of_val(*v),
        }
    }

    /// `out[i] += self[i]` (a bias). F16 values are widened 32 at a time by the kernels'
    /// conversion (exact, vectorised) rather than one by one.
    pub fn add_to(&self, out: &mut [f32]) {
        match *self {
            Self::F32(b) => out.iter_mut().zip(b).for_each(|(o, b)| *o += b),
            Self::F16(b) => {
                let mut wide = [0.0f32; 32];
                for (o, b) in out.chunks_mut(32).zip(b.chunks(32)) {
                    let w = wide.get_mut(..b.len()).unwrap_or(&mut []);
                    folio_kernels::f16_to_f32(w, b);
                    o.iter_mut().zip(w.iter()).for_each(|(o, w)| *o += w);
                }
            }
        }
    }

    fn get(&self, i: usize) -> f32 {
        match *self {
            Self::F32(v) => v.get(i).copied().unwrap_or(0.0),
            Self::F16(v) => v.get(i).map_or(0.0, |h| h.to_f32()),
        }
    }
}

/// LayerNorm affine parameters `(C)`.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm<'a> {
    /// Gain.
    pub weight: Vector<'a>,
    /// Bias.
    pub bias: Vector<'a>,
}

impl LayerNorm<'_> {
    /// `out (C) = LayerNorm(x (C))` with biased variance.
    pub fn apply(&self, out: &mut [f32], x: &[f32], eps: f32) {
        match (self.weight, self.bias) {
            (Vector::F32(w), Vector::F32(b)) => folio_kernels::layernorm_f32(out, x, w, b, eps),
            (Vector::F16(w), Vector::F16(b)) => folio_kernels::layernorm_f16(out, x, w, b, eps),
            // Mixed encodings (legal, if unusual): a plain loop.
            (w, b) => {
                let n = x.len().max(1) as f32;
                let mean = x.iter().sum::<f32>() / n;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
                let rstd = 1.0 / libm::sqrtf(var + eps);
                for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                    *o = (v - mean) * rstd * w.get(i) + b.get(i);
                }
            }
        }
    }
}

/// One transformer block.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// `ln_1`.
    pub ln_1: LayerNorm<'a>,
    /// `attn.c_attn.weight` (3C, C).
    pub attn: Matrix<'a>,
    /// `attn.c_attn.bias` (3C).
    pub attn_bias: Vector<'a>,
    /// `attn.c_proj.weight` (C, C).
    pub attn_proj: Matrix<'a>,
    /// `attn.c_proj.bias` (C).
    pub attn_proj_bias: Vector<'a>,
    /// `ln_2`.
    pub ln_2: LayerNorm<'a>,
    /// `mlp.c_fc.weight` (4C, C).
    pub fc: Matrix<'a>,
    /// `mlp.c_fc.bias` (4C).
    pub fc_bias: Vector<'a>,
    /// `mlp.c_proj.weight` (C, 4C).
    pub mlp_proj: Matrix<'a>,
    /// `mlp.c_proj.bias` (C).
    pub mlp_proj_bias: Vector<'a>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct Weights<'a> {
    /// `wte.weight` (V, C).
    pub wte: Matrix<'a>,
    /// `wpe.weight` (T, C).
    pub wpe: Matrix<'a>,
    /// Blocks, `n_layer` of them.
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    /// `ln_f`.
    pub ln_f: LayerNorm<'a>,
    /// `lm_head.weight` (V, C) when untied.
    pub lm_head: Option<Matrix<'a>>,
}

impl<'a> Weights<'a> {
    /// The output head (V, C): `lm_head`, or `wte` when tied.
    pub fn head(&self) -> &Matrix<'a> {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// Every 2-D weight with its id, in file-name order of a layer.
    pub fn matrices(&self) -> impl Iterator<Item = (TensorId, &Matrix<'a>)> + '_ {
        let id = |kind, layer: usize| TensorId {
            kind,
            layer: layer as u8,
            scale: false,
        };
        let globals = [
            (id(TensorKind::Wte, 0), &self.wte),
            (id(TensorKind::Wpe, 0), &self.wpe),
        ];
        let head = self
            .lm_head
            .as_ref()
            .map(|m| (id(TensorKind::LmHead, 0), m));
        globals
            .into_iter()
            .chain(self.layers.iter().enumerate().flat_map(move |(i, l)| {
                [
                    (id(TensorKind::AttnWeight, i), &l.attn),
                    (id(TensorKind::AttnProjWeight, i), &l.attn_proj),
                    (id(TensorKind::FcWeight, i), &l.fc),
                    (id(TensorKind::MlpProjWeight, i), &l.mlp_proj),
                ]
            }))
            .chain(head)
    }

    /// Bytes of file data read by the forward pass.
    pub fn bytes(&self) -> usize {
        let ln = |l: &LayerNorm<'_>| l.weight.bytes() + l.bias.bytes();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                ln(&l.ln_1)
                    + ln(&l.ln_2)
                    + l.attn_bias.bytes()
                    + l.attn_proj_bias.bytes()
                    + l.fc_bias.bytes()
                    + l.mlp_proj_bias.bytes()
            })
            .sum();
        self.matrices().map(|(_, m)| m.bytes()).sum::<usize>() + layers + ln(&self.ln_f)
    }
}

// ---------------------------------------------------------------------------------------
// Names

const LAYER_KINDS: [TensorKind; 12] = [
    TensorKind::Ln1Weight,
    TensorKind::Ln1Bias,
    TensorKind::AttnWeight,
    TensorKind::AttnBias,
    TensorKind::AttnProjWeight,
    TensorKind::AttnProjBias,
    TensorKind::Ln2Weight,
    TensorKind::Ln2Bias,
    TensorKind::FcWeight,
    TensorKind::FcBias,
    TensorKind::MlpProjWeight,
    TensorKind::MlpProjBias,
];
const GLOBAL_KINDS: [TensorKind; 5] = [
    TensorKind::Wte,
    TensorKind::Wpe,
    TensorKind::LnFWeight,
    TensorKind::LnFBias,
    TensorKind::LmHead,
];

/// The role of a tensor name, `None` if folio does not use it. `NAME_scale` maps to
/// `NAME`'s id with `scale: true` (only for 2-D weights). Layer indices are decimal
/// without leading zeros, below 256.
pub fn tensor_id(name: &str) -> Option<TensorId> {
    let (base, scale) = match name.strip_suffix("_scale") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let id = if let Some(rest) = base.strip_prefix("h.") {
        let (num, suffix) = rest.split_once('.')?;
        if num.is_empty()
            || (num.len() > 1 && num.starts_with('0'))
            || !num.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let layer: u8 = num.parse().ok()?;
        let kind = LAYER_KINDS.into_iter().find(|k| k.suffix() == suffix)?;
        TensorId { kind, layer, scale }
    } else {
        let kind = GLOBAL_KINDS.into_iter().find(|k| k.suffix() == base)?;
        TensorId {
            kind,
            layer: 0,
            scale,
        }
    };
    (!scale || id.kind.is_matrix()).then_some(id)
}

// ---------------------------------------------------------------------------------------
// Loading

/// A 2-D weight's main tensor as found, before pairing with its scales.
#[derive(Clone, Copy)]
enum Main<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    I8(&'a [i8]),
    U8(&'a [u8]),
}

#[derive(Clone, Copy)]
struct MatSlot<'a> {
    main: Option<Main<'a>>,
    scale: Option<&'a [f16]>,
}

const EMPTY_MAT: MatSlot<'static> = MatSlot {
    main: None,
    scale: None,
};

/// Slots indexed by [`slot_index`]: 4 matrices and 8 vectors per layer, then the globals.
pub(crate) struct Loader<'a> {
    cfg: Config,
    data: &'a [u8],
    mats: [MatSlot<'a>; MAX_LAYERS * 4 + 3],
    vecs: [Option<Vector<'a>>; MAX_LAYERS * 8 + 2],
}

/// `(is_matrix, index)` of an id's slot.
fn slot_index(id: TensorId) -> (bool, usize) {
    let l = id.layer as usize;
    match id.kind {
        TensorKind::AttnWeight => (true, l * 4),
        TensorKind::AttnProjWeight => (true, l * 4 + 1),
        TensorKind::FcWeight => (true, l * 4 + 2),
        TensorKind::MlpProjWeight => (true, l * 4 + 3),
        TensorKind::Wte => (true, MAX_LAYERS * 4),
        TensorKind::Wpe => (true, MAX_LAYERS * 4 + 1),
        TensorKind::LmHead => (true, MAX_LAYERS * 4 + 2),
        TensorKind::Ln1Weight => (false, l * 8),
        TensorKind::Ln1Bias => (false, l * 8 + 1),
        TensorKind::AttnBias => (false, l * 8 + 2),
        TensorKind::AttnProjBias => (false, l * 8 + 3),
        TensorKind::Ln2Weight => (false, l * 8 + 4),
        TensorKind::Ln2Bias => (false, l * 8 + 5),
        TensorKind::FcBias => (false, l * 8 + 6),
        TensorKind::MlpProjBias => (false, l * 8 + 7),
        TensorKind::LnFWeight => (false, MAX_LAYERS * 8),
        TensorKind::LnFBias => (false, MAX_LAYERS * 8 + 1),
        TensorKind::Other => (false, usize::MAX),
    }
}

/// Expected `(rows, cols)` of a matrix, or `(len, 0)` for a vector.
fn expected_shape(cfg: &Config, kind: TensorKind) -> (u64, u64) {
    let (v, t, c) = (
        cfg.vocab_size as u64,
        cfg.block_size as u64,
        cfg.n_embd as u64,
    );
    match kind {
        TensorKind::Wte | TensorKind::LmHead => (v, c),
        TensorKind::Wpe => (t, c),
        TensorKind::AttnWeight => (3 * c, c),
        TensorKind::AttnProjWeight => (c, c),
        TensorKind::FcWeight => (4 * c, c),
        TensorKind::MlpProjWeight => (c, 4 * c),
        TensorKind::AttnBias => (3 * c, 0),
        TensorKind::FcBias => (4 * c, 0),
        _ => (c, 0),
    }
}

impl<'a> Loader<'a> {
    pub(crate) fn new(cfg: Config, data: &'a [u8]) -> Self {
        Loader {
            cfg,
            data,
            mats: [EMPTY_MAT; MAX_LAYERS * 4 + 3],
            vecs: [None; MAX_LAYERS * 8 + 2],
        }
    }

    /// True if folio reads this tensor under this config (others are ignored).
    pub(crate) fn wants(&self, id: TensorId) -> bool {
        id.kind != TensorKind::Other
            && (!id.kind.per_layer() || (id.layer as usize) < self.cfg.n_layer)
            && (id.kind != TensorKind::LmHead || !self.cfg.tied_embeddings)
    }

    fn view<T: bytemuck::Pod>(&self, t: &TensorInfo<'_>, id: TensorId) -> Result<&'a [T], Error> {
        let size = core::mem::size_of::<T>() as u64;
        if t.begin.checked_rem(size) != Some(0) {
            return Err(Error::Misaligned { tensor: id });
        }
        let range = usize::try_from(t.begin)
            .ok()
            .zip(usize::try_from(t.end).ok());
        let bytes = range
            .and_then(|(b, e)| self.data.get(b..e))
            .ok_or(Error::OffsetsOutOfRange { tensor: id })?;
        bytemuck::try_cast_slice(bytes).map_err(|_| Error::BufferMisaligned)
    }

    /// Validate one used tensor (dtype, shape, alignment) and store its view.
    pub(crate) fn add(&mut self, t: &TensorInfo<'_>, id: TensorId) -> Result<(), Error> {
        let (rows, cols) = expected_shape(&self.cfg, id.kind);
        let dup = Error::DuplicateName { offset: t.offset };
        let wrong_shape = Error::WrongShape { tensor: id };
        let unexpected = Error::UnexpectedDtype {
            tensor: id,
            dtype: t.dtype,
        };
        let (is_mat, idx) = slot_index(id);
        if !is_mat {
            if t.shape() != [rows] {
                return Err(wrong_shape);
            }
            let v = match t.dtype {
                Dtype::F32 => Vector::F32(self.view(t, id)?),
                Dtype::F16 => Vector::F16(self.view(t, id)?),
                _ => return Err(unexpected),
            };
            let slot = self.vecs.get_mut(idx).ok_or(wrong_shape)?;
            if slot.is_some() {
                return Err(dup);
            }
            *slot = Some(v);
            return Ok(());
        }
        let quant_cols = Error::QuantCols {
            tensor: TensorId { scale: false, ..id },
            cols: cols as u32,
        };
        if id.scale {
            if t.dtype != Dtype::F16 {
                return Err(unexpected);
            }
            if cols % QK as u64 != 0 {
                return Err(quant_cols);
            }
            if t.shape() != [rows, cols / QK as u64] {
                return Err(wrong_shape);
            }
            let s = self.view(t, id)?;
            let slot = self.mats.get_mut(idx).ok_or(wrong_shape)?;
            if slot.scale.is_some() {
                return Err(dup);
            }
            slot.scale = Some(s);
            return Ok(());
        }
        let stored_cols = match t.dtype {
            Dtype::F32 | Dtype::F16 => cols,
            Dtype::I8 | Dtype::U8 if cols % QK as u64 != 0 => return Err(quant_cols),
            Dtype::I8 => cols,
            Dtype::U8 => cols / 2,
            _ => return Err(unexpected),
        };
        if t.shape() != [rows, stored_cols] {
            return Err(wrong_shape);
        }
        let m = match t.dtype {
            Dtype::F32 => Main::F32(self.view(t, id)?),
            Dtype::F16 => Main::F16(self.view(t, id)?),
            Dtype::I8 => Main::I8(self.view(t, id)?),
            _ => Main::U8(self.view(t, id)?),
        };
        let slot = self.mats.get_mut(idx).ok_or(wrong_shape)?;
        if slot.main.is_some() {
            return Err(dup);
        }
        slot.main = Some(m);
        Ok(())
    }

    fn matrix(&self, kind: TensorKind, layer: usize) -> Result<Matrix<'a>, Error> {
        let id = TensorId {
            kind,
            layer: layer as u8,
            scale: false,
        };
        let slot = self
            .mats
            .get(slot_index(id).1)
            .copied()
            .unwrap_or(EMPTY_MAT);
        match (slot.main, slot.scale) {
            (None, None) => Err(Error::MissingTensor { tensor: id }),
            (None | Some(Main::F32(_) | Main::F16(_)), Some(_)) => {
                Err(Error::ScaleWithoutWeight { tensor: id })
            }
            (Some(Main::I8(_) | Main::U8(_)), None) => {
                Err(Error::WeightWithoutScale { tensor: id })
            }
            (Some(Main::F32(w)), None) => Ok(Matrix::F32(w)),
            (Some(Main::F16(w)), None) => Ok(Matrix::F16(w)),
            (Some(Main::I8(q)), Some(scales)) => Ok(Matrix::Q8_0 { q, scales }),
            (Some(Main::U8(q)), Some(scales)) => Ok(Matrix::Q4_0 { q, scales }),
        }
    }

    fn vector(&self, kind: TensorKind, layer: usize) -> Result<Vector<'a>, Error> {
        let id = TensorId {
            kind,
            layer: layer as u8,
            scale: false,
        };
        self.vecs
            .get(slot_index(id).1)
            .copied()
            .flatten()
            .ok_or(Error::MissingTensor { tensor: id })
    }

    fn layer_norm(
        &self,
        w: TensorKind,
        b: TensorKind,
        layer: usize,
    ) -> Result<LayerNorm<'a>, Error> {
        Ok(LayerNorm {
            weight: self.vector(w, layer)?,
            bias: self.vector(b, layer)?,
        })
    }

    /// Pair scales with weights and check nothing is missing.
    pub(crate) fn finish(&self) -> Result<Weights<'a>, Error> {
        use TensorKind as K;
        let wte = self.matrix(K::Wte, 0)?;
        let wpe = self.matrix(K::Wpe, 0)?;
        let mut layers = heapless::Vec::new();
        for i in 0..self.cfg.n_layer {
            let layer = Layer {
                ln_1: self.layer_norm(K::Ln1Weight, K::Ln1Bias, i)?,
                attn: self.matrix(K::AttnWeight, i)?,
                attn_bias: self.vector(K::AttnBias, i)?,
                attn_proj: self.matrix(K::AttnProjWeight, i)?,
                attn_proj_bias: self.vector(K::AttnProjBias, i)?,
                ln_2: self.layer_norm(K::Ln2Weight, K::Ln2Bias, i)?,
                fc: self.matrix(K::FcWeight, i)?,
                fc_bias: self.vector(K::FcBias, i)?,
                mlp_proj: self.matrix(K::MlpProjWeight, i)?,
                mlp_proj_bias: self.vector(K::MlpProjBias, i)?,
            };
            layers.push(layer).map_err(|_| Error::ConfigTooLarge {
                field: crate::error::ConfigField::NLayer,
                max: MAX_LAYERS as u32,
            })?;
        }
        let ln_f = self.layer_norm(K::LnFWeight, K::LnFBias, 0)?;
        let lm_head = if self.cfg.tied_embeddings {
            None
        } else {
            Some(self.matrix(K::LmHead, 0)?)
        };
        Ok(Weights {
            wte,
            wpe,
            layers,
            ln_f,
            lm_head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio_kernels::quant::{quantize_row_q4, quantize_row_q8};

    #[test]
    fn names_resolve() {
        let id = |kind, layer, scale| Some(TensorId { kind, layer, scale });
        assert_eq!(tensor_id("wte.weight"), id(TensorKind::Wte, 0, false));
        assert_eq!(
            tensor_id("h.12.mlp.c_proj.bias"),
            id(TensorKind::MlpProjBias, 12, false)
        );
        assert_eq!(
            tensor_id("h.0.attn.c_attn.weight_scale"),
            id(TensorKind::AttnWeight, 0, true)
        );
        assert_eq!(
            tensor_id("lm_head.weight_scale"),
            id(TensorKind::LmHead, 0, true)
        );
        for other in [
            "h.01.ln_1.weight",
            "h.256.ln_1.weight",
            "h..ln_1.weight",
            "h.x.ln_1.weight",
            "ln_f.weight_scale",
            "wte",
            "h.0.attn.bias",
            "h.0.ln_1.bias_scale",
        ] {
            assert_eq!(tensor_id(other), None, "{other}");
        }
    }

    #[test]
    fn matrix_encodings_agree() {
        // A 3x64 matrix in all four encodings: matvec and row agree with the dequantised f32.
        let (rows, cols) = (3usize, 64usize);
        let w: std::vec::Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x: std::vec::Vec<f32> = (0..cols)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0)
            .collect();
        let w16: std::vec::Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let mut q8 = std::vec![0i8; rows * cols];
        let mut s8 = std::vec![f16::ZERO; rows * cols / QK];
        let mut q4 = std::vec![0u8; rows * cols / 2];
        let mut s4 = std::vec![f16::ZERO; rows * cols / QK];
        for r in 0..rows {
            let g = cols / QK;
            quantize_row_q8(
                &mut q8[r * cols..][..cols],
                &mut s8[r * g..][..g],
                &w[r * cols..][..cols],
            );
            quantize_row_q4(
                &mut q4[r * cols / 2..][..cols / 2],
                &mut s4[r * g..][..g],
                &w[r * cols..][..cols],
            );
        }
        let mats = [
            (Matrix::F32(&w), 1e-6),
            (Matrix::F16(&w16), 2e-3),
            (
                Matrix::Q8_0 {
                    q: &q8,
                    scales: &s8,
                },
                2e-2,
            ),
            (
                Matrix::Q4_0 {
                    q: &q4,
                    scales: &s4,
                },
                0.3,
            ),
        ];
        let (mut xq, mut xs) = ([0i8; 64], [0f32; 2]);
        for (m, tol) in mats {
            let mut out = [0f32; 3];
            let mut act = ActScratch {
                xq: &mut xq,
                xs: &mut xs,
            };
            m.matvec(&mut out, &x, &mut act).unwrap();
            let mut short = ActScratch {
                xq: &mut [0i8; 63],
                xs: &mut [0f32; 2],
            };
            let quantised = matches!(m.encoding(), Encoding::Q8_0 | Encoding::Q4_0);
            assert_eq!(
                m.matvec(&mut out, &x, &mut short).is_err(),
                quantised,
                "{:?}",
                m.encoding()
            );
            m.matvec(&mut out, &x, &mut act).unwrap();
            for r in 0..rows {
                let mut row = [0f32; 64];
                m.row(r, &mut row);
                let exact: f32 = w[r * cols..][..cols]
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| a * b)
                    .sum();
                let via_row: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
                // int8 activations: half a step of max|x| / 127 = 1.5 / 127 an element.
                let act_err = if quantised {
                    row.iter().map(|v| v.abs()).sum::<f32>() * 0.51 * 1.5 / 127.0
                } else {
                    0.0
                };
                assert!(
                    (out[r] - via_row).abs() < 1e-3 + act_err,
                    "{:?} row {r}",
                    m.encoding()
                );
                let row_err = row
                    .iter()
                    .zip(&w[r * cols..])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(row_err <= tol, "{:?} row {r}: {row_err}", m.encoding());
                assert!(
                    (out[r] - exact).abs() <= tol * 64.0 + act_err,
                    "{:?}",
                    m.encoding()
                );
            }
            let mut row = [7f32; 64];
            m.row(rows, &mut row);
            assert!(row.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn mixed_layer_norm_matches_kernel() {
        let x = [1.0f32, -2.0, 3.5, 0.25];
        let w = [1.0f32, 0.5, -1.0, 2.0];
        let b = [0.0f32, 0.1, 0.2, -0.3];
        let b16: std::vec::Vec<f16> = b.iter().map(|&v| f16::from_f32(v)).collect();
        let (mut a, mut m) = ([0f32; 4], [0f32; 4]);
        LayerNorm {
            weight: Vector::F32(&w),
            bias: Vector::F32(&b),
        }
        .apply(&mut a, &x, 1e-5);
        LayerNorm {
            weight: Vector::F32(&w),
            bias: Vector::F16(&b16),
        }
        .apply(&mut m, &x, 1e-5);
        for (p, q) in a.iter().zip(&m) {
            assert!((p - q).abs() < 1e-3, "{a:?} {m:?}");
        }
    }
}
