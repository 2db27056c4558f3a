//! Everything the exporter is given, checked before any work starts, one step per kind of
//! input:
//!
//! - **input files**: through [`crate::input`] (regular files only, no longer than a cap);
//! - **model shapes** ([`shape`]): positive sizes, `n_embd % n_head == 0`, within
//!   folio-runtime's capacities, for a training run and for a master being quantised;
//! - **hyper-parameters** ([`hyper`]): every field in range, the context window shorter than
//!   the data splits, and a training-memory estimate that fits the device ([`memory`]);
//! - **output paths** ([`out_paths`]): named files that are not directories or devices;
//! - **the run lock** ([`lock_run`]): `BASE.lock`, held for the whole run, so two runs on
//!   one `--out` cannot interleave their checkpoints and logs;
//! - **a resumed run** ([`resume`]): the checkpoint's hyper-parameters must match every one
//!   given on the command line.
use crate::data::Dataset;
use crate::export::{Master, RunPaths};
use crate::hyper::Hyper;
use crate::input::{input_file, shown};
use anyhow::{bail, Context, Result};
use folio_runtime::cli::printable;
use folio_runtime::file::file_kind;
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Device;

/// Largest safetensors header read when peeking at a checkpoint (the safetensors crate's cap).
const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most scored report tokens (`report windows × (block_size + 1)`).
const MAX_REPORT_TOKENS: u64 = 1 << 26;
/// Most libtorch threads `--threads` may ask for.
pub const MAX_THREADS: i32 = 1024;

/// A model shape the runtime can load: sizes positive and within its capacities.
pub fn shape(
    vocab_size: usize,
    block_size: usize,
    n_embd: usize,
    n_head: usize,
    n_layer: usize,
) -> Result<()> {
    let mut bad = shape_problems(block_size, n_embd, n_head, n_layer);
    if vocab_size == 0 {
        bad.push("vocab_size must be at least 1".into());
    }
    if vocab_size > folio_runtime::MAX_VOCAB {
        bad.push(format!(
            "vocab_size {vocab_size} is more than the runtime's MAX_VOCAB {}",
            folio_runtime::MAX_VOCAB
        ));
    }
    if !bad.is_empty() {
        bail!("{}", bad.join("; "));
    }
    Ok(())
}

/// What is wrong with a shape besides its vocabulary.
fn shape_problems(block_size: usize, n_embd: usize, n_head: usize, n_layer: usize) -> Vec<String> {
    let mut bad = Vec::new();
    for (name, v) in [
        ("block_size", block_size),
        ("n_embd", n_embd),
        ("n_head", n_head),
        ("n_layer", n_layer),
    ] {
        if v == 0 {
            bad.push(format!("{name} must be at least 1"));
        } else if u32::try_from(v).is_err() {
            bad.push(format!("{name} {v} does not fit the runtime's u32 sizes"));
        }
    }
    if n_layer > folio_runtime::MAX_LAYERS {
        bad.push(format!(
            "n_layer {n_layer} is more than the runtime's MAX_LAYERS {}",
            folio_runtime::MAX_LAYERS
        ));
    }
    if n_head > 0 && !n_embd.is_multiple_of(n_head) {
        bad.push(format!(
            "n_embd {n_embd} is not a multiple of n_head {n_head}"
        ));
    }
    bad
}

/// Every hyper-parameter of a run on its own: the model shape and each field's range.
pub fn hyper(h: &Hyper) -> Result<()> {
    let mut bad = shape_problems(h.block_size, h.n_embd, h.n_head, h.n_layer);
    for (name, v) in [
        ("batch_size", h.batch_size),
        ("eval_interval", h.eval_interval),
        ("eval_iters", h.eval_iters),
    ] {
        if v == 0 {
            bad.push(format!("{name} must be at least 1"));
        }
    }
    let (lr, min_lr) = (h.lr, h.min_lr);
    for (name, v, ok, interval) in [
        (
            "dropout",
            h.dropout,
            (0.0..1.0).contains(&h.dropout),
            "[0, 1)",
        ),
        ("lr", lr, lr > 0.0, "(0, inf)"),
        ("min_lr", min_lr, (0.0..=lr).contains(&min_lr), "[0, lr]"),
        (
            "weight_decay",
            h.weight_decay,
            h.weight_decay >= 0.0,
            "[0, inf)",
        ),
        ("beta1", h.beta1, (0.0..1.0).contains(&h.beta1), "[0, 1)"),
        ("beta2", h.beta2, (0.0..1.0).contains(&h.beta2), "[0, 1)"),
        ("eps", h.eps, h.eps > 0.0, "(0, inf)"),
        ("grad_clip", h.grad_clip, h.grad_clip >= 0.0, "[0, inf)"),
    ] {
        if !(v.is_finite() && ok) {
            bad.push(format!("{name} {v} is not in {interval}"));
        }
    }
    if !bad.is_empty() {
        bail!("invalid hyper-parameters: {}", bad.join("; "));
    }
    Ok(())
}

