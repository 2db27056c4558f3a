//! Random-weight folio model files, written with the `safetensors` crate's serializer.
//!
//! A [`FixtureSpec`] (shape, per-tensor encodings, seed) builds a [`Fixture`]: the stored
//! tensors (already encoded: F32, F16, q8_0 = I8 + F16 `_scale`, q4_0 = U8 + F16 `_scale`)
//! and the `__metadata__` strings of docs/FORMAT.md. [`Fixture::to_safetensors`] serialises
//! it; the hand-written writer (`handwritten`) writes the same content in another layout.
//!
//! Initialisation follows nanoGPT (normal(0, `weight_std`) matrices, default 0.02) except
//! that LayerNorm weights are `1 ± 0.1` and biases are small but nonzero, so a runtime that
//! ignored either would fail the parity tests. Quantisation uses
//! `folio_kernels::quant::quantize_row_q8/q4`, the project's one definition of the groups.
use crate::rng::Rng;
use folio_kernels::quant::{quantize_row_q4, quantize_row_q8};
use folio_kernels::QK;
pub use folio_runtime::Encoding;
use half::f16;
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The 65 distinct characters of Tiny Shakespeare, sorted: the lab models' vocabulary.
pub const SHAKESPEARE_VOCAB: &str =
    "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Character order used for vocabularies shorter than 65: deliberately not sorted, so a
/// tokenizer that assumed sorted ids would fail.
const SHORT_VOCAB_ORDER: &str =
    " etaoinshrdlu\ncmfwypvbgkjqxz.,;:!?'-&$3ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The vocabulary of a fixture with `n` tokens (`n <= 65`): the full Tiny Shakespeare set
/// for 65, else the first `n` characters of an unsorted frequency order.
pub fn vocab_for(n: usize) -> Vec<char> {
    assert!((1..=65).contains(&n), "fixtures support 1..=65 tokens");
    if n == 65 {
        SHAKESPEARE_VOCAB.chars().collect()
    } else {
        SHORT_VOCAB_ORDER.chars().take(n).collect()
    }
}

/// Model hyper-parameters, as in the `folio.*` metadata (this crate's own copy: the f64
/// reference shares no code with the runtime).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Number of tokens (`V`).
    pub vocab_size: usize,
    /// Context length (`T`).
    pub block_size: usize,
    /// Embedding width (`C`).
    pub n_embd: usize,
    /// Attention heads (`H`).
    pub n_head: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// `true`: the head is `wte.weight`; `false`: a separate `lm_head.weight`.
    pub tied_embeddings: bool,
}

impl Config {
    /// A vocab-65, tied-head config with `block/embd/heads/layers`.
    pub const fn new(block_size: usize, n_embd: usize, n_head: usize, n_layer: usize) -> Self {
        Config {
            vocab_size: 65,
            block_size,
            n_embd,
            n_head,
            n_layer,
            layer_norm_eps: 1e-5,
            tied_embeddings: true,
        }
    }

    /// The same config with another vocabulary size.
    pub const fn vocab(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    /// The same config with an untied `lm_head.weight`.
    pub const fn untied(mut self) -> Self {
        self.tied_embeddings = false;
        self
    }

    /// The same config with another LayerNorm epsilon.
    pub const fn eps(mut self, layer_norm_eps: f32) -> Self {
        self.layer_norm_eps = layer_norm_eps;
        self
    }

    /// The lab's three model shapes (block/embd/heads/layers, vocab 65):
    /// 4/64/4/3, 128/384/6/4, 256/384/6/4.
    pub const LAB: [Config; 3] = [
        Config::new(4, 64, 4, 3),
        Config::new(128, 384, 6, 4),
        Config::new(256, 384, 6, 4),
    ];

    /// Small shapes that run the whole context window quickly: short vocabularies, one
    /// and two layers, head sizes 8 and 16, tied and untied, a non-default epsilon.
    pub const TINY: [Config; 3] = [
        Config::new(8, 32, 4, 1).vocab(11),
        Config::new(16, 64, 4, 2).vocab(29).untied().eps(1e-3),
        Config::new(12, 32, 2, 2).untied(),
    ];

    /// A shape whose widths are not multiples of 32 (only F32/F16 matrices allowed).
    pub const ODD: Config = Config::new(6, 24, 3, 2).vocab(17);

    /// Whether every matrix of this shape can be quantised (`n_embd % 32 == 0`).
    pub fn quantisable(&self) -> bool {
        self.n_embd.is_multiple_of(QK)
    }

    /// The `folio.*` metadata of docs/FORMAT.md for this config (without vocab and dtype).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            ("folio.format", "2".into()),
            ("folio.vocab_size", self.vocab_size.to_string()),
            ("folio.block_size", self.block_size.to_string()),
            ("folio.n_embd", self.n_embd.to_string()),
            ("folio.n_head", self.n_head.to_string()),
            ("folio.n_layer", self.n_layer.to_string()),
            // The f32's shortest decimal form (0.00001, not 9.99999974737875e-6).
            ("folio.layer_norm_eps", self.layer_norm_eps.to_string()),
            ("folio.activation", "gelu_tanh".into()),
            ("folio.tied_embeddings", self.tied_embeddings.to_string()),
        ]
    }

    /// A short label, e.g. `"128/384/6/4 V65 tied"`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}/{} V{} {}",
            self.block_size,
            self.n_embd,
            self.n_head,
            self.n_layer,
            self.vocab_size,
            if self.tied_embeddings {
                "tied"
            } else {
                "untied"
            }
        )
    }
}

