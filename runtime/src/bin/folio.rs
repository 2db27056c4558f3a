//! `folio`: run a folio model file from the command line.
//!
//! ```text
//! folio generate MODEL [--prompt TEXT] [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--exact]
//! folio logits MODEL --text TEXT
//! folio bench MODEL [-n N] [--json]
//! folio info MODEL
//! ```
//! Every command also takes `--no-mmap` (read the file into memory instead of mapping it)
//! and `--max-memory BYTES` (default 1G: the most folio allocates for a model's session
//! and, with `--no-mmap`, the file copy; checked before allocating).
//!
//! Errors print one line, `folio: error: ...`, to stderr and exit with status 1 (2 for
//! bad command-line syntax). Standard output is written through a checked handle: a
//! closed stdout, a full disk or a closed pipe is such an error, never a silent loss.
//! Writes to stderr are best effort and never panic. Text that comes from the file
//! (metadata, tensor names, vocabulary) or the command line is printed with its control
//! characters escaped (`folio_runtime::cli::printable`).
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use folio_runtime::cli::{self, printable};
use folio_runtime::file::MappedModel;
use folio_runtime::note;
use folio_runtime::weights::{LayerNorm, Matrix, Vector, Weights};
use folio_runtime::{
    unescape, ContextMode, Generator, Model, Sampler, SamplerConfig, TensorId, TensorKind,
    MAX_CHUNK,
};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Instant;

/// Most tokens `folio generate` produces in one run.
const MAX_GENERATE: usize = 1_000_000;

#[derive(Parser)]
#[command(
    name = "folio",
    version,
    about = "Run folio character-level GPT models"
)]
struct Cli {
    /// Read the model file into memory instead of memory-mapping it (for a file that may
    /// change or be truncated while folio runs: a mapped file must not).
    #[arg(long, global = true)]
    no_mmap: bool,
    /// Most bytes folio allocates for the model: its session (KV cache and activations)
    /// plus, with --no-mmap, the copy of the file. Suffixes K, M, G, T (powers of 1024).
    #[arg(long, global = true, value_name = "BYTES", default_value = "1G", value_parser = parse_bytes)]
    max_memory: u64,
    #[command(subcommand)]
    command: Command,
}

/// A byte count: digits, optionally followed by K, M, G or T (powers of 1024), with an
/// optional `B` or `iB` after the letter.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("expected a byte count such as 1073741824, 512M or 2G, got {s:?}");
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[derive(Subcommand)]
enum Command {
    /// Stream generated text to stdout (the prompt is echoed first).
    Generate {
        /// Model file (.safetensors).
        model: String,
        /// Text to continue (default: a newline, as nanoGPT's sample.py).
        #[arg(long)]
        prompt: Option<String>,
        /// Tokens to generate.
        #[arg(short = 'n', long = "tokens", default_value_t = 200)]
        n: usize,
        /// Softmax temperature; 0 = greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// Keep the K most likely tokens (0 = off).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Nucleus sampling mass in (0, 1] (1 = off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// PRNG seed (xorshift64*).
        #[arg(long, default_value_t = 1337)]
        seed: u64,
        /// Recompute the last block_size tokens every step (nanoGPT generate) instead of
        /// shifting the KV cache window.
        #[arg(long)]
        exact: bool,
    },
    /// Print the logits after every position of TEXT as one JSON object.
    Logits {
        /// Model file.
        model: String,
        /// Input text (at most block_size characters).
        #[arg(long)]
        text: String,
    },
    /// Measure decode latency, prompt rate and memory.
    Bench {
        /// Model file.
        model: String,
        /// Tokens to decode (at most block_size; default min(block_size, 256)).
        #[arg(short = 'n', long = "tokens")]
        n: Option<usize>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the config, encodings, tensor table, sizes and training metadata.
    Info {
        /// Model file.
        model: String,
    },
}

/// The one error line, control characters escaped.
fn fail(msg: &str, code: u8) -> ExitCode {
    cli::fail("folio", msg, code)
}

fn main() -> ExitCode {
    // Before anything else opens a file (which could take descriptor 1 if it is closed).
    let mut out = match Stdout::open() {
        Ok(out) => out,
        Err(e) => return fail(&e.to_string(), 1),
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let shown = write!(out, "{}", e.render()).and_then(|()| out.flush());
                return match shown {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&e.to_string(), 1),
                };
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                return fail("missing subcommand or argument (see folio --help)", 2);
            }
            return fail(&cli::clap_line(&e), 2);
        }
    };
    let opts = Opts {
        no_mmap: cli.no_mmap,
        max_memory: cli.max_memory,
    };
    match run(cli.command, &opts, &mut out).and_then(|()| Ok(out.flush()?)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}"), 1),
    }
}

