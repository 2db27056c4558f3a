//! An independent f64 reference of the folio model (docs/FORMAT.md, "Math").
//!
//! Plain loops in f64; it shares no code with `folio-runtime` or `folio-kernels`: the file
//! is read with the `safetensors` crate, the metadata with `str::parse`, and q8_0/q4_0 are
//! dequantised here from the stored `I8`/`U8` codes and `_scale` tensors.
//!
//! The format stores the KV cache in f16, so by default ([`Options::FORMAT`]) the reference
//! rounds every K and V value to f16 (`half`) before attention uses it, as the runtime must.
//! The runtime's q8_0 and q4_0 matvecs quantise their input vector to int8 groups first
//! (per 32 values: scale `max|x| / 127`, codes `round_ties_even(x * 127 / max|x|)`, a
//! group below `2^-100` as zeros; `folio_kernels::quantize_act`), so by default the
//! reference does the same, in f64, before each q8_0/q4_0 matrix.
//! [`Options::EXACT`] keeps K and V and every matrix input in f64, to show how far the f16
//! cache and the int8 activations move the logits (the parity tests print both).
use half::f16;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

/// Hyper-parameters read from the `folio.*` metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefConfig {
    /// `V`.
    pub vocab_size: usize,
    /// `T`.
    pub block_size: usize,
    /// `C`.
    pub n_embd: usize,
    /// `H`.
    pub n_head: usize,
    /// Blocks.
    pub n_layer: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
    /// Head is `wte.weight`.
    pub tied_embeddings: bool,
}

/// Numerical options of the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Round K and V to f16 before use (the format's KV cache).
    pub kv_f16: bool,
    /// Quantise the input of each q8_0/q4_0 matrix to int8 groups (the runtime's matvecs).
    pub act_int8: bool,
}

impl Options {
    /// As the runtime computes: K and V rounded to f16, int8 inputs to quantised matrices.
    pub const FORMAT: Options = Options {
        kv_f16: true,
        act_int8: true,
    };
    /// Everything in f64.
    pub const EXACT: Options = Options {
        kv_f16: false,
        act_int8: false,
    };
}

/// A dense f64 matrix `[rows, cols]`, row-major.
#[derive(Clone, Debug)]
struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<f64>,
    /// Stored as q8_0 or q4_0.
    quantised: bool,
}

/// `x` through int8 groups of 32 as `folio_kernels::quantize_act` defines them: `amax =
/// max |x|` (of `x` rounded to f32), a group below `2^-100` as zeros, else codes
/// `round_ties_even(x * (127 / amax))` with the division and the product rounded to f32
/// (the definition's arithmetic, so ties fall the same way), times `amax / 127`.
fn int8_groups(x: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (o, g) in out.chunks_mut(32).zip(x.chunks(32)) {
        let amax = g.iter().fold(0.0f32, |m, &v| m.max((v as f32).abs()));
        if (amax as f64) < 2f64.powi(-100) {
            continue;
        }
        let inv = 127.0 / amax;
        for (o, &v) in o.iter_mut().zip(g) {
            *o = ((v as f32 * inv) as f64).round_ties_even() * (amax / 127.0) as f64;
        }
    }
    out
}

impl Mat {
    fn row(&self, r: usize) -> &[f64] {
        &self.w[r * self.cols..(r + 1) * self.cols]
    }