/// The encodings of a fixture's 2-D tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every matrix in one encoding.
    All(Encoding),
    /// Per tensor: the `i`-th matrix (in [`matrix_names`] order) uses
    /// `Encoding::ALL[(i + seed) % 4]`, so every encoding appears in a file with 4+ matrices.
    Mixed,
}

impl Plan {
    /// The plans a parity suite covers: the four uniform encodings and mixed.
    pub const ALL: [Plan; 5] = [
        Plan::All(Encoding::F32),
        Plan::All(Encoding::F16),
        Plan::All(Encoding::Q8_0),
        Plan::All(Encoding::Q4_0),
        Plan::Mixed,
    ];

    /// `folio.dtype`.
    pub fn label(self) -> &'static str {
        match self {
            Plan::All(e) => e.as_str(),
            Plan::Mixed => "mixed",
        }
    }

    /// Whether any matrix may be quantised.
    pub fn quantised(self) -> bool {
        !matches!(self, Plan::All(Encoding::F32 | Encoding::F16))
    }
}

/// The dtype of the 1-D tensors (LayerNorm weights, biases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vectors {
    /// All F32.
    F32,
    /// All F16.
    F16,
    /// Alternating F32 / F16 by tensor index.
    Alternate,
}

/// Everything that decides a fixture's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixtureSpec {
    /// Hyper-parameters.
    pub config: Config,
    /// Matrix encodings.
    pub plan: Plan,
    /// 1-D tensor dtype.
    pub vectors: Vectors,
    /// PRNG seed.
    pub seed: u64,
    /// Standard deviation of the matrices (nanoGPT: 0.02). Larger values make attention
    /// and logits less uniform, which makes argmax tests more decisive.
    pub weight_std: f32,
}

impl FixtureSpec {
    /// nanoGPT-like init, F32 vectors for F32 matrices, F16 vectors otherwise, alternating for mixed.
    pub fn new(config: Config, plan: Plan, seed: u64) -> Self {
        let vectors = match plan {
            Plan::All(Encoding::F32) => Vectors::F32,
            Plan::All(_) => Vectors::F16,
            Plan::Mixed => Vectors::Alternate,
        };
        FixtureSpec {
            config,
            plan,
            vectors,
            seed,
            weight_std: 0.02,
        }
    }

    /// The same spec with another matrix standard deviation.
    pub fn std(mut self, weight_std: f32) -> Self {
        self.weight_std = weight_std;
        self
    }

    /// The same spec with another 1-D dtype.
    pub fn vectors(mut self, vectors: Vectors) -> Self {
        self.vectors = vectors;
        self
    }

    /// Generate the weights and encode them.
    pub fn build(&self) -> Fixture {
        Fixture::build(*self)
    }

    /// The safetensors file bytes (shorthand for `build().to_safetensors()`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.build().to_safetensors()
    }
}