/// Options shared by every command.
struct Opts {
    no_mmap: bool,
    max_memory: u64,
}

/// Standard output through a descriptor of its own: Rust's `io::stdout()` reports success
/// for writes to a closed descriptor 1, so a closed stdout would lose output silently.
/// Every error names stdout.
struct Stdout(BufWriter<File>);

impl Stdout {
    fn open() -> io::Result<Self> {
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "standard output is not open");
        if !stdout_open_at_start() {
            return Err(closed());
        }
        let fd = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|_| closed())?;
        Ok(Stdout(BufWriter::new(File::from(fd))))
    }
}

/// Whether descriptor 1 was open when the process started. Rust's runtime reopens a closed
/// standard descriptor on `/dev/null` before `main`, which would make a closed stdout
/// swallow the output, so the state is recorded by an ELF constructor that runs earlier.
fn stdout_open_at_start() -> bool {
    #[cfg(target_os = "linux")]
    {
        STDOUT_AT_START.load(std::sync::atomic::Ordering::Relaxed) != 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// 1 while descriptor 1 was open at start (the default if the constructor did not run).
#[cfg(target_os = "linux")]
static STDOUT_AT_START: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static RECORD_STDOUT: extern "C" fn() = record_stdout;

#[cfg(target_os = "linux")]
extern "C" fn record_stdout() {
    // SAFETY: F_GETFD only reads descriptor 1's flags; it touches no memory of ours.
    #[allow(unsafe_code)]
    let open = unsafe { libc::fcntl(1, libc::F_GETFD) } != -1;
    STDOUT_AT_START.store(u8::from(open), std::sync::atomic::Ordering::Relaxed);
}

fn stdout_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot write to standard output: {e}"))
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(stdout_error)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(stdout_error)
    }
}

/// What a command may still allocate for the model, out of `--max-memory`.
struct Budget {
    max: u64,
    left: u64,
}

impl Budget {
    fn new(opts: &Opts) -> Self {
        Budget {
            max: opts.max_memory,
            left: opts.max_memory,
        }
    }

    /// Take `bytes` for `what`, or fail with the sizes before anything is allocated.
    fn take(&mut self, bytes: u64, what: fmt::Arguments<'_>) -> Result<()> {
        if bytes > self.left {
            bail!(
                "{what} needs {bytes} bytes ({}), more than the {} bytes left of --max-memory {} ({}); raise --max-memory to allow it",
                human(bytes),
                self.left,
                self.max,
                human(self.max)
            );
        }
        self.left -= bytes;
        Ok(())
    }
}

/// `bytes` in binary units, for messages.
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// A zeroed buffer of `n` bytes, an error (not an abort) if the allocator refuses it.
fn zeroed(n: usize) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| anyhow!("cannot allocate {n} bytes ({})", human(n as u64)))?;
    v.resize(n, 0);
    Ok(v)
}

fn run(command: Command, opts: &Opts, out: &mut Stdout) -> Result<()> {
    match command {
        Command::Generate {
            model,
            prompt,
            n,
            temperature,
            top_k,
            top_p,
            seed,
            exact,
        } => {
            let mode = if exact {
                ContextMode::Exact
            } else {
                ContextMode::Shift
            };
            generate(
                opts,
                out,
                &model,
                prompt.as_deref(),
                n,
                SamplerConfig {
                    temperature,
                    top_k,
                    top_p,
                    seed,
                },
                mode,
            )
        }
        Command::Logits { model, text } => logits(opts, out, &model, &text),
        Command::Bench { model, n, json } => bench(opts, out, &model, n, json),
        Command::Info { model } => info(opts, out, &model),
    }
}

/// The model file, mapped or (`--no-mmap`) read into memory taken from `budget`.
fn open(path: &str, opts: &Opts, budget: &mut Budget) -> Result<MappedModel> {
    let file = if opts.no_mmap {
        MappedModel::read(path, budget.left).map_err(|e| match e.kind() {
            io::ErrorKind::OutOfMemory => anyhow!(
                "{e} by --max-memory {} ({}); raise --max-memory to read it",
                budget.max,
                human(budget.max)
            ),
            _ => anyhow!(e),
        })
    } else {
        MappedModel::open(path).map_err(|e| anyhow!(e))
    };
    let file = file.with_context(|| format!("cannot open {path}"))?;
    budget.left = budget.left.saturating_sub(if file.is_mapped() {
        0
    } else {
        file.bytes().len() as u64
    });
    Ok(file)
}

