//! nanoGPT's `train.py`: the training loop with `estimate_loss`, the JSON-lines log, the
//! progress bar and checkpoint/resume (hyper-parameters in [`crate::hyper`], the optimiser
//! in [`crate::optim`]).
use crate::checkpoint::{self, Checkpoint, Progress};
use crate::data::{Dataset, Rng, Split};
use crate::hyper::Hyper;
use crate::model::{AttnProbe, Gpt, Mode};
use crate::optim::AdamW;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

/// Mixed into the run's seed for the attention probe's batch.
const PROBE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

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
    /// Seconds of each step since the previous evaluation, in order (the distribution
    /// `step_time` is the mean of; empty in logs from before it was recorded).
    #[serde(default)]
    pub step_times: Vec<f64>,
    /// Seconds this evaluation took.
    pub eval_time: f64,
    /// The attention probe on a fixed val batch, when the run asked for it
    /// (`--probe-attention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttnProbe>,
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
    /// Probe the attention ([`Gpt::probe`]) at every evaluation.
    pub probe: bool,
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
        let model = Gpt::with_variant(&vs.root(), &cfg, h.variant);
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
        let model = Gpt::with_variant(&vs.root(), &cfg, h.variant);
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
    let save = |vs: &nn::VarStore, opt: &AdamW, progress: &Progress, rng: u64| {
        checkpoint::write(opts.checkpoint, vs, opt, &h, progress, rng, &data.sha256)
    };
    let bar = progress_bar(h.max_iters, progress.step);
    let mut interval: Vec<f64> = Vec::new();
    let mut lr = h.lr_at(progress.step);
    let mut loss_val = f64::NAN;
    let skip_eval_at = opts.resume.then_some(progress.step);
    loop {
        let step = progress.step;
        if (step % h.eval_interval == 0 || step == h.max_iters) && skip_eval_at != Some(step) {
            let t0 = Instant::now();
            let (tl, vl) = estimate_loss(&model, data, &h, step, opts.device)?;
            let eval_time = t0.elapsed().as_secs_f64();
            let attention = if opts.probe {
                // A fixed batch from its own generator: the run's batches are unchanged.
                let (x, y) = data.get_batch(
                    Split::Val,
                    &mut Rng::new(h.seed ^ PROBE_SEED),
                    h.batch_size,
                    h.block_size,
                    opts.device,
                )?;
                Some(model.probe(&x, &y))
            } else {
                None
            };
            progress.eval_seconds += eval_time;
            progress.train_loss = tl;
            progress.val_loss = vl;
            progress.total_seconds = already + started.elapsed().as_secs_f64();
            let step_time = if interval.is_empty() {
                0.0
            } else {
                interval.iter().sum::<f64>() / interval.len() as f64
            };
            let line = LogLine {
                iter: step,
                train_loss: tl,
                val_loss: vl,
                lr,
                step_time,
                step_times: std::mem::take(&mut interval),
                eval_time,
                attention,
                tokens_per_s: if step_time > 0.0 {
                    (h.batch_size * h.block_size) as f64 / step_time
                } else {
                    0.0
                },
                elapsed: progress.total_seconds,
            };
            save(&vs, &opt, &progress, rng.state)?;
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
        }
        if step >= h.max_iters {
            break;
        }
        if opts.stop_after.is_some_and(|s| step >= s) {
            progress.total_seconds = already + started.elapsed().as_secs_f64();
            save(&vs, &opt, &progress, rng.state)?;
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
        interval.push(dt);
        bar.set_position(progress.step as u64);
        bar.set_message(format!(
            "loss {loss_val:.4} {:.0} tok/s",
            (h.batch_size * h.block_size) as f64 * interval.len() as f64
                / interval.iter().sum::<f64>()
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