/// Every tensor of `config` with its shape, in a fixed canonical order: `wte`, `wpe`, the
/// layers' tensors in docs/FORMAT.md's order, `ln_f`, then `lm_head` when untied.
pub fn tensor_shapes(config: &Config) -> Vec<(String, Vec<usize>)> {
    let (v, t, c) = (config.vocab_size, config.block_size, config.n_embd);
    let mut out = vec![
        ("wte.weight".to_string(), vec![v, c]),
        ("wpe.weight".to_string(), vec![t, c]),
    ];
    for i in 0..config.n_layer {
        for (suffix, shape) in [
            ("ln_1.weight", vec![c]),
            ("ln_1.bias", vec![c]),
            ("attn.c_attn.weight", vec![3 * c, c]),
            ("attn.c_attn.bias", vec![3 * c]),
            ("attn.c_proj.weight", vec![c, c]),
            ("attn.c_proj.bias", vec![c]),
            ("ln_2.weight", vec![c]),
            ("ln_2.bias", vec![c]),
            ("mlp.c_fc.weight", vec![4 * c, c]),
            ("mlp.c_fc.bias", vec![4 * c]),
            ("mlp.c_proj.weight", vec![c, 4 * c]),
            ("mlp.c_proj.bias", vec![c]),
        ] {
            out.push((format!("h.{i}.{suffix}"), shape));
        }
    }
    out.push(("ln_f.weight".to_string(), vec![c]));
    out.push(("ln_f.bias".to_string(), vec![c]));
    if !config.tied_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, c]));
    }
    out
}

/// The names of the 2-D tensors of `config`, in [`tensor_shapes`] order.
pub fn matrix_names(config: &Config) -> Vec<String> {
    let shapes = tensor_shapes(config).into_iter();
    shapes
        .filter(|(_, s)| s.len() == 2)
        .map(|(n, _)| n)
        .collect()
}

/// One stored safetensors tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    /// Tensor name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub data: Vec<u8>,
}

impl View for &StoredTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// A generated model: encoded tensors plus `__metadata__`.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// What it was built from.
    pub spec: FixtureSpec,
    /// Stored tensors (matrices, their `_scale`s, vectors), in generation order.
    pub tensors: Vec<StoredTensor>,
    /// `__metadata__` (the `folio.*` keys of docs/FORMAT.md).
    pub metadata: BTreeMap<String, String>,
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect()
}

impl Fixture {
    fn build(spec: FixtureSpec) -> Fixture {
        let c = spec.config;
        let quant_ok = c.quantisable();
        let mut rng = Rng::new(spec.seed);
        let mut tensors = Vec::new();
        let mut n_matrix = 0usize;
        let mut n_vector = 0usize;
        let (emb, ff) = (c.n_embd, 4 * c.n_embd);

        let mut matrix = |tensors: &mut Vec<StoredTensor>,
                          rng: &mut Rng,
                          name: String,
                          rows: usize,
                          cols: usize| {
            let values: Vec<f32> = (0..rows * cols)
                .map(|_| rng.normal() * spec.weight_std)
                .collect();
            let enc = match spec.plan {
                Plan::All(e) => e,
                Plan::Mixed => {
                    let e = Encoding::ALL[(n_matrix + spec.seed as usize) % 4];
                    if e.is_quantised() && !quant_ok {
                        Encoding::ALL[(n_matrix + spec.seed as usize) % 2]
                    } else {
                        e
                    }
                }
            };
            n_matrix += 1;
            assert!(
                !enc.is_quantised() || cols.is_multiple_of(QK),
                "{name}: {cols} columns cannot be quantised"
            );
            push_matrix(tensors, &name, enc, rows, cols, &values);
        };
        let mut vector = |tensors: &mut Vec<StoredTensor>, name: String, values: Vec<f32>| {
            let f16 = match spec.vectors {
                Vectors::F32 => false,
                Vectors::F16 => true,
                Vectors::Alternate => n_vector % 2 == 1,
            };
            n_vector += 1;
            let (dtype, data) = if f16 {
                (Dtype::F16, f16_bytes(&values))
            } else {
                (Dtype::F32, f32_bytes(&values))
            };
            tensors.push(StoredTensor {
                name,
                dtype,
                shape: vec![values.len()],
                data,
            });
        };
        let ln_w = |rng: &mut Rng, n: usize| {
            (0..n)
                .map(|_| 1.0 + rng.uniform(-0.1, 0.1))
                .collect::<Vec<f32>>()
        };
        let bias = |rng: &mut Rng, n: usize| {
            (0..n)
                .map(|_| rng.uniform(-0.02, 0.02))
                .collect::<Vec<f32>>()
        };

        matrix(
            &mut tensors,
            &mut rng,
            "wte.weight".into(),
            c.vocab_size,
            emb,
        );
        matrix(
            &mut tensors,
            &mut rng,
            "wpe.weight".into(),
            c.block_size,
            emb,
        );
        // A block's tensors in file order, `(suffix, rows, cols)`: cols 0 for a vector, a
        // LayerNorm gain (`ln_*.weight`, around 1) or a bias.
        let block = [
            ("ln_1.weight", emb, 0),
            ("ln_1.bias", emb, 0),
            ("attn.c_attn.weight", 3 * emb, emb),
            ("attn.c_attn.bias", 3 * emb, 0),
            ("attn.c_proj.weight", emb, emb),
            ("attn.c_proj.bias", emb, 0),
            ("ln_2.weight", emb, 0),
            ("ln_2.bias", emb, 0),
            ("mlp.c_fc.weight", ff, emb),
            ("mlp.c_fc.bias", ff, 0),
            ("mlp.c_proj.weight", emb, ff),
            ("mlp.c_proj.bias", emb, 0),
        ];
        for i in 0..c.n_layer {
            for (suffix, rows, cols) in block {
                let name = format!("h.{i}.{suffix}");
                if cols > 0 {
                    matrix(&mut tensors, &mut rng, name, rows, cols);
                } else {
                    let gain = suffix.starts_with("ln_") && suffix.ends_with(".weight");
                    let v = if gain {
                        ln_w(&mut rng, rows)
                    } else {
                        bias(&mut rng, rows)
                    };
                    vector(&mut tensors, name, v);
                }
            }
        }
        let w = ln_w(&mut rng, emb);
        vector(&mut tensors, "ln_f.weight".into(), w);
        let b = bias(&mut rng, emb);
        vector(&mut tensors, "ln_f.bias".into(), b);
        if !c.tied_embeddings {
            matrix(
                &mut tensors,
                &mut rng,
                "lm_head.weight".into(),
                c.vocab_size,
                emb,
            );
        }

        let mut metadata: BTreeMap<String, String> = c
            .metadata()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let vocab: String = vocab_for(c.vocab_size).into_iter().collect();
        metadata.insert("folio.vocab".to_string(), vocab);
        metadata.insert("folio.dtype".to_string(), spec.plan.label().to_string());
        Fixture {
            spec,
            tensors,
            metadata,
        }
    }