    /// `W x + b`; with `opts.act_int8`, a quantised matrix sees `x` through int8 groups.
    fn apply(&self, x: &[f64], b: Option<&[f64]>, opts: Options) -> Vec<f64> {
        assert_eq!(x.len(), self.cols);
        let xq;
        let x = if opts.act_int8 && self.quantised {
            xq = int8_groups(x);
            &xq[..]
        } else {
            x
        };
        (0..self.rows)
            .map(|r| {
                let mut acc = b.map_or(0.0, |b| b[r]);
                for (w, v) in self.row(r).iter().zip(x) {
                    acc += w * v;
                }
                acc
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
struct Layer {
    ln1: (Vec<f64>, Vec<f64>),
    c_attn: (Mat, Vec<f64>),
    c_proj: (Mat, Vec<f64>),
    ln2: (Vec<f64>, Vec<f64>),
    c_fc: (Mat, Vec<f64>),
    mlp_proj: (Mat, Vec<f64>),
}

/// The reference model: all weights dequantised to f64.
#[derive(Clone, Debug)]
pub struct Reference {
    /// Hyper-parameters.
    pub config: RefConfig,
    /// Token-id order.
    pub vocab: Vec<char>,
    wte: Mat,
    wpe: Mat,
    layers: Vec<Layer>,
    ln_f: (Vec<f64>, Vec<f64>),
    head: Option<Mat>,
}

fn f16_values(data: &[u8]) -> Vec<f64> {
    data.chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f64())
        .collect()
}

fn f32_values(data: &[u8]) -> Vec<f64> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect()
}

fn vector(st: &SafeTensors, name: &str, len: usize) -> Result<Vec<f64>, String> {
    let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    if t.shape() != [len] {
        return Err(format!("{name}: shape {:?}, want [{len}]", t.shape()));
    }
    match t.dtype() {
        Dtype::F32 => Ok(f32_values(t.data())),
        Dtype::F16 => Ok(f16_values(t.data())),
        d => Err(format!("{name}: 1-D dtype {d:?}")),
    }
}

fn matrix(st: &SafeTensors, name: &str, rows: usize, cols: usize) -> Result<Mat, String> {
    let t = st.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    let scales = || -> Result<Vec<f64>, String> {
        let sname = format!("{name}_scale");
        let s = st.tensor(&sname).map_err(|e| format!("{sname}: {e}"))?;
        if s.dtype() != Dtype::F16 || s.shape() != [rows, cols / 32] || !cols.is_multiple_of(32) {
            return Err(format!("{sname}: {:?} {:?}", s.dtype(), s.shape()));
        }
        Ok(f16_values(s.data()))
    };
    let groups = cols / 32;
    let quantised = matches!(t.dtype(), Dtype::I8 | Dtype::U8);
    let w = match t.dtype() {
        Dtype::F32 | Dtype::F16 => {
            if t.shape() != [rows, cols] {
                return Err(format!(
                    "{name}: shape {:?}, want [{rows}, {cols}]",
                    t.shape()
                ));
            }
            if t.dtype() == Dtype::F32 {
                f32_values(t.data())
            } else {
                f16_values(t.data())
            }
        }
        Dtype::I8 | Dtype::U8 => {
            // q4_0 packs two codes a byte: a group's byte j holds column j in the low
            // nibble, j + 16 in the high; q8_0 stores one i8 a column.
            let q4 = t.dtype() == Dtype::U8;
            let stored = if q4 { cols / 2 } else { cols };
            if t.shape() != [rows, stored] {
                return Err(format!("{name}: shape {:?}", t.shape()));
            }
            let s = scales()?;
            let q = t.data();
            let mut w = vec![0.0; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    let (g, j) = (c / 32, c % 32);
                    let code = if q4 {
                        let byte = q[r * stored + g * 16 + j % 16];
                        let nibble = if j < 16 { byte & 0x0f } else { byte >> 4 };
                        nibble as f64 - 8.0
                    } else {
                        (q[r * stored + c] as i8) as f64
                    };
                    w[r * cols + c] = code * s[r * groups + g];
                }
            }
            w
        }
        d => return Err(format!("{name}: 2-D dtype {d:?}")),
    };
    Ok(Mat {
        rows,
        cols,
        w,
        quantised,
    })
}

fn layernorm(x: &[f64], (w, b): &(Vec<f64>, Vec<f64>), eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    x.iter()
        .zip(w)
        .zip(b)
        .map(|((v, w), b)| (v - mean) * inv * w + b)
        .collect()
}

fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

fn round_f16(x: f64) -> f64 {
    f16::from_f64(x).to_f64()
}

impl Reference {
    /// Read a folio file (either writer's) into f64 weights.
    pub fn from_bytes(bytes: &[u8]) -> Result<Reference, String> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
        let meta = meta.metadata().clone().ok_or("no __metadata__")?;
        let get = |k: &str| {
            meta.get(&format!("folio.{k}"))
                .ok_or(format!("no folio.{k}"))
        };
        if get("format")? != "2" {
            return Err(format!("folio.format {:?}, not \"2\"", get("format")?));
        }
        let int = |k: &str| {
            get(k)?
                .parse::<usize>()
                .map_err(|e| format!("folio.{k}: {e}"))
        };
        let config = RefConfig {
            vocab_size: int("vocab_size")?,
            block_size: int("block_size")?,
            n_embd: int("n_embd")?,
            n_head: int("n_head")?,
            n_layer: int("n_layer")?,
            eps: get("layer_norm_eps")?
                .parse()
                .map_err(|e| format!("eps: {e}"))?,
            tied_embeddings: get("tied_embeddings")?
                .parse()
                .map_err(|e| format!("tied: {e}"))?,
        };
        let vocab: Vec<char> = get("vocab")?.chars().collect();
        let c = config.n_embd;
        let (v, t) = (config.vocab_size, config.block_size);
        let lin = |name: &str, rows, cols| -> Result<(Mat, Vec<f64>), String> {
            Ok((
                matrix(&st, &format!("{name}.weight"), rows, cols)?,
                vector(&st, &format!("{name}.bias"), rows)?,
            ))
        };
        let ln = |name: &str| -> Result<(Vec<f64>, Vec<f64>), String> {
            Ok((
                vector(&st, &format!("{name}.weight"), c)?,
                vector(&st, &format!("{name}.bias"), c)?,
            ))
        };
        let mut layers = Vec::new();
        for i in 0..config.n_layer {
            layers.push(Layer {
                ln1: ln(&format!("h.{i}.ln_1"))?,
                c_attn: lin(&format!("h.{i}.attn.c_attn"), 3 * c, c)?,
                c_proj: lin(&format!("h.{i}.attn.c_proj"), c, c)?,
                ln2: ln(&format!("h.{i}.ln_2"))?,
                c_fc: lin(&format!("h.{i}.mlp.c_fc"), 4 * c, c)?,
                mlp_proj: lin(&format!("h.{i}.mlp.c_proj"), c, 4 * c)?,
            });
        }
        Ok(Reference {
            config,
            vocab,
            wte: matrix(&st, "wte.weight", v, c)?,
            wpe: matrix(&st, "wpe.weight", t, c)?,
            layers,
            ln_f: ln("ln_f")?,
            head: if config.tied_embeddings {
                None
            } else {
                Some(matrix(&st, "lm_head.weight", v, c)?)
            },
        })
    }

