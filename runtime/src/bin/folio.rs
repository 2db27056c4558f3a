//! `folio`: run a folio model file from the command line.
//!
//! ```text
//! folio generate MODEL [--prompt TEXT] [-n N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--exact]
//! folio logits MODEL --text TEXT
//! folio bench MODEL [-n N] [--json]
//! folio info MODEL
//! ```
//!
//! Errors print one line, `folio: error: ...`, to stderr and exit with status 1 (2 for
//! bad command-line syntax).
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use folio_runtime::file::MappedModel;
use folio_runtime::{unescape, ContextMode, Generator, Model, Sampler, SamplerConfig};
use std::io::{self, Write};
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
    #[command(subcommand)]
    command: Command,
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprintln!("folio: error: missing subcommand or argument (see folio --help)");
                return ExitCode::from(2);
            }
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("folio: error: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("folio: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<()> {
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
        Command::Logits { model, text } => logits(&model, &text),
        Command::Bench { model, n, json } => bench(&model, n, json),
        Command::Info { model } => info(&model),
    }
}

fn open(path: &str) -> Result<MappedModel> {
    MappedModel::open(path).with_context(|| format!("cannot open {path}"))
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
    let map = open(path)?;
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
    let mut mem = vec![0u8; model.session_bytes()];
    let session = model.session(&mut mem)?;
    let mut generator = Generator::with_mode(session, sampler, mode);
    let t0 = Instant::now();
    generator.prompt(&tokens)?;
    let prompt_s = t0.elapsed().as_secs_f64();
    let mut out = io::stdout().lock();
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
    drop(out);
    if !lat.is_empty() {
        let total: f64 = lat.iter().sum();
        lat.sort_by(f64::total_cmp);
        eprintln!(
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

fn logits(path: &str, text: &str) -> Result<()> {
    let map = open(path)?;
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
    let mut mem = vec![0u8; model.session_bytes()];
    let mut session = model.session(&mut mem)?;
    let mut s = String::from("{\"tokens\": [");
    s += &tokens
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    s += "], \"logits\": [";
    for (pos, &tok) in tokens.iter().enumerate() {
        let l = session.forward(tok, pos)?;
        if pos > 0 {
            s += ", ";
        }
        s += "[";
        s += &l
            .iter()
            .map(|v| {
                if v.is_finite() {
                    format!("{v:?}")
                } else {
                    "null".into()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        s += "]";
    }
    s += "]}";
    let mut out = io::stdout().lock();
    writeln!(out, "{s}")?;
    Ok(())
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o += "\\\"",
            '\\' => o += "\\\\",
            c if (c as u32) < 0x20 => o += &format!("\\u{:04x}", c as u32),
            c => o.push(c),
        }
    }
    o + "\""
}

fn bench(path: &str, n: Option<usize>, json: bool) -> Result<()> {
    let map = open(path)?;
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
    let mut mem = vec![0u8; model.session_bytes()];
    let tokens: Vec<u32> = (0..n).map(|i| (i % cfg.vocab_size) as u32).collect();
    // Warm-up, then prompt processing: forward over n positions.
    {
        let mut s = model.session(&mut mem)?;
        for (p, &t) in tokens.iter().enumerate().take(8) {
            s.forward(t, p)?;
        }
    }
    let mut s = model.session(&mut mem)?;
    let t0 = Instant::now();
    for (p, &t) in tokens.iter().enumerate() {
        s.forward(t, p)?;
    }
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
    let (wb, kv, sb) = (
        model.weight_bytes(),
        model.kv_bytes(),
        model.session_bytes(),
    );
    let mut out = io::stdout().lock();
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
        writeln!(out, "model: {path}")?;
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

fn info(path: &str) -> Result<()> {
    let map = open(path)?;
    let model = load(path, &map)?;
    let c = model.config();
    let mut out = io::stdout().lock();
    let meta = |k: &str| {
        model
            .metadata(k)
            .map(|raw| unescape(raw).collect::<String>())
    };
    writeln!(out, "file: {path} ({} bytes)", map.bytes().len())?;
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
    let vocab: String = model.tokenizer().chars().iter().collect();
    writeln!(out, "vocab: {vocab:?}")?;
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
    writeln!(out, "tensors ({}):", model.tensor_count())?;
    for ti in model.tensors() {
        let name: String = ti.name().collect();
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
    if let Some(train) = meta("folio.train") {
        writeln!(out, "folio.train: {train}")?;
    }
    Ok(())
}
