//! `exporter`: train folio's character-level GPT on Tiny Shakespeare and export it.
//!
//! ```text
//! exporter train [--preset edge|model1|model2|model3] [--out model.safetensors] [--dtype q8_0]
//! exporter quantize model.f32.safetensors --dtype q4_0 --out model.q4.safetensors
//! exporter convert old.safetensors --out new.safetensors
//! ```
//! `train --out BASE.safetensors` writes `BASE.safetensors` (the `--dtype` encoding),
//! `BASE.f32.safetensors` (the f32 master, for `quantize`), `BASE.ckpt.safetensors`
//! (checkpoint, for `--resume`) and `BASE.log.jsonl` (one JSON line per evaluation), and
//! holds `BASE.lock` for the run (a second run on the same `--out` is refused).
//!
//! Every input is checked before work starts (`folio_exporter::validate`). Errors print one
//! line, `exporter: error: ...`, and exit with status 1 (2 for bad command-line syntax).
//! `quantize` and `convert` read format 1 files too, and write format 2.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use folio_exporter::checkpoint::to_f32;
use folio_exporter::data::{self, Dataset};
use folio_exporter::export::{self, Master, RunPaths};
use folio_exporter::hyper::Hyper;
use folio_exporter::input;
use folio_exporter::model::Mode;
use folio_exporter::quantize::{parse_encoding, Encoding};
use folio_exporter::report::{self, EvalSet};
use folio_exporter::train::{self, RunOpts};
use folio_exporter::validate;
use folio_runtime::cli::{self, printable};
use folio_runtime::note;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Parser)]
#[command(
    name = "exporter",
    version,
    about = "Train folio's character-level GPT with tch and export folio safetensors"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train on Tiny Shakespeare and export (f32 master + the chosen encoding).
    Train(Box<TrainArgs>),
    /// Re-export an f32 master in another encoding, without retraining.
    Quantize(QuantizeArgs),
    /// Rewrite a folio file (format 1 or 2) as format 2, every tensor in its encoding.
    Convert(ConvertArgs),
}

#[derive(Args)]
struct Common {
    /// Tiny Shakespeare text (else $FOLIO_DATA, then shared/data/ above the current
    /// directory, else a download into ~/.cache/folio); its sha256 is always checked.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Val windows the quantisation report scores, block_size positions each (0 = 64, or
    /// more for short blocks so that at least 4096 positions are scored).
    #[arg(long, default_value_t = 0)]
    report_windows: usize,
    /// libtorch intra-op threads (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

#[derive(Args)]
struct TrainArgs {
    /// Output model file; its siblings BASE.f32/.ckpt.safetensors and BASE.log.jsonl are written beside it.
    #[arg(long, default_value = "model.safetensors")]
    out: PathBuf,
    /// Encoding of --out: f32, f16, q8_0 or q4_0 (quantised files keep 1-D tensors F32 and wpe F16).
    #[arg(long, default_value = "q8_0", value_parser = parse_encoding)]
    dtype: Encoding,
    /// Hyper-parameter preset: edge (about 3 min on 2 CPU cores, the default), model1,
    /// model2, model3.
    #[arg(long)]
    preset: Option<String>,
    /// auto (CUDA when available), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Continue the run whose checkpoint is BASE.ckpt.safetensors (its hyper-parameters are used).
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps, leaving the checkpoint (as if killed; for tests).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// At every evaluation, log what the attention softmax sees on a fixed val batch (logit
    /// variance, entropy, largest probability, gradient norm at the logits).
    #[arg(long)]
    probe_attention: bool,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    hyper: HyperArgs,
}

/// Overrides of the preset's hyper-parameters (serialised to list the ones given).
#[derive(Args, Serialize)]
struct HyperArgs {
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    block_size: Option<usize>,
    #[arg(long)]
    n_embd: Option<usize>,
    #[arg(long)]
    n_head: Option<usize>,
    #[arg(long)]
    n_layer: Option<usize>,
    /// Tie lm_head to wte (true/false).
    #[arg(long)]
    tied_embeddings: Option<bool>,
    /// Optimiser steps (also moves lr_decay_iters unless that is given).
    #[arg(long)]
    max_iters: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    min_lr: Option<f64>,
    #[arg(long)]
    warmup_iters: Option<usize>,
    #[arg(long)]
    lr_decay_iters: Option<usize>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    beta1: Option<f64>,
    #[arg(long)]
    beta2: Option<f64>,
    #[arg(long)]
    grad_clip: Option<f64>,
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long)]
    eval_interval: Option<usize>,
    #[arg(long)]
    eval_iters: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Divide attention logits by sqrt(head size) (true, nanoGPT); false trains the lab's
    /// ablation, which is not exported (the runtime always scales).
    #[arg(long)]
    attn_scale: Option<bool>,
    /// Concatenate positions (the last n_embd/4 residual dimensions) instead of adding them:
    /// the lab's ablation, trained but not exported.
    #[arg(long)]
    concat_pos: Option<bool>,
}

