//! Stage 3: the header's tensor entries → typed zero-copy views of the weights.
//!
//! `load` makes one pass over the entries in header order: each must begin where the
//! previous one ended (the data section is tiled, no gaps, no overlaps), hold exactly
//! `shape × dtype size` bytes, and, when folio reads it, have the dtype and shape the
//! config implies. Views are `bytemuck::try_cast_slice`s of the file bytes; nothing is
//! copied. [`Matrix`] is one 2-D weight in any of the four encodings and dispatches
//! `matvec` and `row` to `folio_kernels`.
use crate::config::{Config, MAX_CHUNK, MAX_LAYERS};
use crate::error::{Error, TensorProblem};
use crate::header::{unescape_into, Header, TensorInfo};
use crate::names::{tensor_id, Dtype, MetaKey, TensorId, TensorKind, LAYER_TENSORS, MAX_NAME};
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
    /// U8 `[rows, cols/2]` (two codes a byte) + F16 scales `[rows, cols/32]`.
    Q4_0,
}

impl Encoding {
    /// All four, from the most precise.
    pub const ALL: [Encoding; 4] = [Self::F32, Self::F16, Self::Q8_0, Self::Q4_0];

    /// Lower-case name as in `folio.dtype`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// The encoding named `s` (as [`Encoding::as_str`] spells it).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// True for the block-quantised encodings (a `NAME_scale` tensor beside `NAME`).
    pub const fn is_quantised(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4_0)
    }
}

impl core::fmt::Display for Encoding {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
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

