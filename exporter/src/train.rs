//! nanoGPT's `train.py`: presets, the warm-up + cosine schedule, AdamW (written here on
//! tensors so its moments can be checkpointed), gradient clipping, `estimate_loss`, the
//! JSON-lines log, the progress bar and checkpoint/resume.
use crate::checkpoint::{self, Checkpoint, Progress};
use crate::data::{Dataset, Rng, Split};
use crate::model::{Config, Gpt, Mode};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

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
            // 1000 steps: 1500 took 270 s on an idle 2-core machine (val 1.645); the
            // brief is about 3 minutes, and val passes 1.88 near step 700.
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
        if self.n_head == 0 || self.n_embd % self.n_head != 0 {
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
            activation: "gelu_tanh".into(),
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

/// AdamW with decoupled weight decay on the 2-D parameters (matrices and embeddings)
/// only, as nanoGPT's `configure_optimizers`.
pub struct AdamW {
    /// (name, parameter), sorted by name.
    pub params: Vec<(String, Tensor)>,
    /// First moments, one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor>,
    /// Steps taken (bias correction).
    pub t: u64,
}

impl AdamW {
    /// Zero moments for every variable of `vs`.
    pub fn new(vs: &nn::VarStore) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self { params, m, v, t: 0 }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Clips the global gradient norm to `clip` (if > 0), then takes one step at `lr`.
    /// Returns the norm before clipping.
    pub fn step(&mut self, h: &Hyper, lr: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
            let sq: Vec<Tensor> = grads.iter().map(|g| g.square().sum(Kind::Float)).collect();
            let norm = Tensor::stack(&sq, 0)
                .sum(Kind::Float)
                .sqrt()
                .double_value(&[]);
            let scale = if h.grad_clip > 0.0 && norm > h.grad_clip {
                h.grad_clip / (norm + 1e-6)
            } else {
                1.0
            };
            self.t += 1;
            let bc1 = 1.0 - h.beta1.powi(self.t as i32);
            let bc2 = 1.0 - h.beta2.powi(self.t as i32);
            for (((_, p), g), (m, v)) in self
                .params
                .iter_mut()
                .zip(&grads)
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let g = g * scale;
                let _ = m.g_mul_scalar_(h.beta1).g_add_(&(&g * (1.0 - h.beta1)));
                let _ = v
                    .g_mul_scalar_(h.beta2)
                    .g_add_(&(g.square() * (1.0 - h.beta2)));
                if p.dim() >= 2 && h.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * h.weight_decay);
                }
                let denom = (&*v / bc2).sqrt() + h.eps;
                let _ = p.g_sub_(&((&*m / bc1) / denom * lr));
            }
            norm
        })
    }
}

/// nanoGPT's `estimate_loss`: mean loss over `eval_iters` batches of each split, in
/// evaluation mode (no dropout), drawn from a generator seeded by the step so a resumed
/// run reproduces the same estimates.
pub fn estimate_loss(
    model: &Gpt,
    data: &Dataset,
    h: &Hyper,
    step: usize,
    device: Device,
) -> Result<(f64, f64)> {
    let mut rng = Rng::new(h.seed ^ 0xE7A1_0000_0000_0000 ^ step as u64);
    let mut out = [0.0; 2];
    for (o, split) in out.iter_mut().zip([Split::Train, Split::Val]) {
        let mut total = 0.0;
        for _ in 0..h.eval_iters.max(1) {
            let (x, y) = data.get_batch(split, &mut rng, h.batch_size, h.block_size, device)?;
            total += tch::no_grad(|| model.loss(&x, &y, Mode::default())).double_value(&[]);
        }
        *o = total / h.eval_iters.max(1) as f64;
    }
    Ok((out[0], out[1]))
}

/// One line of the run log (`BASE.log.jsonl`), written after every evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    /// Optimiser steps done.
    pub iter: usize,
    /// Estimated train loss.
    pub train_loss: f64,
    /// Estimated val loss.
    pub val_loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean seconds per step since the previous evaluation.
    pub step_time: f64,
    /// Seconds this evaluation took.
    pub eval_time: f64,
    /// Training tokens per second since the previous evaluation.
    pub tokens_per_s: f64,
    /// Seconds since the run started (summed over resumed parts).
    pub elapsed: f64,
}

/// The outcome of a finished run.
pub struct Trained {
    /// The run's hyper-parameters (the checkpoint's when resumed).
    pub hyper: Hyper,
    /// The variables (f32 master weights).
    pub vs: nn::VarStore,
    /// The model over them.
    pub model: Gpt,
    /// Times, steps and the last losses.
    pub progress: Progress,
}

