//! nanoGPT's `model.py` in tch, with parameter paths equal to the runtime's tensor names
//! (docs/FORMAT.md): `wte.weight`, `h.{i}.attn.c_attn.weight`, ... Pre-norm blocks, GELU
//! (tanh), LayerNorm with biases, tied embeddings by default, dropout only in training.
//! The shape is the runtime's own [`Config`]. [`Variant`]s (no sqrt(d_k) scaling,
//! concatenated positions) are the lab's training-only ablations; [`Gpt::probe`] measures
//! what the attention softmax sees and the gradient that reaches its input.
use crate::hyper::Variant;
use folio_runtime::Config;
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

struct Linear {
    w: Tensor, // (out, in)
    b: Tensor, // (out,)
}

impl Linear {
    fn new(p: nn::Path, n_in: usize, n_out: usize, std: f64) -> Self {
        let w = p.var(
            "weight",
            &[n_out as i64, n_in as i64],
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        );
        let b = p.var("bias", &[n_out as i64], Init::Const(0.0));
        Self { w, b }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }
}

struct LayerNorm {
    w: Tensor, // (C,)
    b: Tensor, // (C,)
    eps: f64,
}

impl LayerNorm {
    fn new(p: nn::Path, c: usize, eps: f64) -> Self {
        Self {
            w: p.var("weight", &[c as i64], Init::Const(1.0)),
            b: p.var("bias", &[c as i64], Init::Const(0.0)),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let c = self.w.size()[0];
        x.layer_norm([c], Some(&self.w), Some(&self.b), self.eps, false)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// Options of one forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    /// Dropout probability applied (0 in evaluation).
    pub dropout: f64,
    /// Round K and V to f16 and back, as the runtime's f16 KV cache does (parity tests).
    pub kv_f16: bool,
}

/// The GPT: the parameters live in the `VarStore` it was built from.
pub struct Gpt {
    /// Its shape.
    pub cfg: Config,
    /// Its variant (the default: nanoGPT's).
    pub variant: Variant,
    wte: Tensor,             // (V, C)
    wpe: Tensor,             // (T, C)
    lm_head: Option<Tensor>, // (V, C), untied only
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl Gpt {
    /// Creates the parameters under `p` with nanoGPT's initialisation: normal(0, 0.02) for
    /// embeddings and matrices, `c_proj` matrices normal(0, 0.02/sqrt(2 n_layer)), zero
    /// biases, LayerNorm weight 1.
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        Self::with_variant(p, cfg, Variant::default())
    }

    /// [`Gpt::new`] for a variant. With concatenated positions `wte` is (V, C - P) and
    /// `wpe` (T, P), P = C / 4; a tied head scores the first C - P dimensions.
    pub fn with_variant(p: &nn::Path, cfg: &Config, variant: Variant) -> Self {
        let (v, t, c) = (cfg.vocab_size, cfg.block_size, cfg.n_embd);
        let pd = variant.pos_dims(c);
        let eps = f64::from(cfg.layer_norm_eps);
        let std = 0.02;
        let proj_std = 0.02 / ((2 * cfg.n_layer) as f64).sqrt();
        let normal = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let (tok_dims, pos_dims) = if pd > 0 { (c - pd, pd) } else { (c, c) };
        let wte = (p / "wte").var("weight", &[v as i64, tok_dims as i64], normal);
        let wpe = (p / "wpe").var("weight", &[t as i64, pos_dims as i64], normal);
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let h = p / "h" / i;
                Block {
                    ln_1: LayerNorm::new(&h / "ln_1", c, eps),
                    c_attn: Linear::new(&h / "attn" / "c_attn", c, 3 * c, std),
                    attn_proj: Linear::new(&h / "attn" / "c_proj", c, c, proj_std),
                    ln_2: LayerNorm::new(&h / "ln_2", c, eps),
                    c_fc: Linear::new(&h / "mlp" / "c_fc", c, 4 * c, std),
                    mlp_proj: Linear::new(&h / "mlp" / "c_proj", 4 * c, c, proj_std),
                }
            })
            .collect();
        let ln_f = LayerNorm::new(p / "ln_f", c, eps);
        let lm_head = (!cfg.tied_embeddings)
            .then(|| (p / "lm_head").var("weight", &[v as i64, c as i64], normal));
        Self {
            cfg: *cfg,
            variant,
            wte,
            wpe,
            lm_head,
            blocks,
            ln_f,
        }
    }

