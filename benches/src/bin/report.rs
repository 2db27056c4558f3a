//! `report`: the lab's experiment reproduced by folio, as SVG plots and a README.
//!
//! ```text
//! report --run runs/model1 [--run runs/edge ...] --data tinyshakespeare.txt --out docs/report
//! ```
//! For every run (a model file written by the exporter, and the `BASE.log.jsonl` beside it)
//! it draws the loss curves, generates samples with folio-runtime to measure word accuracy
//! and per-token decode latency, shows the training and evaluation time distributions from
//! the log, and pictures `wpe.weight`; then writes `README.md` with the table of runs.
//! Data flow: `run` (files → model, log, samples, latency, wpe) → `words` (accuracy) →
//! `stats` → `plots` (SVGs) → `readme`.
#[path = "../report/analysis.rs"]
mod analysis;
#[path = "../report/log.rs"]
mod log;
#[path = "../report/plots.rs"]
mod plots;
#[path = "../report/readme.rs"]
mod readme;
#[path = "../report/run.rs"]
mod run;
#[path = "../report/stats.rs"]
mod stats;
#[path = "../report/words.rs"]
mod words;

use anyhow::{bail, Context, Result};
use clap::Parser;
use plots::Heatmap;
use run::{GenOpts, Run};
use std::path::{Path, PathBuf};
use words::{Tally, Vocabulary};