    /// `out (n, rows) = x (n, cols) · selfᵀ`, the [`Matrix::matvec`] of each of the `n`
    /// rows of `x` in one pass over the weights: tiles of rows (a multiple of 4, about
    /// [`TILE_BYTES`] of weights) go through every token before the next tile, so a prompt
    /// chunk reads the weights from memory once. Every value has `matvec`'s bits.
    pub fn matmul(
        &self,
        out: &mut [f32],
        x: &[f32],
        cols: usize,
        act: &mut ActScratch<'_>,
    ) -> Result<(), Error> {
        let n = x.len() / cols.max(1);
        if n <= 1 {
            return self.matvec(out, x, act);
        }
        let rows = out.len() / n;
        if MAX_CHUNK == 1 {
            // Bare metal: one matvec a token, and no tiling code in flash.
            for (o, x) in out.chunks_exact_mut(rows.max(1)).zip(x.chunks_exact(cols)) {
                self.matvec(o, x, act)?;
            }
            return Ok(());
        }
        let one = |i: usize| i..i + 1;
        match *self {
            Self::F32(w) => tiles(out, rows, cols * 4, |o, r, i| {
                folio_kernels::matvec_f32(o, part(w, cols, r), part(x, cols, one(i)))
            }),
            Self::F16(w) => tiles(out, rows, cols * 2, |o, r, i| {
                folio_kernels::matvec_f16(o, part(w, cols, r), part(x, cols, one(i)))
            }),
            Self::Q8_0 { q, scales } => {
                let x = act.quantize_rows(x, cols)?;
                quant_tiles(
                    out,
                    rows,
                    cols,
                    (q, cols),
                    scales,
                    x,
                    folio_kernels::matvec_q8,
                )
            }
            Self::Q4_0 { q, scales } => {
                let x = act.quantize_rows(x, cols)?;
                quant_tiles(
                    out,
                    rows,
                    cols,
                    (q, cols / 2),
                    scales,
                    x,
                    folio_kernels::matvec_q4,
                )
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

/// Weight bytes a [`Matrix::matmul`] tile aims at: a quarter of a 32 KiB L1 data cache.
pub const TILE_BYTES: usize = 8 << 10;

/// Call `f(out_i[rows r], r, i)` for each tile of rows `r` and, within it, each token `i`
/// of `out (n, rows)`; `row_bytes` sizes the tiles (a multiple of 4 rows, the kernels'
/// row grouping, so each row is computed as in one whole matvec).
fn tiles(
    out: &mut [f32],
    rows: usize,
    row_bytes: usize,
    mut f: impl FnMut(&mut [f32], core::ops::Range<usize>, usize),
) {
    let tile = (TILE_BYTES / row_bytes.max(1) / 4).max(1) * 4;
    let mut r0 = 0;
    while r0 < rows {
        let r = r0..rows.min(r0 + tile);
        for (i, o) in out.chunks_exact_mut(rows).enumerate() {
            f(o.get_mut(r.clone()).unwrap_or(&mut []), r.clone(), i);
        }
        r0 = r.end;
    }
}

/// `folio_kernels::matvec_q8` or `matvec_q4`: `(out, codes, scales, xq, xs)`.
type QuantKernel<T> = fn(&mut [f32], &[T], &[f16], &[i8], &[f32]);

/// [`tiles`] of a q8_0/q4_0 `kernel` over codes `q` (`per_row` elements a row) and
/// `scales`, against the int8 activation rows `(xq, xs)` of [`ActScratch::quantize_rows`].
fn quant_tiles<T>(
    out: &mut [f32],
    rows: usize,
    cols: usize,
    (q, per_row): (&[T], usize),
    scales: &[f16],
    (xq, xs): (&[i8], &[f32]),
    kernel: QuantKernel<T>,
) {
    let g = cols / QK;
    tiles(out, rows, per_row, |o, r, i| {
        let (q, d) = (part(q, per_row, r.clone()), part(scales, g, r));
        kernel(o, q, d, part(xq, cols, i..i + 1), part(xs, g, i..i + 1))
    })
}

/// Rows `r` of `s` viewed as rows of `width` elements (empty when out of range).
fn part<T>(s: &[T], width: usize, r: core::ops::Range<usize>) -> &[T] {
    s.get(r.start * width..r.end * width).unwrap_or(&[])
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
        self.quantize_rows(x, x.len())
    }

    /// Each row of `x (n, cols)` quantised: codes `(n, cols)`, scales `(n, cols / 32)`.
    fn quantize_rows(&mut self, x: &[f32], cols: usize) -> Result<(&[i8], &[f32]), Error> {
        let (n, g) = (x.len() / cols.max(1), cols / QK);
        let xq = self
            .xq
            .get_mut(..n * cols)
            .ok_or(Error::BufferTooSmall { needed: n * cols })?;
        let xs = self
            .xs
            .get_mut(..n * g)
            .ok_or(Error::BufferTooSmall { needed: n * g })?;
        let rows = xq
            .chunks_exact_mut(cols.max(1))
            .zip(xs.chunks_mut(g.max(1)));
        for ((xq, xs), x) in rows.zip(x.chunks_exact(cols.max(1))) {
            folio_kernels::quantize_act(xq, xs, x);
        }
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

/// A linear layer `(rows, cols)`: a 2-D weight and its bias `(rows)`.
#[derive(Debug, Clone, Copy)]
pub struct Linear<'a> {
    /// `(rows, cols)`.
    pub weight: Matrix<'a>,
    /// `(rows)`.
    pub bias: Vector<'a>,
}

impl Linear<'_> {
    /// `out (n, rows) = x (n, cols) · weightᵀ + bias` ([`Matrix::matmul`]; `n = 1` is
    /// one matvec); `act` as for [`Matrix::matvec`].
    pub fn apply(
        &self,
        out: &mut [f32],
        x: &[f32],
        cols: usize,
        act: &mut ActScratch<'_>,
    ) -> Result<(), Error> {
        self.weight.matmul(out, x, cols, act)?;
        let n = (x.len() / cols.max(1)).max(1);
        let rows = (out.len() / n).max(1);
        out.chunks_exact_mut(rows).for_each(|r| self.bias.add_to(r));
        Ok(())
    }
}

/// One transformer block.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// `ln_1`.
    pub ln_1: LayerNorm<'a>,
    /// `attn.c_attn` (3C, C).
    pub attn: Linear<'a>,
    /// `attn.c_proj` (C, C).
    pub attn_proj: Linear<'a>,
    /// `ln_2`.
    pub ln_2: LayerNorm<'a>,
    /// `mlp.c_fc` (4C, C).
    pub fc: Linear<'a>,
    /// `mlp.c_proj` (C, 4C).
    pub mlp_proj: Linear<'a>,
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
        let id = TensorId::new;
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
                    (id(TensorKind::AttnWeight, i), &l.attn.weight),
                    (id(TensorKind::AttnProjWeight, i), &l.attn_proj.weight),
                    (id(TensorKind::FcWeight, i), &l.fc.weight),
                    (id(TensorKind::MlpProjWeight, i), &l.mlp_proj.weight),
                ]
            }))
            .chain(head)
    }
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

/// A tensor's view (a 1-D tensor's is F32 or F16) and a matrix's scales, as found.
type Slot<'a> = (Option<Main<'a>>, Option<&'a [f16]>);

/// Globals (`Wte`, `Wpe`, `LnFWeight`, `LnFBias`, `LmHead`) after the per-layer slots.
const SLOTS: usize = MAX_LAYERS * LAYER_TENSORS + 5;

/// Views found so far, indexed by [`slot`].
struct Loader<'a> {
    cfg: Config,
    data: &'a [u8],
    slots: [Slot<'a>; SLOTS],
}