/// What the loop needs besides the data.
pub struct RunOpts<'a> {
    /// Hyper-parameters.
    pub hyper: Hyper,
    /// Where to train.
    pub device: Device,
    /// The checkpoint file.
    pub checkpoint: &'a Path,
    /// The log file.
    pub log: &'a Path,
    /// Continue from `checkpoint` instead of starting over.
    pub resume: bool,
    /// Stop (with a checkpoint written) after this many steps: tests use it to "kill" a run.
    pub stop_after: Option<usize>,
}

/// Trains (or resumes) a run to `max_iters`, evaluating, logging and checkpointing every
/// `eval_interval` steps and at the end.
pub fn train(data: &Dataset, opts: &RunOpts<'_>) -> Result<Trained> {
    let started = Instant::now();
    let (h, mut vs, model, mut opt, mut rng, mut progress) = if opts.resume {
        let ck = Checkpoint::read(opts.checkpoint).with_context(|| {
            format!(
                "--resume: cannot read checkpoint {}",
                opts.checkpoint.display()
            )
        })?;
        if ck.data_sha256 != data.sha256 {
            bail!(
                "--resume: checkpoint was trained on data {}, this data is {}",
                ck.data_sha256,
                data.sha256
            );
        }
        let h = ck.hyper.clone();
        let cfg = h.model_config(data.vocab.len())?;
        let vs = nn::VarStore::new(opts.device);
        let model = Gpt::new(&vs.root(), &cfg);
        let mut opt = AdamW::new(&vs);
        ck.restore(&mut opt)?;
        truncate_log(opts.log, ck.progress.step)?;
        folio_runtime::note!(
            "resuming {} at step {}/{}",
            opts.checkpoint.display(),
            ck.progress.step,
            h.max_iters
        );
        (
            h,
            vs,
            model,
            opt,
            Rng {
                state: ck.rng_state,
            },
            ck.progress,
        )
    } else {
        let h = opts.hyper.clone();
        let cfg = h.model_config(data.vocab.len())?;
        tch::manual_seed(h.seed as i64);
        let vs = nn::VarStore::new(opts.device);
        let model = Gpt::new(&vs.root(), &cfg);
        let opt = AdamW::new(&vs);
        if opts.log.exists() {
            std::fs::remove_file(opts.log)
                .with_context(|| format!("removing old log {}", opts.log.display()))?;
        }
        (
            h.clone(),
            vs,
            model,
            opt,
            Rng::new(h.seed),
            Progress::default(),
        )
    };
    folio_runtime::note!(
        "{} parameters; {} train / {} val tokens; device {:?}",
        crate::model::n_params(&vs),
        data.train.len(),
        data.val.len(),
        opts.device
    );
    let already = progress.total_seconds;
    let bar = progress_bar(h.max_iters, progress.step);
    let mut interval_steps = 0usize;
    let mut interval_time = 0.0f64;
    let mut lr = h.lr_at(progress.step);
    let mut loss_val = f64::NAN;
    let skip_eval_at = opts.resume.then_some(progress.step);
    loop {
        let step = progress.step;
        if (step % h.eval_interval == 0 || step == h.max_iters) && skip_eval_at != Some(step) {
            let t0 = Instant::now();
            let (tl, vl) = estimate_loss(&model, data, &h, step, opts.device)?;
            let eval_time = t0.elapsed().as_secs_f64();
            progress.eval_seconds += eval_time;
            progress.train_loss = tl;
            progress.val_loss = vl;
            progress.total_seconds = already + started.elapsed().as_secs_f64();
            let step_time = if interval_steps > 0 {
                interval_time / interval_steps as f64
            } else {
                0.0
            };
            let line = LogLine {
                iter: step,
                train_loss: tl,
                val_loss: vl,
                lr,
                step_time,
                eval_time,
                tokens_per_s: if step_time > 0.0 {
                    (h.batch_size * h.block_size) as f64 / step_time
                } else {
                    0.0
                },
                elapsed: progress.total_seconds,
            };
            checkpoint::write(
                opts.checkpoint,
                &vs,
                &opt,
                &h,
                &progress,
                rng.state,
                &data.sha256,
            )?;
            append_log(opts.log, &line)?;
            let msg = format!(
                "step {step}: train {tl:.4}, val {vl:.4}, lr {lr:.2e}, {:.0} tok/s, {:.1}s",
                line.tokens_per_s, line.elapsed
            );
            if bar.is_hidden() {
                folio_runtime::note!("{msg}");
            } else {
                bar.println(msg);
            }
            interval_steps = 0;
            interval_time = 0.0;
        }
        if step >= h.max_iters {
            break;
        }
        if opts.stop_after.is_some_and(|s| step >= s) {
            progress.total_seconds = already + started.elapsed().as_secs_f64();
            checkpoint::write(
                opts.checkpoint,
                &vs,
                &opt,
                &h,
                &progress,
                rng.state,
                &data.sha256,
            )?;
            break;
        }
        let t0 = Instant::now();
        lr = h.lr_at(step);
        if h.dropout > 0.0 {
            tch::manual_seed(h.seed.wrapping_add(step as u64 + 1) as i64);
        }
        let (x, y) = data.get_batch(
            Split::Train,
            &mut rng,
            h.batch_size,
            h.block_size,
            opts.device,
        )?;
        let mode = Mode {
            dropout: h.dropout,
            kv_f16: false,
        };
        let loss = model.loss(&x, &y, mode);
        opt.zero_grad();
        loss.backward();
        opt.step(&h, lr);
        loss_val = loss.double_value(&[]);
        let dt = t0.elapsed().as_secs_f64();
        progress.train_seconds += dt;
        progress.step += 1;
        interval_steps += 1;
        interval_time += dt;
        bar.set_position(progress.step as u64);
        bar.set_message(format!(
            "loss {loss_val:.4} {:.0} tok/s",
            (h.batch_size * h.block_size) as f64 * interval_steps as f64 / interval_time
        ));
    }
    bar.finish_and_clear();
    if !loss_val.is_finite() && progress.step > 0 && !opts.resume {
        bail!("training diverged (loss {loss_val})");
    }
    progress.total_seconds = already + started.elapsed().as_secs_f64();
    vs.freeze();
    Ok(Trained {
        hyper: h,
        vs,
        model,
        progress,
    })
}