#[derive(Parser)]
#[command(
    name = "report",
    about = "folio's lab report: loss, word accuracy, timings and wpe, as SVG plots"
)]
struct Cli {
    /// A run: `[NAME=]PATH`, PATH a model file or a directory with model.safetensors
    /// (its log is BASE.log.jsonl beside it). Repeat for several runs.
    #[arg(long = "run", required = true)]
    runs: Vec<String>,
    /// Tiny Shakespeare (the train split, its first 90%, gives the word vocabulary).
    #[arg(long)]
    data: PathBuf,
    /// Output directory for the SVGs and README.md.
    #[arg(long, default_value = "docs/report")]
    out: PathBuf,
    /// A model that is listed but not reported: `NAME=REASON` (e.g. "model3=not trained:
    /// needs a GPU"). Repeatable.
    #[arg(long = "absent")]
    absent: Vec<String>,
    /// The √d_k ablation: `NAME=LOG` (a `--probe-attention` run's BASE.log.jsonl, its
    /// BASE.train.json beside it); the first is the baseline. Repeatable.
    #[arg(long = "scale-run")]
    scale_runs: Vec<String>,
    /// The positions ablation (add vs concatenate), as --scale-run; the first is the
    /// baseline.
    #[arg(long = "pos-run")]
    pos_runs: Vec<String>,
    /// Skip the attention-cost benchmark (it times the f16 attention kernel up to 4096
    /// positions, about half a minute).
    #[arg(long)]
    no_attention_cost: bool,
    /// Samples per run (the lab: 50 samples of 100 characters).
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Characters per sample.
    #[arg(long, default_value_t = 100)]
    chars: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Top-k.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Seed of the first sample (sample i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Heatmap sizes: positions and embedding dimensions shown (strided beyond these).
const WPE_MAX_POS: usize = 64;
const WPE_MAX_DIM: usize = 128;
const COS_MAX_POS: usize = 64;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let gen = GenOpts {
        samples: cli.samples,
        chars: cli.chars,
        temperature: cli.temperature,
        top_k: cli.top_k,
        seed: cli.seed,
    };
    let text = std::fs::read_to_string(&cli.data)
        .with_context(|| format!("reading {}", cli.data.display()))?;
    let sha = sha256_hex(text.as_bytes());
    let train = words::train_split(&text);
    let vocab = Vocabulary::from_text(train);
    let val_text = words::tally(&vocab, &text[train.len()..], false);
    let unigram = (0..gen.samples).fold(Tally::default(), |t, i| {
        t.add(words::tally(
            &vocab,
            &words::unigram_sample(train, gen.chars, gen.seed + i as u64),
            true,
        ))
    });

    let mut runs: Vec<Run> = Vec::new();
    for arg in &cli.runs {
        let files = run::resolve(arg)?;
        if runs.iter().any(|r| r.files.name == files.name) {
            bail!(
                "two runs are named {:?}: name them with --run NAME=PATH",
                files.name
            );
        }
        eprintln!(
            "report: {} ({}): generating {} x {} characters",
            files.name,
            files.model.display(),
            gen.samples,
            gen.chars
        );
        let r = run::load(files, &gen)?;
        // Word accuracy is only meaningful against the text the run was trained on.
        if let Some(trained) = r.meta_str("data_sha256").filter(|s| *s != sha) {
            bail!(
                "{}: trained on data with sha256 {trained}, but --data {} has {sha}",
                r.files.name,
                cli.data.display()
            );
        }
        runs.push(r);
    }
    // Each sample's words tallied once: pooled per run for the table, and per sample for the
    // distribution (samples with no complete word left out).
    let tallies: Vec<Vec<Tally>> = runs
        .iter()
        .map(|r| {
            r.samples
                .iter()
                .map(|s| words::tally(&vocab, s, true))
                .collect()
        })
        .collect();
    let accuracy: Vec<Tally> = tallies
        .iter()
        .map(|ts| ts.iter().fold(Tally::default(), |a, &t| a.add(t)))
        .collect();
    let shares: Vec<Vec<f64>> = tallies
        .iter()
        .map(|ts| {
            ts.iter()
                .filter(|t| t.total > 0)
                .map(Tally::share)
                .collect()
        })
        .collect();

    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let out = |f: &str| cli.out.join(f);
    let mut figures: Vec<(String, String)> = Vec::new();

    let logged: Vec<(&str, &[log::Eval])> = runs
        .iter()
        .filter(|r| !r.log.is_empty())
        .map(|r| (r.files.name.as_str(), r.log.as_slice()))
        .collect();
    if !logged.is_empty() {
        plots::loss_curves(&out("loss.svg"), &logged)?;
        figures.push(("loss.svg".into(), "Loss curves, all runs".into()));
        for (i, r) in runs.iter().enumerate().filter(|(_, r)| !r.log.is_empty()) {
            let f = format!("loss_{}.svg", file_safe(&r.files.name));
            plots::loss_run(&out(&f), &r.files.name, plots::run_color(i), &r.log)?;
            figures.push((f, format!("Loss and learning rate: {}", r.files.name)));
        }
    }

    let acc_runs: Vec<(&str, Vec<f64>)> = runs
        .iter()
        .zip(&shares)
        .map(|(r, a)| (r.files.name.as_str(), a.clone()))
        .collect();
    let refs = [
        ("val text", val_text.share()),
        ("unigram chars", unigram.share()),
    ];
    plots::word_accuracy(&out("word_accuracy.svg"), &acc_runs, &refs)?;
    figures.push(("word_accuracy.svg".into(), "Word accuracy".into()));

    let per_sample = format!("Inference: seconds per {}-character sample", gen.chars);
    plots::time_boxes(
        &out("inference_time.svg"),
        &[
            (
                per_sample.as_str(),
                runs.iter()
                    .map(|r| (r.files.name.as_str(), r.sample_seconds.clone()))
                    .collect(),
            ),
            (
                "Inference: seconds per token",
                runs.iter()
                    .map(|r| (r.files.name.as_str(), r.latency.clone()))
                    .collect(),
            ),
        ],
    )?;
    figures.push((
        "inference_time.svg".into(),
        format!(
            "Inference time: {} samples × {} characters per run, and per token",
            gen.samples, gen.chars
        ),
    ));
    let lat: Vec<(&str, &[f64])> = runs
        .iter()
        .map(|r| (r.files.name.as_str(), r.latency.as_slice()))
        .collect();
    plots::latency_histograms(&out("decode_latency.svg"), &lat)?;
    figures.push((
        "decode_latency.svg".into(),
        "Inference: per-token decode latency".into(),
    ));

    if !logged.is_empty() {
        let with_log = || runs.iter().filter(|r| !r.log.is_empty());
        let timed: Vec<(&str, (Vec<f64>, bool))> = with_log()
            .map(|r| (r.files.name.as_str(), log::step_times(&r.log)))
            .collect();
        let per_step = timed.iter().all(|(_, (_, every))| *every);
        let steps = timed.into_iter().map(|(n, (t, _))| (n, t)).collect();
        let evals = with_log()
            .map(|r| {
                (
                    r.files.name.as_str(),
                    r.log.iter().map(|e| e.eval_time).collect::<Vec<_>>(),
                )
            })
            .collect();
        let totals = with_log()
            .map(|r| {
                let total = r
                    .meta_f64("total_seconds")
                    .unwrap_or_else(|| r.log.last().map_or(0.0, |e| e.elapsed));
                (r.files.name.as_str(), vec![total])
            })
            .collect();
        plots::time_boxes(
            &out("train_eval_time.svg"),
            &[
                (
                    if per_step {
                        "Training: seconds per step (every step)"
                    } else {
                        "Training: seconds per step (interval means)"
                    },
                    steps,
                ),
                ("Evaluation: seconds per estimate_loss", evals),
                ("Total: train + eval seconds", totals),
            ],
        )?;
        figures.push((
            "train_eval_time.svg".into(),
            "Training and evaluation time distributions".into(),
        ));
    }

    for r in &runs {
        let f = format!("wpe_{}.svg", file_safe(&r.files.name));
        wpe_figure(&out(&f), r)?;
        figures.push((f, format!("Positional embedding: {}", r.files.name)));
    }

    let mut sections = Vec::new();
    let named = |args: &[String]| -> Result<Vec<(String, PathBuf)>> {
        args.iter()
            .map(|a| {
                let (n, p) = a
                    .split_once('=')
                    .with_context(|| format!("{a:?}: expected NAME=LOG"))?;
                Ok((n.to_string(), PathBuf::from(p)))
            })
            .collect()
    };
    if !cli.scale_runs.is_empty() {
        sections.push(analysis::scale(&cli.out, &named(&cli.scale_runs)?)?);
    }
    if !cli.pos_runs.is_empty() {
        sections.push(analysis::positions(&cli.out, &named(&cli.pos_runs)?)?);
    }
    if !cli.no_attention_cost {
        eprintln!("report: timing attention over 16..4096 positions");
        sections.push(analysis::attention_cost(&cli.out)?);
    }
    let absent: Vec<(String, String)> = cli
        .absent
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(n, r)| (n.to_string(), r.to_string()))
                .with_context(|| format!("--absent {a:?}: expected NAME=REASON"))
        })
        .collect::<Result<_>>()?;

    let command = std::iter::once("report".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a }),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let cx = readme::Context {
        command,
        gen,
        accuracy: &accuracy,
        shares: &shares,
        absent: &absent,
        sections: &sections,
        val_text,
        unigram,
        vocab_words: vocab.len(),
        figures: &figures,
    };
    let readme_path = out("README.md");
    std::fs::write(&readme_path, readme::render(&runs, &cx))
        .with_context(|| format!("writing {}", readme_path.display()))?;
    let written: Vec<(String, String)> = figures
        .iter()
        .cloned()
        .chain(
            sections
                .iter()
                .flat_map(|s| s.figures.iter().map(|f| (f.clone(), String::new()))),
        )
        .collect();
    remove_stale(&cli.out, &written)?;
    for (r, a) in runs.iter().zip(&accuracy) {
        let lat = stats::sorted(&r.latency);
        eprintln!(
            "report: {}: word accuracy {:.1}% ({} of {} words), decode p50 {}",
            r.files.name,
            100.0 * a.share(),
            a.found,
            a.total,
            plots::fmt_seconds(stats::quantile(&lat, 0.5))
        );
    }
    eprintln!(
        "report: references: val text {:.1}%, unigram chars {:.1}%; wrote {} figures and {}",
        100.0 * val_text.share(),
        100.0 * unigram.share(),
        figures.len(),
        readme_path.display()
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `name` with everything but ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The wpe heatmap and the position-by-position cosine similarity of one run.
fn wpe_figure(path: &Path, r: &Run) -> Result<()> {
    let (t, c) = (r.shape.block_size, r.shape.n_embd);
    let at = |p: usize, d: usize| r.wpe[p * c + d] as f64;
    let ys = stats::strided(t, WPE_MAX_POS);
    let xs = stats::strided(c, WPE_MAX_DIM);
    let values: Vec<f64> = ys
        .iter()
        .flat_map(|&p| xs.iter().map(move |&d| at(p, d)))
        .collect();
    // A symmetric scale at the 99th percentile of |w|, so a few large entries do not wash
    // out the rest.
    let mags = stats::sorted(&r.wpe.iter().map(|v| v.abs() as f64).collect::<Vec<_>>());
    let a = stats::quantile(&mags, 0.99).max(1e-6);
    let cos = &stats::cosine_matrix(&r.wpe, c);
    let ps = stats::strided(t, COS_MAX_POS);
    let cos_values: Vec<f64> = ps
        .iter()
        .flat_map(|&i| ps.iter().map(move |&j| cos[i * t + j]))
        .collect();
    // "every 2nd position", when strided.
    let every = |idx: &[usize], n: usize, what: &str| {
        (idx.len() < n)
            .then(|| format!("every {} {what}", ordinal(idx.get(1).copied().unwrap_or(1))))
    };
    let shown = |parts: Vec<Option<String>>| {
        let p: Vec<String> = parts.into_iter().flatten().collect();
        if p.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.join(", "))
        }
    };
    plots::heatmaps(
        path,
        &format!(
            "{}: positional embedding wpe.weight [{t}, {c}] ({})",
            r.files.name, r.dtype
        ),
        &[
            Heatmap {
                title: format!(
                    "wpe[position, dim]{}",
                    shown(vec![every(&ys, t, "position"), every(&xs, c, "dimension")])
                ),
                x_desc: "embedding dimension".into(),
                y_desc: "position".into(),
                xs,
                x_extent: c,
                ys,
                y_extent: t,
                values,
                range: (-a, a),
            },
            Heatmap {
                title: format!(
                    "cosine similarity of positions{}",
                    shown(vec![every(&ps, t, "position")])
                ),
                x_desc: "position".into(),
                y_desc: "position".into(),
                xs: ps.clone(),
                x_extent: t,
                ys: ps,
                y_extent: t,
                values: cos_values,
                range: (-1.0, 1.0),
            },
        ],
    )
}