/// A valid run ([`hyper`]) against its data and device: context windows shorter than the
/// splits, a bounded quantisation report, and ([`memory`]) a training step that fits.
pub fn fits(h: &Hyper, data: &Dataset, device: Device, report_windows: usize) -> Result<()> {
    shape(
        data.vocab.len(),
        h.block_size,
        h.n_embd,
        h.n_head,
        h.n_layer,
    )?;
    let mut bad = Vec::new();
    let shortest = data.train.len().min(data.val.len());
    if h.block_size + 1 >= shortest {
        bad.push(format!(
            "block_size {} leaves no window in the {shortest}-token split (at most {})",
            h.block_size,
            shortest.saturating_sub(2)
        ));
    }
    let report_tokens = (report_windows as u64).saturating_mul(h.block_size as u64 + 1);
    if report_tokens > MAX_REPORT_TOKENS {
        bad.push(format!(
            "--report-windows {report_windows} x (block_size + 1) = {report_tokens} tokens, more than {MAX_REPORT_TOKENS}"
        ));
    }
    if !bad.is_empty() {
        bail!("{}", bad.join("; "));
    }
    memory(h, data.vocab.len(), device)
}

/// `--threads`: 0 (libtorch's default) to [`MAX_THREADS`].
pub fn threads(n: i32) -> Result<()> {
    if !(0..=MAX_THREADS).contains(&n) {
        bail!("--threads {n} is not in 0..={MAX_THREADS} (0 = libtorch's default)");
    }
    Ok(())
}

/// Bytes a training step of `h` is estimated to need: f32 parameters, gradients and the two
/// AdamW moments (`16 · params`), plus the activations kept for the backward pass,
/// `4 · batch · block · (n_layer · (30 C + 2.5 H T [+ 6 C + 4 H T with dropout]) + 4 V)`.
/// The constants are fitted to the peak RSS of CPU runs (edge, model3 with and without
/// dropout, and attention-heavy shapes), which the formula overestimates by 0 to 30%.
pub fn training_bytes(h: &Hyper, vocab_size: usize) -> f64 {
    let (b, t, c, nh, l, v) = (
        h.batch_size as f64,
        h.block_size as f64,
        h.n_embd as f64,
        h.n_head as f64,
        h.n_layer as f64,
        vocab_size as f64,
    );
    let params = v * c
        + t * c
        + l * (12.0 * c * c + 13.0 * c)
        + 2.0 * c
        + if h.tied_embeddings { 0.0 } else { v * c };
    let mut per_layer = 30.0 * c + 2.5 * nh * t;
    if h.dropout > 0.0 {
        per_layer += 6.0 * c + 4.0 * nh * t;
    }
    16.0 * params + 4.0 * b * t * (l * per_layer + 4.0 * v)
}

/// Refuse a run whose [`training_bytes`] estimate does not fit: on the CPU the kernel's
/// `MemAvailable`, on CUDA what the device can allocate (probed with one allocation of that
/// size, released at once).
pub fn memory(h: &Hyper, vocab_size: usize, device: Device) -> Result<()> {
    let need = training_bytes(h, vocab_size);
    let what = || {
        format!(
            "training batch_size {} x block_size {} (n_embd {}, n_head {}, n_layer {}) needs about {} by estimate",
            h.batch_size,
            h.block_size,
            h.n_embd,
            h.n_head,
            h.n_layer,
            human(need)
        )
    };
    match device {
        Device::Cpu => {
            if let Some(avail) = mem_available() {
                if need > avail as f64 {
                    bail!(
                        "{}, more than the {} of memory available (MemAvailable); lower batch_size or block_size",
                        what(),
                        human(avail as f64)
                    );
                }
            }
        }
        d => {
            if need >= i64::MAX as f64 {
                bail!("{}, more than any {d:?} device has", what());
            }
            let probe = tch::Tensor::f_empty([need as i64], (tch::Kind::Uint8, d));
            if let Err(e) = probe {
                let first = e.to_string();
                let first = first.lines().next().unwrap_or("allocation failed");
                bail!(
                    "{}, more than {d:?} can allocate ({first}); lower batch_size or block_size",
                    what()
                );
            }
        }
    }
    Ok(())
}

/// `MemAvailable` of `/proc/meminfo` in bytes (None where there is none).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Bytes in binary units.
fn human(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// Output files: each must have a file name and, if it exists, be a regular file (a
/// directory or a device there would fail only at the end of training).
pub fn out_paths(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if p.file_name().is_none() || p.as_os_str().to_string_lossy().ends_with('/') {
            bail!("--out {}: not a file name", shown(p));
        }
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_file() => {}
            Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(p) {
                Ok(t) if !t.is_file() => bail!(
                    "{} is a link to {}, not a regular file",
                    shown(p),
                    file_kind(&t)
                ),
                _ => {}
            },
            Ok(m) => bail!(
                "{} exists and is {}, not a regular file",
                shown(p),
                file_kind(&m)
            ),
            Err(_) => {}
        }
    }
    Ok(())
}

