//! folio against llama.cpp, eager PyTorch and the read-bandwidth roofline: per-token decode
//! at one thread, paired within rounds.
//!
//! ```text
//! compare RUN_DIR... [--rounds 5] [--encodings f32,q8_0,q4_0] [--no-llama] [--no-pytorch]
//! compare --callgrind RUN_DIR... [--encodings q8_0,q4_0]
//! ```
//! A RUN_DIR holds `model.{f32,q8_0,q4_0}.safetensors`. Each model decodes N = block_size - 8
//! tokens (greedy, from token 0, from an empty cache) with each tool, back to back in a round:
//! - folio: the runtime in this process; its prompt rate is `Generator::prompt` over N tokens;
//! - llama.cpp: `benches/py/llama_decode.py` (llama-cpp-python, one thread, llama.cpp's own
//!   eval timings) on the GGUF `benches/py/to_gguf.py` writes; its `pp` is one batch of N;
//! - eager PyTorch: `benches/py/pytorch_decode.py` on the f32 file, once per shape (it has no
//!   int8 decode on CPU: a quantised file would run the same f32 computation);
//! - the roofline: weight bytes / the single-core read bandwidth of a buffer of that many
//!   bytes (`folio_benches::read_bandwidth`), measured in the same round, so cache-resident
//!   weights get the cache's rate.
//!
//! The table gives the median over rounds of each tool's median µs per token and of the
//! per-round ratios. Before the rounds each GGUF is checked against folio: logits over a
//! prompt (max |diff| / max |logit|) and greedy text, which must be identical in f32.
//!
//! `--callgrind` counts instructions per decoded token under `valgrind --tool=callgrind`
//! instead: repeatable on a busy machine, for tracking regressions.
use anyhow::{bail, Context, Result};
use clap::Parser;
use folio_benches::read_bandwidth;
use folio_runtime::file::MappedModel;
use folio_runtime::{Generator, Model, Sampler, SamplerConfig, MAX_CHUNK};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "folio vs llama.cpp vs eager PyTorch vs the read-bandwidth roofline, one thread")]
struct Args {
    /// Run directories holding model.{f32,q8_0,q4_0}.safetensors.
    dirs: Vec<PathBuf>,
    /// Rounds; every tool runs every model once per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Encodings to run.
    #[arg(long, value_delimiter = ',', default_value = "f32,q8_0,q4_0")]
    encodings: Vec<String>,
    /// Python with torch, llama-cpp-python and gguf (.ci/setup-torch.sh, .ci/setup-compare.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Skip llama.cpp (and the GGUF check).
    #[arg(long)]
    no_llama: bool,
    /// Skip eager PyTorch.
    #[arg(long)]
    no_pytorch: bool,
    /// Count instructions per token under callgrind instead of timing.
    #[arg(long)]
    callgrind: bool,
    /// (internal) decode one model for callgrind.
    #[arg(long, hide = true)]
    decode_only: Option<PathBuf>,
}

/// The start of the faithfulness check's prompt (Tiny Shakespeare's first lines).
const CHECK_TEXT: &str =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n";
/// Decode steps before timing, to warm the caches.
const WARMUP: usize = 8;

/// One model file of a run directory.
struct Case {
    shape: String,
    enc: String,
    path: PathBuf,
    gguf: PathBuf,
    map: MappedModel,
    /// One per round.
    samples: Vec<Sample>,
    /// Matrices llama.cpp repacked at load.
    repacked: u64,
}

impl Case {
    fn model(&self) -> Result<Model<'_>> {
        self.map
            .model()
            .with_context(|| format!("{} is not a valid folio model", self.path.display()))
    }

    /// Tokens decoded per run: block_size - 8.
    fn tokens(&self) -> Result<usize> {
        Ok(self
            .model()?
            .config()
            .block_size
            .saturating_sub(WARMUP)
            .max(1))
    }
}

/// A run directory: one shape in several encodings.
struct Shape {
    f32: Option<PathBuf>,
    cases: Vec<Case>,
}