fn progress_bar(total: usize, pos: usize) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use std::io::IsTerminal;
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}") {
        bar.set_style(style);
    }
    bar.set_position(pos as u64);
    bar
}

fn append_log(path: &Path, line: &LogLine) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(line)?)?;
    Ok(())
}

/// Drops log lines past `step` (written after the checkpoint a resumed run starts from).
fn truncate_log(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<LogLine>(l).is_ok_and(|x| x.iter <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::export::write_atomic(path, kept.as_bytes())
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
    fn adamw_matches_the_closed_form_first_step() {
        // Step 1 of Adam moves each weight by lr * sign(g) (m/sqrt(v) = g/|g|), after the
        // decoupled decay w *= 1 - lr*wd on 2-D weights only.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2, 2], nn::Init::Const(1.0));
        let b = vs.root().var("b", &[2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs);
        let h = Hyper {
            grad_clip: 0.0,
            weight_decay: 0.5,
            ..Hyper::preset("edge").unwrap()
        };
        let loss = (&w * Tensor::from_slice(&[1.0f32, -2.0, 3.0, -4.0]).view([2, 2]))
            .sum(Kind::Float)
            + (&b * 2.0).sum(Kind::Float);
        loss.backward();
        opt.step(&h, 0.1);
        let w: Vec<f32> = Vec::try_from(&w.view(-1)).unwrap();
        let b: Vec<f32> = Vec::try_from(&b).unwrap();
        let decayed = 1.0 - 0.1 * 0.5;
        let want_w = [decayed - 0.1, decayed + 0.1, decayed - 0.1, decayed + 0.1];
        for (a, e) in w.iter().zip(want_w) {
            assert!((*a as f64 - e).abs() < 1e-5, "{w:?}");
        }
        for a in b {
            assert!((a as f64 - 0.9).abs() < 1e-5);
        }
    }

    #[test]
    fn clipping_scales_the_global_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(0.0));
        let mut opt = AdamW::new(&vs);
        let h = Hyper {
            grad_clip: 1.0,
            ..Hyper::preset("edge").unwrap()
        };
        (&w * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.step(&h, 0.0);
        assert!((norm - 5.0).abs() < 1e-6);
        // m = (1 - beta1) * g * 1/5 after clipping.
        let m: Vec<f32> = Vec::try_from(&opt.m[0]).unwrap();
        assert!((m[0] as f64 - 0.1 * 3.0 / 5.0).abs() < 1e-6, "{m:?}");
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