impl HyperArgs {
    fn apply(&self, mut h: Hyper) -> Hyper {
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { h.$f = v; })* };
        }
        if let Some(m) = self.max_iters {
            h.max_iters = m;
            h.lr_decay_iters = m;
        }
        set!(
            batch_size,
            block_size,
            n_embd,
            n_head,
            n_layer,
            tied_embeddings,
            lr,
            min_lr,
            warmup_iters
        );
        if let Some(v) = self.attn_scale {
            h.variant.attn_scale = v;
        }
        if let Some(v) = self.concat_pos {
            h.variant.concat_pos = v;
        }
        set!(
            lr_decay_iters,
            weight_decay,
            beta1,
            beta2,
            grad_clip,
            dropout,
            eval_interval,
            eval_iters,
            seed
        );
        h
    }
}

#[derive(Args)]
struct QuantizeArgs {
    /// An f32 master (BASE.f32.safetensors written by `train`).
    input: PathBuf,
    /// Target encoding.
    #[arg(long, value_parser = parse_encoding)]
    dtype: Encoding,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ConvertArgs {
    /// A folio file of format 1 or 2.
    input: PathBuf,
    /// Output file (format 2).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    // libtorch's OpenMP threads spin while they wait by default; on shared cores that burns
    // the time the other thread needs (TOOLCHAIN.md measured it). Read once, at the first
    // parallel region: set here, before any tch call and while no other thread exists; an
    // explicit setting wins.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        std::env::set_var("OMP_WAIT_POLICY", "passive");
    }
    // libtorch reports some failures (shapes, device memory) by panicking: keep those on one
    // line too, with where they came from.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        note!(
            "exporter: error: internal error at {at}: {}",
            printable(msg.replace('\n', " ").chars())
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let mut out = std::io::stdout().lock();
                return match write!(out, "{}", e.render()).and_then(|()| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&format!("cannot write to standard output: {e}"), 1),
                };
            }
            return fail(&cli::clap_line(&e), 2);
        }
    };
    let done = match cli.cmd {
        Cmd::Train(a) => run_train(*a),
        Cmd::Quantize(a) => run_quantize(a),
        Cmd::Convert(a) => run_convert(a),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}"), 1),
    }
}

/// The one error line, control characters escaped.
fn fail(msg: &str, code: u8) -> ExitCode {
    cli::fail("exporter", msg, code)
}

fn set_threads(n: i32) -> Result<()> {
    validate::threads(n)?;
    if n > 0 {
        tch::set_num_threads(n);
    }
    Ok(())
}

fn resolve_device(s: &str) -> Result<Device> {
    Ok(match s {
        "cpu" => Device::Cpu,
        "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
        "cuda" => bail!(
            "--device cuda: CUDA is not available (needs a CUDA libtorch and a build with `--features cuda`)"
        ),
        "auto" => Device::cuda_if_available(),
        _ => bail!("--device {s:?}: expected auto, cpu or cuda"),
    })
}

fn load_data(path: Option<&Path>) -> Result<Dataset> {
    let text = data::load_text(path)?;
    note!(
        "data: {} ({} bytes, sha256 ok)",
        text.path.display(),
        text.text.len()
    );
    Dataset::new(&text.text)
}