/// The slot of a tensor (a scale shares its matrix's slot): per layer one for each
/// per-layer kind, then the globals.
fn slot(id: TensorId) -> usize {
    let (k, globals) = (id.kind as usize, MAX_LAYERS * LAYER_TENSORS);
    if id.kind.per_layer() {
        id.layer as usize * LAYER_TENSORS + k - TensorKind::Ln1Weight as usize
    } else if k <= TensorKind::Wpe as usize {
        globals + k
    } else {
        globals + 2 + k - TensorKind::LnFWeight as usize
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

/// The role of a tensor entry's name, `None` for names folio does not know.
pub fn tensor_id_of(t: &TensorInfo<'_>) -> Option<TensorId> {
    let mut buf = [0u8; MAX_NAME];
    tensor_id(unescape_into(t.name_raw, &mut buf)?)
}

/// True when the forward pass under `cfg` reads the tensor `id`.
pub fn is_used(cfg: &Config, id: TensorId) -> bool {
    let in_layers = !id.kind.per_layer() || (id.layer as usize) < cfg.n_layer;
    in_layers && (id.kind != TensorKind::LmHead || !cfg.tied_embeddings)
}

/// Check the tiling of the data section and every tensor folio reads, and view them.
pub(crate) fn load<'a>(header: &Header<'a>, cfg: &Config) -> Result<Weights<'a>, Error> {
    let data = header.data;
    if data.as_ptr().align_offset(core::mem::align_of::<f32>()) != 0 {
        return Err(Error::DataMisaligned {
            offset: header.data_offset,
        });
    }
    let mut loader = Loader {
        cfg: *cfg,
        data,
        slots: [(None, None); SLOTS],
    };
    let mut end = 0u64;
    for t in header.tensors() {
        let id = tensor_id_of(&t);
        let problem = |problem| Error::Tensor {
            tensor: id.unwrap_or(TensorId::new(TensorKind::Other, 0)),
            problem,
        };
        if t.begin != end {
            return Err(problem(TensorProblem::NotContiguous));
        }
        if t.end < t.begin || t.end > data.len() as u64 {
            return Err(problem(TensorProblem::OutOfRange));
        }
        if t.numel.and_then(|n| n.checked_mul(t.dtype.size() as u64)) != Some(t.bytes()) {
            return Err(problem(TensorProblem::Length));
        }
        end = t.end;
        if let Some(id) = id.filter(|&id| is_used(cfg, id)) {
            loader.add(&t, id).map_err(|problem| Error::Tensor {
                // A column count is the matrix's, whichever of its tensors shows it.
                tensor: match problem {
                    TensorProblem::QuantCols { .. } => TensorId { scale: false, ..id },
                    _ => id,
                },
                problem,
            })?;
        }
    }
    if end != data.len() as u64 {
        return Err(Error::TrailingData {
            bytes: data.len().saturating_sub(end as usize),
        });
    }
    loader.finish()
}

/// `t`'s bytes as `T`s (its offsets were checked against `data` already).
fn view<'a, T: bytemuck::Pod>(
    data: &'a [u8],
    t: &TensorInfo<'_>,
) -> Result<&'a [T], TensorProblem> {
    if !t.begin.is_multiple_of(core::mem::size_of::<T>() as u64) {
        return Err(TensorProblem::Misaligned);
    }
    let bytes = data.get(t.begin as usize..t.end as usize);
    bytes
        .and_then(|b| bytemuck::try_cast_slice(b).ok())
        .ok_or(TensorProblem::OutOfRange)
}

impl<'a> Loader<'a> {
    /// Validate one used tensor (dtype, shape, alignment) and store its view.
    fn add(&mut self, t: &TensorInfo<'_>, id: TensorId) -> Result<(), TensorProblem> {
        let (rows, cols) = expected_shape(&self.cfg, id.kind);
        let matrix = id.kind.is_matrix();
        let quantised = id.scale || matches!(t.dtype, Dtype::I8 | Dtype::U8);
        if matrix && quantised && !cols.is_multiple_of(QK as u64) {
            return Err(TensorProblem::QuantCols { cols: cols as u32 });
        }
        let (dtype_ok, shape) = match (matrix, id.scale, t.dtype) {
            (false, _, d) => (matches!(d, Dtype::F32 | Dtype::F16), [rows, 0]),
            (true, true, d) => (d == Dtype::F16, [rows, cols / QK as u64]),
            (true, false, Dtype::U8) => (true, [rows, cols / 2]),
            (true, false, d) => (
                matches!(d, Dtype::F32 | Dtype::F16 | Dtype::I8),
                [rows, cols],
            ),
        };
        if !dtype_ok {
            return Err(TensorProblem::Dtype { dtype: t.dtype });
        }
        if t.shape() != shape.get(..1 + usize::from(matrix)).unwrap_or(&[]) {
            return Err(TensorProblem::Shape);
        }
        let data = self.data;
        let slot = self.slots.get_mut(slot(id)).ok_or(TensorProblem::Shape)?;
        match t.dtype {
            _ if id.scale => slot.1 = Some(view(data, t)?),
            Dtype::F32 => slot.0 = Some(Main::F32(view(data, t)?)),
            Dtype::F16 => slot.0 = Some(Main::F16(view(data, t)?)),
            Dtype::I8 => slot.0 = Some(Main::I8(view(data, t)?)),
            _ => slot.0 = Some(Main::U8(view(data, t)?)),
        }
        Ok(())
    }

