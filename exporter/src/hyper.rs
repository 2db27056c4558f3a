//! nanoGPT's `config/train_shakespeare_char.py` and `get_lr`: every hyper-parameter of a
//! run, the presets, the model shape they imply, and the warm-up + cosine schedule.
use anyhow::{bail, Result};
use folio_runtime::Config;
use serde::{Deserialize, Serialize};

/// Every hyper-parameter of a run (all stored in the checkpoint and in `folio.train`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// The preset the run started from.
    pub preset: String,
    /// Sequences per step.
    pub batch_size: usize,
    /// Context length.
    pub block_size: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Tie `lm_head` to `wte`.
    pub tied_embeddings: bool,
    /// Optimiser steps.
    pub max_iters: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Floor of the cosine decay.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup_iters: usize,
    /// Step at which the cosine reaches `min_lr` (nanoGPT: `max_iters`).
    pub lr_decay_iters: usize,
    /// AdamW decoupled weight decay (2-D weights only).
    pub weight_decay: f64,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon.
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Dropout probability while training.
    pub dropout: f64,
    /// Evaluate (and checkpoint) every this many steps.
    pub eval_interval: usize,
    /// Batches per split in each evaluation.
    pub eval_iters: usize,
    /// Seed of the initialisation, the batch generator and dropout.
    pub seed: u64,
    /// The model's variant: nanoGPT's (the default, the only one the runtime runs) or one of
    /// the lab's training-only ablations.
    #[serde(default, flatten)]
    pub variant: Variant,
}

/// How attention and positions are computed. The runtime runs only the default; the others
/// answer the lab's analysis questions and are trained but never exported.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Divide attention logits by sqrt(head size) (nanoGPT). `false` is the ablation.
    #[serde(default = "yes")]
    pub attn_scale: bool,
    /// Concatenate the positional embedding instead of adding it: tokens get the first
    /// `n_embd - n_embd / 4` residual dimensions and positions the last `n_embd / 4`.
    #[serde(default)]
    pub concat_pos: bool,
}

fn yes() -> bool {
    true
}

impl Default for Variant {
    fn default() -> Self {
        Self {
            attn_scale: true,
            concat_pos: false,
        }
    }
}

impl Variant {
    /// Whether the runtime can run this model (and the exporter writes it).
    pub fn exportable(&self) -> bool {
        *self == Self::default()
    }

    /// Residual dimensions that carry the position when concatenated (0 when added).
    pub fn pos_dims(&self, n_embd: usize) -> usize {
        if self.concat_pos {
            n_embd / 4
        } else {
            0
        }
    }
}

impl Hyper {
    /// A preset: `edge` (default, ~3 min on 2 CPU cores), `model1`, `model2`, `model3`
    /// (the lab's seed models, 5000 iterations each).
    pub fn preset(name: &str) -> Result<Self> {
        let base = Self {
            preset: name.to_string(),
            batch_size: 32,
            block_size: 64,
            n_embd: 128,
            n_head: 4,
            n_layer: 4,
            tied_embeddings: true,
            // About 3 minutes on 2 CPU cores.
            max_iters: 1000,
            lr: 5e-3,
            min_lr: 5e-4,
            warmup_iters: 100,
            lr_decay_iters: 1000,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            grad_clip: 1.0,
            dropout: 0.0,
            eval_interval: 250,
            eval_iters: 50,
            seed: 1337,
            variant: Variant::default(),
        };
        let lab = |b, t, c, h, l, dropout, eval_iters| Self {
            batch_size: b,
            block_size: t,
            n_embd: c,
            n_head: h,
            n_layer: l,
            max_iters: 5000,
            lr_decay_iters: 5000,
            lr: 1e-3,
            min_lr: 1e-4,
            dropout,
            eval_iters,
            ..base.clone()
        };
        Ok(match name {
            "edge" => base,
            "model1" => lab(8, 4, 64, 4, 3, 0.0, 200),
            "model2" => lab(32, 128, 384, 6, 4, 0.2, 100),
            "model3" => lab(64, 256, 384, 6, 4, 0.2, 100),
            _ => bail!("unknown preset {name:?} (expected edge, model1, model2 or model3)"),
        })
    }

    /// The model shape for a vocabulary of `vocab_size`.
    pub fn model_config(&self, vocab_size: usize) -> Result<Config> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            bail!(
                "n_embd ({}) must be a positive multiple of n_head ({})",
                self.n_embd,
                self.n_head
            );
        }
        if self.batch_size == 0
            || self.block_size == 0
            || self.n_layer == 0
            || self.eval_interval == 0
        {
            bail!("batch_size, block_size, n_layer and eval_interval must be positive");
        }
        Ok(Config {
            vocab_size,
            block_size: self.block_size,
            n_embd: self.n_embd,
            n_head: self.n_head,
            n_layer: self.n_layer,
            layer_norm_eps: 1e-5,
            tied_embeddings: self.tied_embeddings,
        })
    }

    /// nanoGPT's `get_lr`: linear warm-up, cosine decay to `min_lr` at `lr_decay_iters`,
    /// then `min_lr`.
    pub fn lr_at(&self, it: usize) -> f64 {
        if it < self.warmup_iters {
            return self.lr * (it + 1) as f64 / (self.warmup_iters + 1) as f64;
        }
        if it > self.lr_decay_iters {
            return self.min_lr;
        }
        let span = (self.lr_decay_iters - self.warmup_iters).max(1) as f64;
        let ratio = (it - self.warmup_iters) as f64 / span;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + coeff * (self.lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let h = Hyper::preset("edge").unwrap();
        assert!(h.lr_at(0) < h.lr_at(50) && h.lr_at(50) < h.lr_at(99));
        assert!((h.lr_at(100) - h.lr).abs() < 1e-12);
        let mid = h.lr_decay_iters / 2;
        assert!(h.lr_at(mid) < h.lr && h.lr_at(mid) > h.min_lr);
        assert!((h.lr_at(h.lr_decay_iters) - h.min_lr).abs() < 1e-12);
        assert_eq!(h.lr_at(5000), h.min_lr);
    }

    #[test]
    fn presets_have_the_lab_shapes() {
        let m2 = Hyper::preset("model2").unwrap();
        assert_eq!(
            (
                m2.batch_size,
                m2.block_size,
                m2.n_embd,
                m2.n_head,
                m2.n_layer,
                m2.max_iters
            ),
            (32, 128, 384, 6, 4, 5000)
        );
        let m1 = Hyper::preset("model1").unwrap();
        assert_eq!(
            (
                m1.batch_size,
                m1.block_size,
                m1.n_embd,
                m1.n_head,
                m1.n_layer
            ),
            (8, 4, 64, 4, 3)
        );
        assert!(Hyper::preset("model9").is_err());
    }
}