fn report_windows(c: &Common, block_size: usize) -> usize {
    match c.report_windows {
        0 => 64.max(4096usize.div_ceil(block_size.max(1))),
        n => n,
    }
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn run_train(a: TrainArgs) -> Result<()> {
    set_threads(a.common.threads)?;
    let device = resolve_device(&a.device)?;
    let paths = RunPaths::new(&a.out);
    validate::out_paths(&[
        &paths.out,
        &paths.master,
        &paths.checkpoint,
        &paths.log,
        &paths.train_json,
    ])?;
    let requested = a
        .hyper
        .apply(Hyper::preset(a.preset.as_deref().unwrap_or("edge"))?);
    // Resuming continues the checkpoint's run: every flag given must agree with it.
    let effective = if a.resume {
        let ck = validate::checkpoint_hyper(&paths.checkpoint)?;
        let mut given: Vec<String> = match serde_json::to_value(&a.hyper)? {
            Value::Object(m) => m
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
                .collect(),
            _ => Vec::new(),
        };
        if a.preset.is_some() {
            given.push("preset".into());
        }
        validate::resume(&ck, &requested, &given)?;
        ck
    } else {
        requested.clone()
    };
    validate::hyper(&effective)?;
    let data = load_data(a.common.data.as_deref())?;
    let windows = report_windows(&a.common, effective.block_size);
    validate::fits(&effective, &data, device, windows)?;
    let _lock = validate::lock_run(&paths)?;
    let hyper = requested;
    let opts = RunOpts {
        hyper,
        device,
        checkpoint: &paths.checkpoint,
        log: &paths.log,
        resume: a.resume,
        stop_after: a.stop_after,
        probe: a.probe_attention,
    };
    let done = train::train(&data, &opts)?;
    let h = done.hyper.clone();
    if done.progress.step < h.max_iters {
        note!(
            "stopped at step {} of {}; checkpoint {}",
            done.progress.step,
            h.max_iters,
            paths.checkpoint.display()
        );
        return Ok(());
    }
    let p = &done.progress;
    let mut tensors = BTreeMap::new();
    for (name, t) in done.vs.variables() {
        let shape = t.size().iter().map(|&d| d as usize).collect();
        tensors.insert(name, (shape, to_f32(&t)?));
    }
    let mut train_meta = serde_json::to_value(&h)?;
    let extra = json!({
        "device": format!("{device:?}").to_lowercase(),
        "threads": tch::get_num_threads(),
        "data_sha256": data.sha256,
        "iters": p.step,
        "train_loss": p.train_loss,
        "val_loss": p.val_loss,
        "total_seconds": p.total_seconds,
        "train_seconds": p.train_seconds,
        "eval_seconds": p.eval_seconds,
        "n_params": folio_exporter::model::n_params(&done.vs),
        "git_rev": git_rev(),
        "exporter": env!("CARGO_PKG_VERSION"),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut train_meta, extra) {
        m.extend(e);
    }
    export::write_atomic(
        &paths.train_json,
        serde_json::to_string_pretty(&train_meta)?.as_bytes(),
    )?;
    if !h.variant.exportable() {
        note!(
            "trained {} steps: train {:.4}, val {:.4}; a training-only variant ({:?}), so no model file: wrote {}, {} and {}",
            p.step,
            p.train_loss,
            p.val_loss,
            h.variant,
            paths.log.display(),
            paths.train_json.display(),
            paths.checkpoint.display()
        );
        return Ok(());
    }
    let master = Master {
        cfg: done.model.cfg,
        vocab: data.vocab.clone(),
        tensors,
        train: train_meta,
    };
    let set = EvalSet::new(
        &data,
        report_windows(&a.common, master.cfg.block_size),
        master.cfg.block_size,
    );
    let tch_loss = tch_window_loss(&done.model, &set, device)?;
    export_with_report(
        &master,
        a.dtype,
        &set,
        Some(tch_loss),
        Some(&paths.master),
        &a.out,
    )?;
    note!(
        "trained {} steps in {:.1}s (train {:.1}s, eval {:.1}s): train {:.4}, val {:.4}; wrote {} and {}",
        p.step,
        p.total_seconds,
        p.train_seconds,
        p.eval_seconds,
        p.train_loss,
        p.val_loss,
        a.out.display(),
        paths.master.display()
    );
    Ok(())
}

/// The tch f32 model's loss on the report windows (the reference the runtime's f32 number
/// should match).
fn tch_window_loss(
    model: &folio_exporter::model::Gpt,
    set: &EvalSet,
    device: Device,
) -> Result<f64> {
    let (mut total, mut count) = (0.0, 0usize);
    for w in &set.windows {
        let ids: Vec<i64> = w.iter().map(|&t| t as i64).collect();
        let n = ids.len() as i64 - 1;
        let x = Tensor::from_slice(&ids[..n as usize])
            .view([1, n])
            .to_device(device);
        let y = Tensor::from_slice(&ids[1..]).view([1, n]).to_device(device);
        let l = tch::no_grad(|| model.loss(&x, &y, Mode::default()))
            .to_kind(Kind::Double)
            .double_value(&[]);
        total += l * n as f64;
        count += n as usize;
    }
    Ok(total / count.max(1) as f64)
}

/// Writes `master` (when `master_path` is given) and `out` in encoding `target`, with the
/// runtime's quantisation report printed and stored in `folio.train.quantization`.
fn export_with_report(
    master: &Master,
    target: Encoding,
    set: &EvalSet,
    tch_loss: Option<f64>,
    master_path: Option<&Path>,
    out: &Path,
) -> Result<()> {
    validate::finite(master)?;
    let t0 = Instant::now();
    let f32_plan = master.default_plan(Encoding::F32);
    let f32_bytes = master.to_bytes(&f32_plan, "f32", &master.train)?;
    let f32_loss = report::runtime_loss(&f32_bytes, set)?;
    let (plan, rep) =
        report::choose_plan(master, target, set, f32_loss, report::tolerance(target))?;
    let mut rep_json = serde_json::to_value(&rep)?;
    if let (Some(l), Value::Object(m)) = (tch_loss, &mut rep_json) {
        m.insert("tch_f32_val_loss".into(), json!(l));
    }
    let mut train = master.train.clone();
    if let Value::Object(m) = &mut train {
        m.insert("quantization".into(), rep_json);
    }
    if let Some(mp) = master_path {
        let mut mtrain = master.train.clone();
        if let Value::Object(m) = &mut mtrain {
            m.insert(
                "quantization".into(),
                json!({"f32_val_loss": f32_loss, "windows": set.windows.len()}),
            );
        }
        master.write(mp, &f32_plan, "f32", &mtrain)?;
    }
    master.write(out, &plan, &rep.dtype, &train)?;
    let tch = tch_loss
        .map(|l| format!(" (tch f32 {l:.4})"))
        .unwrap_or_default();
    note!(
        "quantisation report ({} val windows, {} positions, by folio-runtime, {:.1}s): f32 {:.4}{tch}, {} {:.4} ({:+.3}%, target +{:.1}%{})",
        rep.windows,
        rep.positions,
        t0.elapsed().as_secs_f64(),
        rep.f32_val_loss,
        rep.dtype,
        rep.val_loss,
        rep.delta_pct,
        rep.target_pct,
        if rep.within_target { ", ok" } else { ", MISSED" }
    );
    if !rep.promoted.is_empty() {
        note!("  kept at higher precision: {:?}", rep.promoted);
    }
    Ok(())
}

fn run_quantize(a: QuantizeArgs) -> Result<()> {
    set_threads(a.common.threads)?;
    validate::out_paths(&[&a.out])?;
    input::input_file(&a.input, u64::MAX)
        .with_context(|| format!("reading {}", a.input.display()))?;
    let loaded = export::read(&a.input)?;
    if !loaded.is_f32() {
        bail!(
            "{} stores {} tensors: quantize from the f32 master (BASE.f32.safetensors)",
            a.input.display(),
            loaded.dtype
        );
    }
    let master = loaded.master;
    validate::master(&master, &a.input)?;
    let data = load_data(a.common.data.as_deref())?;
    if data.vocab != master.vocab {
        bail!("{}: its vocabulary is not this data's", a.input.display());
    }
    let set = EvalSet::new(
        &data,
        report_windows(&a.common, master.cfg.block_size),
        master.cfg.block_size,
    );
    export_with_report(&master, a.dtype, &set, None, None, &a.out)?;
    note!("wrote {}", a.out.display());
    Ok(())
}

fn run_convert(a: ConvertArgs) -> Result<()> {
    let loaded = export::read(&a.input)?;
    let converted = export::convert(&loaded)?;
    export::write_atomic(&a.out, &converted.bytes)?;
    note!(
        "wrote {} (format 2, from format {}): {} tensors, {} values re-encoded unchanged{}",
        a.out.display(),
        loaded.format,
        loaded.plan.len(),
        converted.values,
        match converted.changed {
            0 => String::new(),
            n => format!(", {n} changed by at most {:e}", converted.max_change),
        }
    );
    Ok(())
}