    fn found(&self, tensor: TensorId) -> Slot<'a> {
        self.slots
            .get(slot(tensor))
            .copied()
            .unwrap_or((None, None))
    }

    fn matrix(&self, kind: TensorKind, layer: usize) -> Result<Matrix<'a>, Error> {
        let tensor = TensorId::new(kind, layer);
        let problem = |problem| Err(Error::Tensor { tensor, problem });
        match self.found(tensor) {
            (None, None) => problem(TensorProblem::Missing),
            (None | Some(Main::F32(_) | Main::F16(_)), Some(_)) => {
                problem(TensorProblem::ScaleWithoutWeight)
            }
            (Some(Main::I8(_) | Main::U8(_)), None) => problem(TensorProblem::WeightWithoutScale),
            (Some(Main::F32(w)), None) => Ok(Matrix::F32(w)),
            (Some(Main::F16(w)), None) => Ok(Matrix::F16(w)),
            (Some(Main::I8(q)), Some(scales)) => Ok(Matrix::Q8_0 { q, scales }),
            (Some(Main::U8(q)), Some(scales)) => Ok(Matrix::Q4_0 { q, scales }),
        }
    }

    fn vector(&self, kind: TensorKind, layer: usize) -> Result<Vector<'a>, Error> {
        let tensor = TensorId::new(kind, layer);
        match self.found(tensor).0 {
            Some(Main::F32(v)) => Ok(Vector::F32(v)),
            Some(Main::F16(v)) => Ok(Vector::F16(v)),
            _ => Err(Error::Tensor {
                tensor,
                problem: TensorProblem::Missing,
            }),
        }
    }

    fn layer_norm(&self, w: TensorKind, b: TensorKind, i: usize) -> Result<LayerNorm<'a>, Error> {
        let (weight, bias) = (self.vector(w, i)?, self.vector(b, i)?);
        Ok(LayerNorm { weight, bias })
    }

    fn linear(&self, w: TensorKind, b: TensorKind, i: usize) -> Result<Linear<'a>, Error> {
        let (weight, bias) = (self.matrix(w, i)?, self.vector(b, i)?);
        Ok(Linear { weight, bias })
    }

    /// Pair scales with weights and check nothing is missing.
    fn finish(&self) -> Result<Weights<'a>, Error> {
        use TensorKind as K;
        let mut layers = heapless::Vec::new();
        for i in 0..self.cfg.n_layer {
            let layer = Layer {
                ln_1: self.layer_norm(K::Ln1Weight, K::Ln1Bias, i)?,
                attn: self.linear(K::AttnWeight, K::AttnBias, i)?,
                attn_proj: self.linear(K::AttnProjWeight, K::AttnProjBias, i)?,
                ln_2: self.layer_norm(K::Ln2Weight, K::Ln2Bias, i)?,
                fc: self.linear(K::FcWeight, K::FcBias, i)?,
                mlp_proj: self.linear(K::MlpProjWeight, K::MlpProjBias, i)?,
            };
            // n_layer <= MAX_LAYERS was checked with the config.
            let too_large = Error::ConfigTooLarge {
                key: MetaKey::NLayer,
                max: MAX_LAYERS as u32,
            };
            layers.push(layer).map_err(|_| too_large)?;
        }
        Ok(Weights {
            wte: self.matrix(K::Wte, 0)?,
            wpe: self.matrix(K::Wpe, 0)?,
            layers,
            ln_f: self.layer_norm(K::LnFWeight, K::LnFBias, 0)?,
            lm_head: match self.cfg.tied_embeddings {
                true => None,
                false => Some(self.matrix(K::LmHead, 0)?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio_kernels::quant::{quantize_row_q4, quantize_row_q8};

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