    /// Logits (B, T, V) for token ids `idx` (B, T), T <= block_size.
    // `x = x + …`, not `x += …`: an in-place add would change the tensor LayerNorm saved
    // for the backward pass.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, idx: &Tensor, mode: Mode) -> Tensor {
        self.forward_probed(idx, mode, None)
    }

    /// [`Gpt::forward`], pushing each layer's attention logits (B, H, T, T), as the softmax
    /// receives them before the causal mask, to `probe`.
    #[allow(clippy::assign_op_pattern)]
    fn forward_probed(
        &self,
        idx: &Tensor,
        mode: Mode,
        mut probe: Option<&mut Vec<Tensor>>,
    ) -> Tensor {
        let (b, t) = idx.size2().expect("idx must be (B, T)");
        let c = self.cfg.n_embd as i64;
        let nh = self.cfg.n_head as i64;
        let hs = c / nh;
        let train = mode.dropout > 0.0;
        let pos = Tensor::arange(t, (Kind::Int64, idx.device()));
        let tok = Tensor::embedding(&self.wte, idx, -1, false, false);
        let at = Tensor::embedding(&self.wpe, &pos, -1, false, false);
        let mut x = if self.variant.concat_pos {
            Tensor::cat(&[tok, at.expand([b, t, -1], false)], 2)
        } else {
            tok + at
        }; // (B, T, C)
        x = x.dropout(mode.dropout, train);
        let mask = Tensor::ones([t, t], (Kind::Bool, idx.device()))
            .tril(0)
            .logical_not(); // (T, T)
        let scale = if self.variant.attn_scale {
            1.0 / (hs as f64).sqrt()
        } else {
            1.0
        };
        for blk in &self.blocks {
            let a = blk.ln_1.forward(&x);
            let qkv = blk.c_attn.forward(&a).split(c, 2); // 3 x (B, T, C)
            let heads = |t_: &Tensor| t_.view([b, t, nh, hs]).transpose(1, 2); // (B, H, T, hs)
            let q = heads(&qkv[0]);
            let (mut k, mut v) = (heads(&qkv[1]), heads(&qkv[2]));
            if mode.kv_f16 {
                k = k.to_kind(Kind::Half).to_kind(Kind::Float);
                v = v.to_kind(Kind::Half).to_kind(Kind::Float);
            }
            let logits = q.matmul(&k.transpose(-2, -1)) * scale; // (B, H, T, T)
            if let Some(p) = probe.as_mut() {
                p.push(logits.shallow_clone());
            }
            let att = logits
                .masked_fill(&mask, f64::NEG_INFINITY)
                .softmax(-1, Kind::Float)
                .dropout(mode.dropout, train);
            let y = att.matmul(&v).transpose(1, 2).contiguous().view([b, t, c]); // (B, T, C)
            x = x + blk.attn_proj.forward(&y).dropout(mode.dropout, train);
            let m = blk.ln_2.forward(&x);
            let h = blk.c_fc.forward(&m).gelu("tanh"); // (B, T, 4C)
            x = x + blk.mlp_proj.forward(&h).dropout(mode.dropout, train);
        }
        let mut x = self.ln_f.forward(&x);
        if self.lm_head.is_none() && self.variant.concat_pos {
            x = x.narrow(2, 0, self.wte.size()[1]);
        }
        x.matmul(&self.lm_head.as_ref().unwrap_or(&self.wte).tr()) // (B, T, V)
    }

    /// Mean cross-entropy of `forward(idx)` against `targets` (B, T).
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, mode: Mode) -> Tensor {
        let logits = self.forward(idx, mode);
        let v = self.cfg.vocab_size as i64;
        logits
            .view([-1, v])
            .cross_entropy_for_logits(&targets.view(-1))
    }

    /// What the attention softmax sees on one batch (no dropout), averaged over layers,
    /// heads and the causal rows: the logits' variance, the softmax's entropy (and that of
    /// a uniform row of the same length) and largest probability, and the L2 norm of the
    /// loss gradient reaching the logits.
    pub fn probe(&self, idx: &Tensor, targets: &Tensor) -> AttnProbe {
        let mut logits = Vec::new();
        let out = self.forward_probed(idx, Mode::default(), Some(&mut logits));
        let v = self.cfg.vocab_size as i64;
        let loss = out
            .view([-1, v])
            .cross_entropy_for_logits(&targets.view(-1));
        let grads = Tensor::run_backward(&[&loss], &logits, false, false);
        let t = idx.size()[1];
        let keep = Tensor::ones([t, t], (Kind::Bool, idx.device())).tril(0);
        let masked = keep.logical_not();
        let row_len = keep.sum_dim_intlist(-1, false, Kind::Float); // (T,)
        let n = logits.len() as f64;
        let mut p = AttnProbe::default();
        for (s, g) in logits.iter().zip(&grads) {
            let s = s.detach();
            let probs = s
                .masked_fill(&masked, f64::NEG_INFINITY)
                .softmax(-1, Kind::Float);
            let plogp = (&probs * probs.clamp_min(1e-30).log()).masked_fill(&masked, 0.0);
            p.logit_var += s.masked_select(&keep).var(true).double_value(&[]) / n;
            p.entropy += (-plogp.sum_dim_intlist(-1, false, Kind::Float))
                .mean(Kind::Float)
                .double_value(&[])
                / n;
            p.max_prob += probs.amax(-1, false).mean(Kind::Float).double_value(&[]) / n;
            p.grad_norm += g.norm().double_value(&[]) / n;
        }
        p.uniform_entropy = row_len.log().mean(Kind::Float).double_value(&[]);
        p
    }
}

