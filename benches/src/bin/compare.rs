//! Per-token decode latency of folio against eager PyTorch and the memory-bandwidth bound.
//!
//! ```text
//! cargo run --release -p folio-benches --bin compare -- MODEL... [-n 256] [--python .venv/bin/python]
//! ```
//! For each model: folio's p50 decode latency (one thread, like `folio bench`), PyTorch's
//! (benches/py/pytorch_decode.py: the same GPT in eager mode with a KV cache, one thread), and
//! the bound `weight bytes / DRAM read bandwidth`: the time one token would take if every
//! weight byte came from memory once at the measured streaming rate. Models whose weights fit
//! in the last-level cache can beat that bound; it says how far a kernel is from being
//! memory-bound, not a floor. Prints a markdown table.
use anyhow::{bail, Context, Result};
use clap::Parser;
use folio_runtime::file::MappedModel;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "folio vs PyTorch vs the memory-bandwidth bound, per-token decode")]
struct Args {
    /// folio model files.
    models: Vec<PathBuf>,
    /// Decode steps timed per model.
    #[arg(short, default_value_t = 256)]
    n: usize,
    /// Python with torch 2.11.0 (made by .ci/setup-torch.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Skip the PyTorch column.
    #[arg(long)]
    no_pytorch: bool,
}

/// Streaming read bandwidth in bytes/s: best of 5 sums over a 512 MiB buffer.
fn dram_bandwidth() -> f64 {
    let words = vec![1u64; 64 << 20]; // 512 MiB
    (0..5)
        .map(|_| {
            let t = Instant::now();
            // Four independent sums so the loop is bound by loads, not by one add chain.
            let mut acc = [0u64; 4];
            for c in words.chunks_exact(4) {
                for (a, w) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(*w);
                }
            }
            black_box(acc);
            (words.len() * 8) as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// folio's p50 µs per decoded token, cycling positions through the window.
fn folio_p50(path: &PathBuf, n: usize) -> Result<(f64, usize, String)> {
    let file = MappedModel::open(path).with_context(|| format!("opening {}", path.display()))?;
    let model = file
        .model()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut mem = vec![0u8; model.session_bytes()];
    let mut session = model
        .session(&mut mem)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t_max = model.config().block_size;
    let mut token = 0u32;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 8 {
        let t = Instant::now();
        let logits = session
            .forward(token, i % t_max)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let next = folio_kernels::argmax(logits) as u32;
        let dt = t.elapsed().as_secs_f64() * 1e6;
        token = next;
        if i >= 8 {
            times.push(dt);
        }
    }
    let label = model.metadata("folio.dtype").unwrap_or("?").to_string();
    Ok((median(&mut times), model.weight_bytes(), label))
}

fn pytorch_p50(python: &PathBuf, path: &PathBuf, n: usize) -> Result<f64> {
    let out = Command::new(python)
        .args([
            "benches/py/pytorch_decode.py",
            "--json",
            "-n",
            &n.to_string(),
        ])
        .arg(path)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "pytorch_decode.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["p50_us"]
        .as_f64()
        .context("no p50_us in pytorch_decode.py output")
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.models.is_empty() {
        bail!("give at least one model file");
    }
    let bw = dram_bandwidth();
    println!(
        "DRAM read bandwidth: {:.1} GB/s (best of 5, 512 MiB sum)\n",
        bw / 1e9
    );
    println!(
        "| model | encoding | weight bytes | folio p50 µs | PyTorch p50 µs | bandwidth bound µs |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for path in &args.models {
        let (p50, bytes, label) = folio_p50(path, args.n)?;
        let torch = if args.no_pytorch {
            "-".to_string()
        } else {
            format!("{:.1}", pytorch_p50(&args.python, path, args.n)?)
        };
        let bound = bytes as f64 / bw * 1e6;
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("| {name} | {label} | {bytes} | {p50:.1} | {torch} | {bound:.1} |");
    }
    Ok(())
}