/// The session memory of `model`, checked against `budget` before it is allocated.
fn session_memory(model: &Model<'_>, budget: &mut Budget) -> Result<Vec<u8>> {
    // Prompt chunks as deep as the budget allows (faster prompts), else one token.
    let need = model
        .session_bytes_for(MAX_CHUNK)
        .filter(|&b| b as u64 <= budget.left)
        .unwrap_or(model.session_bytes());
    let c = model.config();
    budget.take(
        need as u64,
        format_args!(
            "a session (block_size {}, n_layer {}, n_embd {}: KV cache {} bytes)",
            c.block_size,
            c.n_layer,
            c.n_embd,
            model.kv_bytes()
        ),
    )?;
    zeroed(need).context("cannot allocate the session")
}

fn load<'m>(path: &str, map: &'m MappedModel) -> Result<Model<'m>> {
    map.model()
        .with_context(|| format!("{path} is not a valid folio model"))
}

fn encode(model: &Model<'_>, what: &str, text: &str) -> Result<Vec<u32>> {
    let mut tokens = vec![0u32; text.chars().count()];
    model
        .tokenizer()
        .encode(text, &mut tokens)
        .with_context(|| format!("cannot encode the {what}"))?;
    Ok(tokens)
}

fn generate(
    opts: &Opts,
    out: &mut Stdout,
    path: &str,
    prompt: Option<&str>,
    n: usize,
    cfg: SamplerConfig,
    mode: ContextMode,
) -> Result<()> {
    if n > MAX_GENERATE {
        bail!("-n {n} is too large (at most {MAX_GENERATE})");
    }
    let sampler = Sampler::new(cfg)?;
    let mut budget = Budget::new(opts);
    let map = open(path, opts, &mut budget)?;
    let model = load(path, &map)?;
    let tok = model.tokenizer();
    let (text, tokens) = match prompt {
        Some(p) if !p.is_empty() => (p.to_string(), encode(&model, "prompt", p)?),
        Some(_) => bail!("the prompt is empty"),
        None => match tok.token('\n') {
            Some(t) => (String::new(), vec![t]),
            None => (String::new(), vec![0]),
        },
    };
    let mut mem = session_memory(&model, &mut budget)?;
    let session = model.session(&mut mem)?;
    let mut generator = Generator::with_mode(session, sampler, mode);
    let t0 = Instant::now();
    generator.prompt(&tokens)?;
    let prompt_s = t0.elapsed().as_secs_f64();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let mut lat = Vec::with_capacity(n);
    let mut buf = [0u8; 4];
    for _ in 0..n {
        let t = Instant::now();
        let id = generator.next()?;
        lat.push(t.elapsed().as_secs_f64());
        let ch = tok.decode(id)?;
        out.write_all(ch.encode_utf8(&mut buf).as_bytes())?;
        out.flush()?;
    }
    if !lat.is_empty() {
        let total: f64 = lat.iter().sum();
        lat.sort_by(f64::total_cmp);
        note!(
            "\ngenerated {n} tokens: {:.3} ms/token p50, {:.3} p90, {:.3} p99; {:.0} tokens/s; prompt {} tokens in {:.3} ms",
            pct(&lat, 50.0) * 1e3,
            pct(&lat, 90.0) * 1e3,
            pct(&lat, 99.0) * 1e3,
            n as f64 / total.max(1e-12),
            tokens.len(),
            prompt_s * 1e3
        );
    }
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn logits(opts: &Opts, out: &mut Stdout, path: &str, text: &str) -> Result<()> {
    let mut budget = Budget::new(opts);
    let map = open(path, opts, &mut budget)?;
    let model = load(path, &map)?;
    let t = model.config().block_size;
    let chars = text.chars().count();
    if chars == 0 {
        bail!("--text is empty");
    }
    if chars > t {
        bail!("--text is {chars} characters, longer than block_size {t}");
    }
    let tokens = encode(&model, "text", text)?;
    let mut mem = session_memory(&model, &mut budget)?;
    let mut session = model.session(&mut mem)?;
    // Streamed: the JSON grows with the text times vocab_size, so it is never held whole.
    let ids: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    write!(out, "{{\"tokens\": [{}], \"logits\": [", ids.join(", "))?;
    for (pos, &tok) in tokens.iter().enumerate() {
        let l = session.forward(tok, pos)?;
        out.write_all(if pos > 0 { b", [" } else { b"[" })?;
        for (i, v) in l.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            if v.is_finite() {
                write!(out, "{sep}{v:?}")?;
            } else {
                write!(out, "{sep}null")?;
            }
        }
        out.write_all(b"]")?;
    }
    writeln!(out, "]}}")?;
    Ok(())
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if c.is_control() => o += &format!("\\u{:04x}", c as u32),
            c => o.push(c),
        }
    }
    o + "\""
}