    /// The vocabulary, in token-id order.
    pub fn vocab(&self) -> Vec<char> {
        vocab_for(self.spec.config.vocab_size)
    }

    /// A stored tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&StoredTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Serialise with `safetensors::serialize` (data sorted by dtype alignment then name,
    /// header entries in that order after `__metadata__`, padded with spaces to a multiple
    /// of 8).
    pub fn to_safetensors(&self) -> Vec<u8> {
        let meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        safetensors::serialize(
            self.tensors.iter().map(|t| (t.name.as_str(), t)),
            Some(meta),
        )
        .expect("safetensors serialize")
    }

    /// Write [`Fixture::to_safetensors`] to `path`.
    pub fn write_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_safetensors())
    }
}

/// Encode one row-major `[rows, cols]` matrix as `enc` and append its tensor(s).
pub fn push_matrix(
    tensors: &mut Vec<StoredTensor>,
    name: &str,
    enc: Encoding,
    rows: usize,
    cols: usize,
    values: &[f32],
) {
    assert_eq!(values.len(), rows * cols);
    let (dtype, width, data, scales) = match enc {
        Encoding::F32 => (Dtype::F32, cols, f32_bytes(values), None),
        Encoding::F16 => (Dtype::F16, cols, f16_bytes(values), None),
        Encoding::Q8_0 | Encoding::Q4_0 => {
            // q8_0: one i8 code a column; q4_0: two 4-bit codes a byte.
            let per = if enc == Encoding::Q8_0 { 1 } else { 2 };
            let mut q = vec![0u8; rows * cols / per];
            let mut s = vec![f16::ZERO; rows * cols / QK];
            let code_rows = q
                .chunks_exact_mut(cols / per)
                .zip(s.chunks_exact_mut(cols / QK));
            for ((qr, sr), xr) in code_rows.zip(values.chunks_exact(cols)) {
                match enc {
                    Encoding::Q8_0 => quantize_row_q8(bytemuck::cast_slice_mut(qr), sr, xr),
                    _ => quantize_row_q4(qr, sr, xr),
                }
            }
            let dtype = if per == 1 { Dtype::I8 } else { Dtype::U8 };
            (dtype, cols / per, q, Some(s))
        }
    };
    let shape = vec![rows, width];
    tensors.push(StoredTensor {
        name: name.into(),
        dtype,
        shape,
        data,
    });
    if let Some(scales) = scales {
        tensors.push(StoredTensor {
            name: format!("{name}_scale"),
            dtype: Dtype::F16,
            shape: vec![rows, cols / QK],
            data: scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        });
    }
}
