//! One run of the experiment: its model file (read with folio-runtime), its training log,
//! and what the report measures on it with the runtime: samples, per-token latency and the
//! positional embedding.
use crate::log::{self, Eval};
use anyhow::{anyhow, bail, Context, Result};
use folio_runtime::file::MappedModel;
use folio_runtime::{Generator, Model, Sampler, SamplerConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a run's files are.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFiles {
    /// Short name for tables and legends.
    pub name: String,
    /// The model file.
    pub model: PathBuf,
    /// Its JSON-lines log (`BASE.log.jsonl`).
    pub log: PathBuf,
}

/// Resolves a `--run` argument: `[NAME=]PATH` where `PATH` is a model file or a run
/// directory holding `model.safetensors`. The log is `BASE.log.jsonl` beside the model
/// (`BASE` = the path without `.safetensors`, as the exporter writes it). The default
/// name is the directory's name for `DIR` or `DIR/model.safetensors`, else the file stem.
pub fn resolve(arg: &str) -> Result<RunFiles> {
    let (name, path) = match arg.split_once('=') {
        Some((n, p)) if !n.is_empty() && !n.contains('/') => {
            (Some(n.to_string()), PathBuf::from(p))
        }
        _ => (None, PathBuf::from(arg)),
    };
    let model = if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path
    };
    if !model.is_file() {
        bail!("--run {arg}: no model file {}", model.display());
    }
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    // `runs/edge/model.safetensors` is "edge"; `models/model2.q8_0.safetensors` is "model2".
    let short = stem.split('.').next().unwrap_or(&stem).to_string();
    let dir = model.parent().unwrap_or(Path::new("."));
    // The exporter's `BASE.log.jsonl`, else the short name's (`models/model2.log.jsonl`).
    let log = [format!("{stem}.log.jsonl"), format!("{short}.log.jsonl")]
        .map(|f| dir.join(f))
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| dir.join(format!("{stem}.log.jsonl")));
    let dir_name = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .filter(|_| stem == "model");
    let name = name.or(dir_name).unwrap_or(short);
    Ok(RunFiles { name, model, log })
}

/// Sampling settings of the word-accuracy and latency measurement.
#[derive(Clone, Copy, Debug)]
pub struct GenOpts {
    /// Samples per run.
    pub samples: usize,
    /// Characters per sample.
    pub chars: usize,
    /// Softmax temperature.
    pub temperature: f32,
    /// Top-k.
    pub top_k: usize,
    /// Seed of sample 0 (sample `i` uses `seed + i`).
    pub seed: u64,
}

/// Hyper-parameters read from the file (the runtime's validated config).
#[derive(Clone, Debug)]
pub struct Shape {
    /// Context length.
    pub block_size: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Heads.
    pub n_head: usize,
    /// Blocks.
    pub n_layer: usize,
}

/// Everything the report knows about one run.
pub struct Run {
    /// Files.
    pub files: RunFiles,
    /// Model shape.
    pub shape: Shape,
    /// `folio.dtype` (or "?").
    pub dtype: String,
    /// Model file size.
    pub file_bytes: u64,
    /// `folio.train`, when present.
    pub train: Option<Value>,
    /// The log (empty when there is none).
    pub log: Vec<Eval>,
    /// Generated samples (prompt not included).
    pub samples: Vec<String>,
    /// Seconds per generated token (one `Generator::next`; the first also runs the
    /// prompt), over all samples.
    pub latency: Vec<f64>,
    /// Seconds per whole sample (the lab's inference time: prompt and every token).
    pub sample_seconds: Vec<f64>,
    /// `wpe.weight` dequantised to f32, `(block_size, n_embd)` row-major.
    pub wpe: Vec<f32>,
}

impl Run {
    /// A number from `folio.train` (`a.b` for nested keys).
    pub fn meta_f64(&self, key: &str) -> Option<f64> {
        key.split('.')
            .try_fold(self.train.as_ref()?, |v, k| v.get(k))?
            .as_f64()
    }

    /// A string from `folio.train`.
    pub fn meta_str(&self, key: &str) -> Option<String> {
        let v = key
            .split('.')
            .try_fold(self.train.as_ref()?, |v, k| v.get(k))?;
        v.as_str().map(str::to_string)
    }
}