/// Per-run figures of an earlier report whose run is gone (so the directory shows only
/// what README.md links), and the train/eval figure when no run has a log.
fn remove_stale(dir: &Path, figures: &[(String, String)]) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if is_report_figure(&name) && !figures.iter().any(|(f, _)| *f == name) {
            std::fs::remove_file(dir.join(&name))?;
            eprintln!("report: removed stale {name}");
        }
    }
    Ok(())
}

/// The names the report writes.
fn is_report_figure(name: &str) -> bool {
    let fixed = [
        "loss.svg",
        "word_accuracy.svg",
        "decode_latency.svg",
        "inference_time.svg",
        "train_eval_time.svg",
        "scale_dk.svg",
        "scale_training.svg",
        "positions.svg",
        "attention_cost.svg",
    ];
    fixed.contains(&name)
        || (name.ends_with(".svg") && (name.starts_with("loss_") || name.starts_with("wpe_")))
}

/// `2nd`, `3rd`, `4th`, ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(file_safe("edge"), "edge");
        assert_eq!(file_safe("model1 q4/x"), "model1_q4_x");
        assert_eq!(file_safe("m-1_a.b"), "m-1_a.b");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            [ordinal(2), ordinal(3), ordinal(4), ordinal(11), ordinal(22)],
            ["2nd", "3rd", "4th", "11th", "22nd"]
        );
    }
}