/// An exclusive lock on `BASE.lock`, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

/// `BASE.lock` beside the run's files.
pub fn lock_path(paths: &RunPaths) -> PathBuf {
    let s = paths.out.to_string_lossy();
    let base = s.strip_suffix(".safetensors").unwrap_or(&s);
    PathBuf::from(format!("{base}.lock"))
}

/// Create the output directory and take the run's lock (`BASE.lock`, kept afterwards:
/// removing it could let a third run lock a different file while the second still waits).
/// A second run on the same `--out` fails here with a clear error instead of interleaving
/// its checkpoints and log with the first.
pub fn lock_run(paths: &RunPaths) -> Result<RunLock> {
    let path = lock_path(paths);
    out_paths(&[&path])?;
    if let Some(dir) = paths.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", shown(dir)))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create the run lock {}", shown(&path)))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file, path }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another run holds {}: two runs on one --out would overwrite each other's checkpoint and log",
            shown(&path)
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", shown(&path)))
        }
    }
}

/// The hyper-parameters stored in a checkpoint, read from its header alone.
pub fn checkpoint_hyper(path: &Path) -> Result<Hyper> {
    let (mut file, len) = input_file(path, u64::MAX)
        .with_context(|| format!("--resume: checkpoint {}", shown(path)))?;
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .with_context(|| format!("--resume: checkpoint {} is truncated", shown(path)))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n > len.saturating_sub(8) {
        bail!(
            "--resume: checkpoint {} has a bad header length {n}",
            shown(path)
        );
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)?;
    let header: Value = serde_json::from_slice(&header)
        .with_context(|| format!("--resume: checkpoint {} header", shown(path)))?;
    let meta = header["__metadata__"]["folio.checkpoint"]
        .as_str()
        .with_context(|| format!("--resume: {} is not a folio checkpoint", shown(path)))?;
    let meta: Value = serde_json::from_str(meta)?;
    serde_json::from_value(meta["hyper"].clone())
        .with_context(|| format!("--resume: checkpoint {} hyper-parameters", shown(path)))
}

/// A resumed run continues with the checkpoint's hyper-parameters: refuse when any value
/// given on the command line (`given`: the names of the flags set; `preset` means every
/// field of `requested`) differs from the checkpoint's, naming each difference.
pub fn resume(checkpoint: &Hyper, requested: &Hyper, given: &[String]) -> Result<()> {
    let (ck, rq) = (
        serde_json::to_value(checkpoint)?,
        serde_json::to_value(requested)?,
    );
    let (Value::Object(ck), Value::Object(rq)) = (ck, rq) else {
        bail!("hyper-parameters are not a JSON object");
    };
    let all = given.iter().any(|g| g == "preset");
    let diffs: Vec<String> = rq
        .iter()
        .filter(|(k, _)| all || given.iter().any(|g| g == *k))
        .filter(|(k, v)| ck.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k} {} (checkpoint) vs {v} (asked)",
                ck.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if !diffs.is_empty() {
        bail!(
            "--resume: the checkpoint's run differs from this command: {}; resume without those flags to continue it, or choose another --out",
            diffs.join(", ")
        );
    }
    Ok(())
}

/// A master being quantised: its shape must be one the runtime loads.
pub fn master(m: &Master, path: &Path) -> Result<()> {
    let c = &m.cfg;
    shape(c.vocab_size, c.block_size, c.n_embd, c.n_head, c.n_layer)
        .with_context(|| format!("{}: folio.config", shown(path)))?;
    if c.vocab_size != m.vocab.len() {
        bail!(
            "{}: folio.config vocab_size {} but folio.vocab has {} entries",
            shown(path),
            c.vocab_size,
            m.vocab.len()
        );
    }
    Ok(())
}