fn bench(opts: &Opts, out: &mut Stdout, path: &str, n: Option<usize>, json: bool) -> Result<()> {
    let mut budget = Budget::new(opts);
    let map = open(path, opts, &mut budget)?;
    let model = load(path, &map)?;
    let cfg = *model.config();
    let n = n.unwrap_or(cfg.block_size.min(256));
    if n == 0 {
        bail!("-n must be at least 1");
    }
    if n > cfg.block_size {
        bail!(
            "-n {n} is too large: the bench decodes without shifting, so at most block_size {}",
            cfg.block_size
        );
    }
    // The token list and the latencies: n u32 + n f64, counted with the session.
    budget.take(
        12 * n as u64,
        format_args!("-n {n} (the bench's token list and latencies)"),
    )?;
    let mut mem = session_memory(&model, &mut budget)?;
    let tokens: Vec<u32> = (0..n).map(|i| (i % cfg.vocab_size) as u32).collect();
    // Warm-up, then prompt processing: the n tokens as one prompt (prefill in chunks).
    model.session(&mut mem)?.prefill(&tokens[..n.min(8)], 0)?;
    let mut s = model.session(&mut mem)?;
    let t0 = Instant::now();
    s.prefill(&tokens, 0)?;
    let prompt_s = t0.elapsed().as_secs_f64();
    // Decode: forward + greedy sample per token, from position 0.
    let mut s = model.session(&mut mem)?;
    let mut sampler = Sampler::new(SamplerConfig::greedy())?;
    let mut lat = Vec::with_capacity(n);
    let mut tok = tokens.first().copied().unwrap_or(0);
    for p in 0..n {
        let t = Instant::now();
        s.forward(tok, p)?;
        tok = s.sample(&mut sampler)?;
        lat.push(t.elapsed().as_secs_f64());
    }
    let total: f64 = lat.iter().sum();
    lat.sort_by(f64::total_cmp);
    let us = |p| pct(&lat, p) * 1e6;
    let decode_tps = n as f64 / total.max(1e-12);
    let prompt_tps = n as f64 / prompt_s.max(1e-12);
    let (wb, kv, sb) = (model.weight_bytes(), model.kv_bytes(), mem.len());
    if json {
        writeln!(
            out,
            "{{\"model\": {}, \"n\": {n}, \"decode_us\": {{\"p50\": {:.3}, \"p90\": {:.3}, \"p99\": {:.3}}}, \"decode_tokens_per_s\": {:.1}, \"prompt_tokens_per_s\": {:.1}, \"weight_bytes\": {wb}, \"kv_bytes\": {kv}, \"scratch_bytes\": {}, \"session_bytes\": {sb}, \"file_bytes\": {}}}",
            json_str(path),
            us(50.0),
            us(90.0),
            us(99.0),
            decode_tps,
            prompt_tps,
            sb - kv,
            map.bytes().len()
        )?;
    } else {
        writeln!(out, "model: {}", printable(path.chars()))?;
        writeln!(out, "decode: {n} tokens, {:.1} us p50, {:.1} us p90, {:.1} us p99, {decode_tps:.0} tokens/s", us(50.0), us(90.0), us(99.0))?;
        writeln!(out, "prompt: {n} tokens, {prompt_tps:.0} tokens/s")?;
        writeln!(
            out,
            "memory: weights {wb} bytes, KV cache {kv} bytes, scratch {} bytes (session {sb})",
            sb - kv
        )?;
    }
    Ok(())
}