    /// Token ids of `text` (panics on a character outside the vocabulary).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars()
            .map(|ch| {
                self.vocab
                    .iter()
                    .position(|&v| v == ch)
                    .unwrap_or_else(|| panic!("{ch:?} not in vocab")) as u32
            })
            .collect()
    }

    /// Logits at every position of `tokens` (at most `block_size` of them, positions
    /// `0..tokens.len()`): `(tokens.len(), vocab_size)`.
    pub fn logits(&self, tokens: &[u32], opts: Options) -> Vec<Vec<f64>> {
        let cfg = self.config;
        assert!(
            tokens.len() <= cfg.block_size,
            "reference: sequence longer than block_size"
        );
        let (c, h) = (cfg.n_embd, cfg.n_head);
        let hs = c / h;
        let n = tokens.len();
        // (n, C) residual stream
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .enumerate()
            .map(|(p, &tok)| {
                self.wte
                    .row(tok as usize)
                    .iter()
                    .zip(self.wpe.row(p))
                    .map(|(a, b)| a + b)
                    .collect()
            })
            .collect();
        for layer in &self.layers {
            // (n, 3C) q, k, v of every position
            let mut qkv: Vec<Vec<f64>> = x
                .iter()
                .map(|xp| {
                    layer.c_attn.0.apply(
                        &layernorm(xp, &layer.ln1, cfg.eps),
                        Some(&layer.c_attn.1),
                        opts,
                    )
                })
                .collect();
            if opts.kv_f16 {
                for row in qkv.iter_mut() {
                    for v in row[c..].iter_mut() {
                        *v = round_f16(*v);
                    }
                }
            }
            for p in 0..n {
                // (C) attention output of position p
                let mut y = vec![0.0; c];
                for head in 0..h {
                    let q = &qkv[p][head * hs..(head + 1) * hs];
                    let scores: Vec<f64> = (0..=p)
                        .map(|t| {
                            let k = &qkv[t][c + head * hs..c + (head + 1) * hs];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hs as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for (t, et) in e.iter().enumerate() {
                        let v = &qkv[t][2 * c + head * hs..2 * c + (head + 1) * hs];
                        for (o, vv) in y[head * hs..(head + 1) * hs].iter_mut().zip(v) {
                            *o += et / sum * vv;
                        }
                    }
                }
                let a = layer.c_proj.0.apply(&y, Some(&layer.c_proj.1), opts);
                for (xv, av) in x[p].iter_mut().zip(&a) {
                    *xv += av;
                }
            }
            for xp in x.iter_mut() {
                let m = layernorm(xp, &layer.ln2, cfg.eps);
                let hid: Vec<f64> = layer
                    .c_fc
                    .0
                    .apply(&m, Some(&layer.c_fc.1), opts)
                    .into_iter()
                    .map(gelu_tanh)
                    .collect();
                let out = layer.mlp_proj.0.apply(&hid, Some(&layer.mlp_proj.1), opts);
                for (xv, ov) in xp.iter_mut().zip(&out) {
                    *xv += ov;
                }
            }
        }
        let head = self.head.as_ref().unwrap_or(&self.wte);
        x.iter()
            .map(|xp| head.apply(&layernorm(xp, &self.ln_f, cfg.eps), None, opts))
            .collect()
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}