fn shapes(args: &Args) -> Result<Vec<Shape>> {
    let mut out = Vec::new();
    for dir in &args.dirs {
        let base = dir
            .file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let name = base.strip_prefix("cmp-").unwrap_or(&base).to_string();
        let file = |enc: &str| dir.join(format!("model.{enc}.safetensors"));
        let mut cases = Vec::new();
        for enc in &args.encodings {
            let path = file(enc);
            let map = MappedModel::open(&path)
                .with_context(|| format!("cannot open {} (see `make compare`)", path.display()))?;
            cases.push(Case {
                shape: name.clone(),
                enc: enc.clone(),
                gguf: path.with_extension("gguf"),
                path,
                map,
                samples: Vec::new(),
                repacked: 0,
            });
        }
        let f32 = Some(file("f32")).filter(|p| p.exists());
        out.push(Shape { f32, cases });
    }
    Ok(out)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn argmax(v: &[f32]) -> u32 {
    folio_kernels::argmax(v) as u32
}

/// folio's median µs per token: N greedy decode steps from token 0 and an empty cache.
fn folio_decode(model: &Model<'_>, n: usize) -> Result<f64> {
    let mut mem = vec![0u8; model.session_bytes()];
    {
        let mut s = model.session(&mut mem)?;
        for p in 0..WARMUP.min(model.config().block_size) {
            s.forward(0, p)?;
        }
    }
    let mut s = model.session(&mut mem)?;
    let mut token = 0u32;
    let mut times = Vec::with_capacity(n);
    for p in 0..n {
        let t = Instant::now();
        token = argmax(s.forward(token, p)?);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(&times))
}

/// folio's prompt processing, µs per token: `Generator::prompt` over N tokens, in prompt
/// chunks of `MAX_CHUNK` tokens.
fn folio_prompt(model: &Model<'_>, n: usize) -> Result<f64> {
    let vocab = model.config().vocab_size;
    let tokens: Vec<u32> = (0..n).map(|i| (i % vocab) as u32).collect();
    let bytes = model.session_bytes_for(MAX_CHUNK).context("session size")?;
    let mut mem = vec![0u8; bytes];
    let mut g = Generator::new(
        model.session(&mut mem)?,
        Sampler::new(SamplerConfig::greedy())?,
    );
    let t = Instant::now();
    g.prompt(&tokens)?;
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Runs a benches/py script and parses the one JSON line it prints.
/// Runs a benches/py script (its stderr passes through) and returns what it printed.
fn python(py: &Path, script: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(py)
        .arg(format!("benches/py/{script}"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", py.display()))?;
    if !out.status.success() {
        bail!("{script} {} failed (its message is above)", args.join(" "));
    }
    Ok(out.stdout)
}

/// Runs a benches/py script that prints one JSON object.
fn python_json(py: &Path, script: &str, args: &[&str]) -> Result<Value> {
    let out = python(py, script, args)?;
    serde_json::from_slice(&out).with_context(|| format!("{script}: bad JSON"))
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v[key].as_f64().with_context(|| format!("no {key} in {v}"))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// Faithfulness of one GGUF against folio.
struct Check {
    /// Max |folio - llama.cpp| over the prompt's logits, over max |folio|.
    rel_diff: f64,
    abs_diff: f64,
    /// Greedy tokens compared.
    greedy: usize,
    /// First greedy token that differs.
    first_diff: Option<usize>,
    /// folio's top-2 logit gap at that token.
    gap: Option<f64>,
}

fn check(py: &Path, case: &Case) -> Result<Check> {
    let model = case.model()?;
    let t = model.config().block_size;
    let text: String = CHECK_TEXT.chars().take((t / 4).max(1)).collect();
    let mut prompt = vec![0u32; text.chars().count()];
    model
        .tokenizer()
        .encode(&text, &mut prompt)
        .context("the check text is outside the model's vocabulary")?;
    let k = t / 2;
    let mut mem = vec![0u8; model.session_bytes()];
    let mut s = model.session(&mut mem)?;
    let mut logits = Vec::new();
    for (p, &tok) in prompt.iter().enumerate() {
        logits.push(s.forward(tok, p)?.to_vec());
    }
    let (mut greedy, mut gaps) = (Vec::with_capacity(k), Vec::with_capacity(k));
    let mut last = logits.last().cloned().unwrap_or_default();
    for i in 0..k {
        greedy.push(argmax(&last));
        gaps.push(top2_gap(&last));
        last = s.forward(greedy[i], prompt.len() + i)?.to_vec();
    }
    let ids: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let ll = python_json(
        py,
        "llama_decode.py",
        &[
            "check",
            path_str(&case.gguf)?,
            "--tokens",
            &ids.join(","),
            "--greedy",
            &k.to_string(),
        ],
    )?;
    let their: Vec<Vec<f64>> = serde_json::from_value(ll["logits"].clone())?;
    let their_greedy: Vec<u32> = serde_json::from_value(ll["greedy"].clone())?;
    let (mut diff, mut scale) = (0f64, 0f64);
    for (a, b) in logits.iter().zip(&their) {
        if a.len() != b.len() {
            bail!("llama.cpp gave {} logits, folio {}", b.len(), a.len());
        }
        for (&x, &y) in a.iter().zip(b) {
            diff = diff.max((x as f64 - y).abs());
            scale = scale.max((x as f64).abs());
        }
    }
    let first_diff = (0..k).find(|&i| greedy.get(i) != their_greedy.get(i));
    Ok(Check {
        rel_diff: diff / scale,
        abs_diff: diff,
        greedy: k,
        first_diff,
        gap: first_diff.and_then(|i| gaps.get(i).copied()),
    })
}

/// Largest logit minus the second largest: how near a greedy choice is to a tie.
fn top2_gap(v: &[f32]) -> f64 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in v {
        if x > a {
            (a, b) = (x, a);
        } else if x > b {
            b = x;
        }
    }
    f64::from(a - b)
}

/// One model's figures in one round (µs per token; `bw` in bytes/s).
#[derive(Default, Clone)]
struct Sample {
    folio: f64,
    folio_pp: f64,
    llama: Option<f64>,
    llama_pp: Option<f64>,
    torch: Option<f64>,
    roof: f64,
    bw: f64,
}

/// One round of one model: folio, then llama.cpp (unless `no_llama`; its JSON is returned
/// too), then the roofline. `torch` is this round's PyTorch figure for the shape.
fn measure(
    py: &Path,
    case: &Case,
    torch: Option<f64>,
    no_llama: bool,
) -> Result<(Sample, Option<Value>)> {
    let model = case.model()?;
    let n = case.tokens()?;
    let mut s = Sample {
        folio: folio_decode(&model, n)?,
        folio_pp: folio_prompt(&model, n)?,
        torch,
        ..Sample::default()
    };
    let mut llama = None;
    if !no_llama {
        let v = python_json(
            py,
            "llama_decode.py",
            &["bench", path_str(&case.gguf)?, "-n", &n.to_string()],
        )?;
        s.llama = Some(num(&v, "decode_us")?);
        s.llama_pp = Some(num(&v, "pp_us")?);
        llama = Some(v);
    }
    let bytes = model.weight_bytes();
    s.bw = read_bandwidth(bytes, 5).into_iter().fold(0.0, f64::max);
    s.roof = bytes as f64 / s.bw * 1e6;
    Ok((s, llama))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("`{}`, {cpu}, {cores} cores", std::env::consts::ARCH)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The first line a command prints, or "?".
fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// A µs figure: no decimals from 100 up.
fn us(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

/// `1234567` as `1,234,567`.
fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate figure with no decimals.
fn rate(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "-".into()
    }
}

fn run_compare(args: &Args) -> Result<()> {
    let started = Instant::now();
    let load_start = loadavg();
    let mut shapes = shapes(args)?;
    let py = args.python.as_path();
    let mut failures = Vec::new();
    let mut checks = Vec::new();
    if !args.no_llama {
        for case in shapes.iter().flat_map(|s| &s.cases) {
            python(
                py,
                "to_gguf.py",
                &[path_str(&case.path)?, path_str(&case.gguf)?],
            )?;
            let c = check(py, case)?;
            if let (Some(d), "f32") = (c.first_diff, case.enc.as_str()) {
                failures.push(format!(
                    "{} f32: llama.cpp's greedy text differs from folio's at token {d}",
                    case.shape
                ));
            }
            checks.push((case.shape.clone(), case.enc.clone(), c));
        }
    }
    let mut llama_version = String::new();
    let mut torch_version = String::new();
    for round in 0..args.rounds {
        for shape in &mut shapes {
            let torch = match (&shape.f32, args.no_pytorch) {
                (Some(f32), false) => {
                    let n = shape.cases[0].tokens()?.to_string();
                    let v = python_json(
                        py,
                        "pytorch_decode.py",
                        &["--json", "-n", &n, path_str(f32)?],
                    )?;
                    torch_version = v["torch"].as_str().unwrap_or("?").to_string();
                    Some(num(&v, "p50_us")?)
                }
                _ => None,
            };
            for case in &mut shape.cases {
                eprintln!(
                    "round {}/{}: {} {}",
                    round + 1,
                    args.rounds,
                    case.shape,
                    case.enc
                );
                let (s, llama) = measure(py, case, torch, args.no_llama)?;
                if let Some(v) = llama {
                    case.repacked = v["repacked"].as_u64().unwrap_or(0);
                    llama_version = v["llama_cpp_python"].as_str().unwrap_or("?").to_string();
                }
                case.samples.push(s);
            }
        }
    }
    let load_end = loadavg();

    println!("## folio vs llama.cpp vs eager PyTorch: decode at one thread\n");
    println!(
        "{}, folio {}, {}; load average (1/5/15 min) {load_start} at the start, {load_end} at \
         the end; rounds: {}, {:.0} s in all.\n",
        first_line("date", &["+%Y-%m-%d"]),
        first_line("git", &["rev-parse", "--short", "HEAD"]),
        machine(),
        args.rounds,
        started.elapsed().as_secs_f64()
    );
    println!(
        "Each round runs every tool on every model back to back; each run decodes \
         N = block_size - 8 tokens greedily from an empty cache. Figures are medians over \
         rounds of each run's median µs/token; ratios are medians of the per-round ratios \
         (below 1: folio is faster). The weights are short training runs: decode speed does \
         not depend on training length."
    );
    if !args.no_llama {
        let repacked: Vec<String> = shapes
            .iter()
            .flat_map(|s| &s.cases)
            .filter(|c| c.repacked > 0)
            .map(|c| format!("{} {} {}", c.shape, c.enc, c.repacked))
            .collect();
        println!(
            "llama.cpp: llama-cpp-python {llama_version} (its vendored llama.cpp, built from \
             source), one thread, its own per-token eval timings; matrices it repacked at load: \
             {}. pp = one batch of N tokens (folio: `Generator::prompt`).",
            if repacked.is_empty() {
                "none".to_string()
            } else {
                repacked.join(", ")
            }
        );
    }
    if !args.no_pytorch {
        println!(
            "PyTorch {torch_version} eager on the f32 file, one thread (no int8 decode on CPU, \
             so one figure per shape)."
        );
    }
    println!(
        "Roofline: weight bytes / single-core read bandwidth of a buffer of that size \
         (best of 5 samples in each round).\n"
    );
    println!(
        "| model | enc | weights MB | folio µs/token | llama.cpp µs/token | folio / llama.cpp \
         | PyTorch µs/token | folio / PyTorch | read GB/s | roofline µs | folio % of roofline \
         | folio pp tok/s | llama.cpp pp tok/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in shapes.iter().flat_map(|s| &s.cases) {
        let v = &case.samples;
        let col = |f: &dyn Fn(&Sample) -> Option<f64>| {
            let xs: Vec<f64> = v.iter().filter_map(f).collect();
            median(&xs)
        };
        let model = case.model()?;
        let label = model.header().metadata("folio.dtype").unwrap_or(&case.enc);
        println!(
            "| {} | {label} | {:.2} | {} | {} | {} | {} | {} | {:.1} | {} | {:.0}% | {} | {} |",
            case.shape,
            model.weight_bytes() as f64 / 1e6,
            us(col(&|s| Some(s.folio))),
            us(col(&|s| s.llama)),
            ratio(col(&|s| s.llama.map(|l| s.folio / l))),
            us(col(&|s| s.torch)),
            ratio(col(&|s| s.torch.map(|t| s.folio / t))),
            col(&|s| Some(s.bw)) / 1e9,
            us(col(&|s| Some(s.roof))),
            col(&|s| Some(s.roof / s.folio)) * 100.0,
            rate(col(&|s| Some(1e6 / s.folio_pp))),
            rate(col(&|s| s.llama_pp.map(|p| 1e6 / p))),
        );
    }
    if !checks.is_empty() {
        println!(
            "\nGGUF faithfulness (llama.cpp against folio on the same file; a prompt of \
             block_size/4 characters, then block_size/2 greedy tokens; llama.cpp quantises \
             activations to 8 bits in its q8_0/q4_0 products, so only f32 must match):\n"
        );
        println!("| model | enc | max abs logit diff / max abs logit | greedy text |");
        println!("|---|---|---:|---|");
        for (shape, enc, c) in &checks {
            let verdict = match (c.first_diff, enc.as_str()) {
                (None, "f32") => format!("identical ({} tokens): PASS", c.greedy),
                (None, _) => format!("identical ({} tokens)", c.greedy),
                (Some(d), f32) => format!(
                    "{}differs from token {d} of {} (folio's top-2 logit gap there {:.2e}, max logit diff {:.2e}){}",
                    if f32 == "f32" { "**FAIL: " } else { "" },
                    c.greedy,
                    c.gap.unwrap_or(f64::NAN),
                    c.abs_diff,
                    if f32 == "f32" { "**" } else { "" },
                ),
            };
            println!("| {shape} | {enc} | {:.2e} | {verdict} |", c.rel_diff);
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("compare: FAIL: {f}");
        }
        bail!(
            "{} faithfulness check(s) failed (see above)",
            failures.len()
        );
    }
    Ok(())
}

/// The decode `--callgrind` counts: the same N steps as a timed run, in a function of its
/// own so callgrind collects only it.
#[inline(never)]
fn callgrind_decode(model: &Model<'_>, mem: &mut [u8], n: usize) -> Result<u32> {
    let mut s = model.session(mem)?;
    let mut token = 0u32;
    for p in 0..n {
        token = argmax(s.forward(token, p)?);
    }
    Ok(token)
}

fn decode_only(path: &Path) -> Result<()> {
    let map = MappedModel::open(path).with_context(|| format!("opening {}", path.display()))?;
    let model = map.model()?;
    let n = model.config().block_size.saturating_sub(WARMUP).max(1);
    let mut mem = vec![0u8; model.session_bytes()];
    {
        // Uncounted warm-up: one-time work (CPU feature detection) stays out of the count.
        let mut s = model.session(&mut mem)?;
        for p in 0..WARMUP.min(n) {
            s.forward(0, p)?;
        }
    }
    std::hint::black_box(callgrind_decode(&model, &mut mem, n)?);
    #[cfg(target_arch = "x86_64")]
    eprintln!(
        "compare-cpu: avx2={} fma={} f16c={}",
        std::is_x86_feature_detected!("avx2"),
        std::is_x86_feature_detected!("fma"),
        std::is_x86_feature_detected!("f16c")
    );
    Ok(())
}

fn run_callgrind(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!("## Instructions per decoded token (valgrind --tool=callgrind)\n");
    println!(
        "N = block_size - 8 greedy tokens from an empty cache, after 8 uncounted warm-up steps; \
         {}.\n",
        machine()
    );
    println!("| model | enc | tokens | instructions / token | CPU features seen |");
    println!("|---|---|---:|---:|---|");
    for case in shapes(args)?.iter().flat_map(|s| &s.cases) {
        let out_file =
            std::env::temp_dir().join(format!("folio-callgrind.{}.out", std::process::id()));
        let out = Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=*callgrind_decode*",
            ])
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(&exe)
            .arg("--decode-only")
            .arg(&case.path)
            .output()
            .context("running valgrind (apt-get install valgrind)")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "valgrind failed on {}: {}",
                case.path.display(),
                stderr.trim()
            );
        }
        let text = std::fs::read_to_string(&out_file)?;
        std::fs::remove_file(&out_file)?;
        let total: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .context("no totals line in callgrind's output")?;
        let features = stderr
            .lines()
            .find_map(|l| l.split("compare-cpu: ").nth(1))
            .unwrap_or("?");
        let n = case.tokens()?;
        println!(
            "| {} | {} | {n} | {} | {features} |",
            case.shape,
            case.enc,
            thousands(total / n as u64)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.decode_only {
        return decode_only(path);
    }
    if args.dirs.is_empty() {
        bail!("give at least one run directory");
    }
    if args.callgrind {
        run_callgrind(&args)
    } else {
        run_compare(&args)
    }
}