fn info(opts: &Opts, out: &mut Stdout, path: &str) -> Result<()> {
    let mut budget = Budget::new(opts);
    let map = open(path, opts, &mut budget)?;
    let model = load(path, &map)?;
    let c = model.config();
    let meta = |k: &str| {
        model
            .header()
            .metadata(k)
            .map(|raw| printable(unescape(raw)))
    };
    writeln!(
        out,
        "file: {} ({} bytes)",
        printable(path.chars()),
        map.bytes().len()
    )?;
    writeln!(
        out,
        "format: {}, dtype label: {}",
        meta("folio.format").unwrap_or_default(),
        meta("folio.dtype").unwrap_or_else(|| "-".into())
    )?;
    writeln!(
        out,
        "config: vocab_size={} block_size={} n_embd={} n_head={} n_layer={} layer_norm_eps={:e} tied_embeddings={}",
        c.vocab_size, c.block_size, c.n_embd, c.n_head, c.n_layer, c.layer_norm_eps, c.tied_embeddings
    )?;
    let (v, t, e, l) = (c.vocab_size, c.block_size, c.n_embd, c.n_layer);
    let params = v * e
        + t * e
        + l * (12 * e * e + 13 * e)
        + 2 * e
        + if c.tied_embeddings { 0 } else { v * e };
    writeln!(out, "parameters: {params}")?;
    writeln!(
        out,
        "sizes: weights {} bytes, session {} bytes (KV cache {} bytes)",
        model.weight_bytes(),
        model.session_bytes(),
        model.kv_bytes()
    )?;
    let vocab = printable(model.tokenizer().chars().iter().copied());
    writeln!(out, "vocab: \"{vocab}\"")?;
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (_, enc) in model.encodings() {
        match counts.iter_mut().find(|(n, _)| *n == enc.as_str()) {
            Some((_, k)) => *k += 1,
            None => counts.push((enc.as_str(), 1)),
        }
    }
    let enc: Vec<String> = counts.iter().map(|(n, k)| format!("{n} x{k}")).collect();
    writeln!(out, "encodings: {}", enc.join(", "))?;
    for (id, enc) in model.encodings() {
        writeln!(out, "  {id}: {}", enc.as_str())?;
    }
    writeln!(out, "tensors ({}):", model.header().tensor_count)?;
    for ti in model.header().tensors() {
        let name = printable(ti.name());
        let shape: Vec<String> = ti.shape().iter().map(|d| d.to_string()).collect();
        let used = model.tensor_id(&ti).is_some();
        let more = if ti.rank > shape.len() { ", ..." } else { "" };
        let shape = format!("[{}{more}]", shape.join(", "));
        let note = if used { "" } else { "  (ignored)" };
        writeln!(
            out,
            "  {name:<32} {:<7} {shape:<14} {:>10} bytes{note}",
            ti.dtype.as_str(),
            ti.bytes()
        )?;
    }
    match non_finite(model.weights()) {
        None => writeln!(out, "weights: all finite")?,
        Some((count, first)) => writeln!(
            out,
            "weights: {count} NaN or infinite values (first found in {first}): this model's logits are not finite"
        )?,
    }
    if let Some(train) = meta("folio.train") {
        writeln!(out, "folio.train: {train}")?;
    }
    Ok(())
}

/// The number of NaN or infinite values in the weights the forward pass reads (quantised
/// matrices: in their scales; the codes are integers), and the first tensor holding one.
fn non_finite(w: &Weights<'_>) -> Option<(u64, TensorId)> {
    let id = |kind, layer: usize, scale| TensorId {
        kind,
        layer: layer as u8,
        scale,
    };
    let mut found: Option<(u64, TensorId)> = None;
    let mut note = |n: u64, at: TensorId| {
        if n > 0 {
            found.get_or_insert((0, at)).0 += n;
        }
    };
    let f32s = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count() as u64;
    let f16s = |v: &[half::f16]| v.iter().filter(|x| !x.is_finite()).count() as u64;
    for (at, m) in w.matrices() {
        match *m {
            Matrix::F32(v) => note(f32s(v), at),
            Matrix::F16(v) => note(f16s(v), at),
            Matrix::Q8_0 { scales, .. } | Matrix::Q4_0 { scales, .. } => {
                note(f16s(scales), TensorId { scale: true, ..at })
            }
        }
    }
    let mut vector = |v: &Vector<'_>, at: TensorId| match *v {
        Vector::F32(v) => note(f32s(v), at),
        Vector::F16(v) => note(f16s(v), at),
    };
    let mut norm = |n: &LayerNorm<'_>, weight, bias, layer| {
        vector(&n.weight, id(weight, layer, false));
        vector(&n.bias, id(bias, layer, false));
    };
    for (l, layer) in w.layers.iter().enumerate() {
        norm(&layer.ln_1, TensorKind::Ln1Weight, TensorKind::Ln1Bias, l);
        norm(&layer.ln_2, TensorKind::Ln2Weight, TensorKind::Ln2Bias, l);
    }
    norm(&w.ln_f, TensorKind::LnFWeight, TensorKind::LnFBias, 0);
    for (l, layer) in w.layers.iter().enumerate() {
        let biases = [
            (&layer.attn, TensorKind::AttnBias),
            (&layer.attn_proj, TensorKind::AttnProjBias),
            (&layer.fc, TensorKind::FcBias),
            (&layer.mlp_proj, TensorKind::MlpProjBias),
        ];
        for (linear, kind) in biases {
            vector(&linear.bias, id(kind, l, false));
        }
    }
    found
}