/// Every weight of `m` is finite: a NaN or infinite value would make a file whose logits
/// are not finite, so nothing is written.
pub fn finite(m: &Master) -> Result<()> {
    let bad: Vec<String> = m
        .tensors
        .iter()
        .filter_map(|(name, (_, data))| {
            let n = data.iter().filter(|v| !v.is_finite()).count();
            (n > 0).then(|| format!("{} ({n})", printable(name.chars())))
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "NaN or infinite weights in {}: refusing to write a model whose logits are not finite",
            bad.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_outside_the_runtime_are_refused_with_every_reason() {
        assert!(shape(65, 64, 128, 4, 4).is_ok());
        let e = shape(65, 0, 100, 3, 17).unwrap_err().to_string();
        for part in [
            "block_size must be at least 1",
            "n_layer 17 is more than the runtime's MAX_LAYERS 16",
            "n_embd 100 is not a multiple of n_head 3",
        ] {
            assert!(e.contains(part), "{e}");
        }
        assert!(shape(300, 8, 32, 4, 1)
            .unwrap_err()
            .to_string()
            .contains("MAX_VOCAB"));
        assert!(shape(65, 8, 32, 0, 1)
            .unwrap_err()
            .to_string()
            .contains("n_head must be at least 1"));
    }

    #[test]
    fn every_out_of_range_hyper_parameter_is_named() {
        let edge = Hyper::preset("edge").unwrap();
        assert!(hyper(&edge).is_ok());
        for p in ["model1", "model2", "model3"] {
            assert!(hyper(&Hyper::preset(p).unwrap()).is_ok(), "{p}");
        }
        let bad = Hyper {
            dropout: 1.5,
            lr: f64::NAN,
            beta2: 1.0,
            eps: 0.0,
            grad_clip: f64::INFINITY,
            batch_size: 0,
            eval_interval: 0,
            n_layer: 17,
            ..edge.clone()
        };
        let e = hyper(&bad).unwrap_err().to_string();
        for part in [
            "dropout 1.5 is not in [0, 1)",
            "lr NaN is not in (0, inf)",
            "beta2 1 is not in [0, 1)",
            "eps 0 is not in (0, inf)",
            "grad_clip inf is not in [0, inf)",
            "batch_size must be at least 1",
            "eval_interval must be at least 1",
            "n_layer 17 is more than the runtime's MAX_LAYERS 16",
        ] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
        for dropout in [f64::NAN, -0.1, 1.0] {
            assert!(
                hyper(&Hyper {
                    dropout,
                    ..edge.clone()
                })
                .is_err(),
                "{dropout}"
            );
        }
        let e = hyper(&Hyper {
            min_lr: 1.0,
            ..edge.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("min_lr 1 is not in [0, lr]"), "{e}");
    }

    #[test]
    fn non_finite_weights_are_named() {
        let cfg = folio_runtime::Config {
            vocab_size: 2,
            block_size: 2,
            n_embd: 32,
            n_head: 1,
            n_layer: 1,
            layer_norm_eps: 1e-5,
            tied_embeddings: true,
        };
        let mut m = Master {
            cfg,
            vocab: crate::data::Vocab {
                chars: vec!['a', 'b'],
            },
            tensors: Default::default(),
            train: Value::Null,
        };
        m.tensors.insert("ok".into(), (vec![2], vec![1.0, -2.0]));
        assert!(finite(&m).is_ok());
        m.tensors.insert(
            "h.0.x".into(),
            (vec![3], vec![f32::NAN, 0.0, f32::INFINITY]),
        );
        let e = finite(&m).unwrap_err().to_string();
        assert!(e.contains("h.0.x (2)") && !e.contains("ok ("), "{e}");
    }

    #[test]
    fn the_estimate_grows_with_the_attention_and_dropout() {
        let h = Hyper::preset("model3").unwrap();
        let base = training_bytes(
            &Hyper {
                dropout: 0.0,
                ..h.clone()
            },
            65,
        );
        // model3 measured 3.43 GB peak RSS without dropout (about 0.15 GB of it libtorch).
        assert!((3.2e9..4.5e9).contains(&base), "{base}");
        assert!(training_bytes(&h, 65) > base);
        let long = Hyper {
            block_size: 2 * h.block_size,
            dropout: 0.0,
            ..h.clone()
        };
        assert!(training_bytes(&long, 65) > 2.0 * base);
        let huge = Hyper {
            block_size: 20_000,
            ..Hyper::preset("edge").unwrap()
        };
        assert!(training_bytes(&huge, 65) > 1e12);
    }

    #[test]
    fn resume_names_each_differing_field() {
        let ck = Hyper::preset("model1").unwrap();
        let asked = Hyper {
            batch_size: 99,
            ..Hyper::preset("edge").unwrap()
        };
        // Nothing given: the checkpoint's run continues.
        assert!(resume(&ck, &asked, &[]).is_ok());
        // A given flag that matches is fine; one that differs is named.
        let same = Hyper {
            batch_size: ck.batch_size,
            ..asked.clone()
        };
        assert!(resume(&ck, &same, &["batch_size".into()]).is_ok());
        let e = resume(&ck, &asked, &["batch_size".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_size 8 (checkpoint) vs 99 (asked)"), "{e}");
        // --preset compares the whole preset.
        let e = resume(&ck, &Hyper::preset("edge").unwrap(), &["preset".into()])
            .unwrap_err()
            .to_string();
        for f in ["preset", "block_size", "n_embd", "max_iters"] {
            assert!(e.contains(f), "{e}");
        }
    }
}