/// Loads a run and measures it: `opts.samples` samples of `opts.chars` characters each,
/// every generator step timed.
pub fn load(files: RunFiles, opts: &GenOpts) -> Result<Run> {
    let mapped = MappedModel::open(&files.model)
        .with_context(|| format!("opening {}", files.model.display()))?;
    let model = mapped
        .model()
        .map_err(|e| anyhow!("{}: {e}", files.model.display()))?;
    let c = model.config();
    let shape = Shape {
        block_size: c.block_size,
        n_embd: c.n_embd,
        n_head: c.n_head,
        n_layer: c.n_layer,
    };
    let train = match model.header().metadata("folio.train") {
        Some(raw) => {
            Some(log::parse_train_meta(raw).with_context(|| files.model.display().to_string())?)
        }
        None => None,
    };
    let dtype = match model.header().metadata("folio.dtype") {
        Some(raw) => serde_json::from_str::<String>(&format!("\"{raw}\""))
            .unwrap_or_else(|_| raw.to_string()),
        None => "?".to_string(),
    };
    let log = if files.log.is_file() {
        let text = std::fs::read_to_string(&files.log)
            .with_context(|| format!("reading {}", files.log.display()))?;
        log::parse_log(&text).with_context(|| files.log.display().to_string())?
    } else {
        eprintln!(
            "report: {}: no log {} (no loss or training-time plots for it)",
            files.name,
            files.log.display()
        );
        Vec::new()
    };
    let wpe = positional_embedding(&model);
    let (samples, latency) = generate(&model, opts)?;
    let sample_seconds = latency
        .chunks(opts.chars.max(1))
        .map(|c| c.iter().sum())
        .collect();
    let file_bytes = std::fs::metadata(&files.model)?.len();
    Ok(Run {
        files,
        shape,
        dtype,
        file_bytes,
        train,
        log,
        samples,
        latency,
        sample_seconds,
        wpe,
    })
}

/// `wpe.weight` as f32 `(block_size, n_embd)`, whatever its encoding.
pub fn positional_embedding(model: &Model<'_>) -> Vec<f32> {
    let (t, c) = (model.config().block_size, model.config().n_embd);
    let mut out = vec![0.0f32; t * c]; // (block_size, n_embd)
    for (r, row) in out.chunks_exact_mut(c).enumerate() {
        model.weights().wpe.row(r, row);
    }
    out
}

/// Generates the samples, timing each token. The prompt is a newline (token 0 when the
/// vocabulary has none), as nanoGPT's `sample.py` starts.
pub fn generate(model: &Model<'_>, opts: &GenOpts) -> Result<(Vec<String>, Vec<f64>)> {
    let err = |e: folio_runtime::Error| anyhow!("runtime: {e}");
    let tok = model.tokenizer();
    let start = tok.token('\n').unwrap_or(0);
    let mut mem = vec![0u8; model.session_bytes()];
    let mut samples = Vec::with_capacity(opts.samples);
    let mut latency = Vec::with_capacity(opts.samples * opts.chars);
    for i in 0..opts.samples {
        let session = model.session(&mut mem).map_err(err)?;
        let sampler = Sampler::new(SamplerConfig {
            temperature: opts.temperature,
            top_k: opts.top_k,
            top_p: 1.0,
            seed: opts.seed.wrapping_add(i as u64),
        })
        .map_err(err)?;
        let mut gen = Generator::new(session, sampler);
        let mut text = String::with_capacity(opts.chars);
        for k in 0..opts.chars {
            let t0 = Instant::now();
            if k == 0 {
                // The prompt's forward belongs to the first token (`next` feeds the
                // previous token, so every token's time then holds one forward pass).
                gen.prompt(&[start]).map_err(err)?;
            }
            let t = gen.next().map_err(err)?;
            latency.push(t0.elapsed().as_secs_f64());
            text.push(tok.decode(t).map_err(err)?);
        }
        samples.push(text);
    }
    Ok((samples, latency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments_resolve_to_model_log_and_name() {
        let dir = std::env::temp_dir().join(format!("folio-report-resolve-{}", std::process::id()));
        let run = dir.join("edge");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("model.safetensors"), b"x").unwrap();
        std::fs::write(run.join("other.q4.safetensors"), b"x").unwrap();
        let a = resolve(run.to_str().unwrap()).unwrap();
        assert_eq!(a.name, "edge");
        assert_eq!(a.model, run.join("model.safetensors"));
        assert_eq!(a.log, run.join("model.log.jsonl"));
        let b = resolve(run.join("other.q4.safetensors").to_str().unwrap()).unwrap();
        assert_eq!(b.name, "other");
        assert_eq!(b.log, run.join("other.q4.log.jsonl"));
        std::fs::write(run.join("other.log.jsonl"), b"").unwrap();
        let b = resolve(run.join("other.q4.safetensors").to_str().unwrap()).unwrap();
        assert_eq!(b.log, run.join("other.log.jsonl"));
        let c = resolve(&format!(
            "q4={}",
            run.join("other.q4.safetensors").display()
        ))
        .unwrap();
        assert_eq!(c.name, "q4");
        assert!(resolve(dir.join("missing").to_str().unwrap()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