/// [`Gpt::probe`]'s measurements (means over layers).
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AttnProbe {
    /// Variance of the attention logits inside the causal mask.
    pub logit_var: f64,
    /// Mean softmax entropy of a row, nats.
    pub entropy: f64,
    /// The same for uniform attention over each row's positions (the maximum).
    pub uniform_entropy: f64,
    /// Mean largest attention probability of a row (1 = saturated).
    pub max_prob: f64,
    /// L2 norm of d(loss)/d(logits) over the batch.
    pub grad_norm: f64,
}

/// Number of parameters in `vs`.
pub fn n_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            vocab_size: 11,
            block_size: 8,
            n_embd: 32,
            n_head: 4,
            n_layer: 2,
            layer_norm_eps: 1e-5,
            tied_embeddings: true,
        }
    }

    #[test]
    fn parameter_names_are_the_runtime_tensor_names() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = Gpt::new(&vs.root(), &cfg());
        let mut names: Vec<String> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names.len(), 2 + 2 * 12 + 2);
        for n in [
            "wte.weight",
            "wpe.weight",
            "h.1.attn.c_attn.weight",
            "h.0.mlp.c_proj.bias",
            "ln_f.bias",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        let vars = vs.variables();
        assert_eq!(vars["h.0.attn.c_attn.weight"].size(), vec![96, 32]);
        assert_eq!(vars["h.0.mlp.c_proj.weight"].size(), vec![32, 128]);
        // nanoGPT init: zero biases, scaled c_proj.
        assert_eq!(
            vars["h.0.attn.c_attn.bias"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        let sd = vars["h.0.mlp.c_proj.weight"].std(true).double_value(&[]);
        assert!((sd - 0.01).abs() < 0.001, "{sd}");
    }

    #[test]
    fn attention_is_causal() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let m = Gpt::new(&vs.root(), &cfg());
        let a = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6]).view([1, 6]);
        let b = Tensor::from_slice(&[1i64, 2, 3, 9, 9, 9]).view([1, 6]);
        let (la, lb) = (
            m.forward(&a, Mode::default()),
            m.forward(&b, Mode::default()),
        );
        let d_prefix = (la.narrow(1, 0, 3) - lb.narrow(1, 0, 3))
            .abs()
            .max()
            .double_value(&[]);
        let d_suffix = (la.narrow(1, 3, 3) - lb.narrow(1, 3, 3))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(d_prefix, 0.0);
        assert!(d_suffix > 0.0);
    }

    #[test]
    fn variants_change_only_what_they_name() {
        // One layer, so the unscaled logits are exactly the scaled ones times sqrt(hs) (deeper
        // layers see what the changed attention made of their input).
        let cfg = Config {
            n_layer: 1,
            ..cfg()
        };
        let idx = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 8]).view([1, 8]);
        let tgt = Tensor::from_slice(&[2i64, 3, 4, 5, 6, 7, 8, 9]).view([1, 8]);
        let probe = |variant: Variant| {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let m = Gpt::with_variant(&vs.root(), &cfg, variant);
            (m.probe(&idx, &tgt), n_params(&vs), vs)
        };
        let (scaled, n, _) = probe(Variant::default());
        let unscaled = Variant {
            attn_scale: false,
            ..Variant::default()
        };
        let (raw, n_raw, _) = probe(unscaled);
        // Same weights, logits sqrt(hs) = sqrt(8) times larger: variance 8 times.
        assert_eq!(n, n_raw);
        let ratio = raw.logit_var / scaled.logit_var;
        assert!((ratio - 8.0).abs() < 1e-4, "{ratio}");
        assert!(raw.max_prob > scaled.max_prob && raw.entropy < scaled.entropy);
        assert!(scaled.entropy <= scaled.uniform_entropy + 1e-9);
        assert!(scaled.grad_norm > 0.0 && raw.grad_norm > 0.0);
        // Concatenated: wte (V, 24), wpe (T, 8), everything else as before.
        let concat = Variant {
            concat_pos: true,
            ..Variant::default()
        };
        let (_, n_cat, vs) = probe(concat);
        let vars = vs.variables();
        assert_eq!(vars["wte.weight"].size(), vec![11, 24]);
        assert_eq!(vars["wpe.weight"].size(), vec![8, 8]);
        assert_eq!(n - n_cat, 11 * 8 + 8 * 24);
        assert!(!concat.exportable() && !unscaled.exportable());
        assert!(Variant::default().exportable());
    }
}
