//! The `exporter` binary end to end, one suite:
//!
//! - the model1 run and its recorded val loss, the quantize sub-command, resume after a stop
//!   or a kill, atomic outputs, and `convert` of a format 1 file;
//! - hostile flags, files and situations: hyper-parameters out of range or too big for
//!   memory, special files as data, input or output, an unwritable output directory, a full
//!   stderr, two runs on one `--out`, a resume with another config, a master whose config
//!   the runtime cannot load.
//!
//! Every failing case asserts the exit code and exactly one `exporter: error:` line (the
//! last line of stderr) and runs under a deadline, so a hang fails instead of blocking.
#![cfg(unix)]

use folio_tests::process::output;
use folio_tests::reference::{Options, Reference};
use folio_tests::AlignedBytes;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exporter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exporter"));
    c.env("OMP_WAIT_POLICY", "passive");
    c
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("folio-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `exporter ARGS...` with a 120 s deadline.
fn run(args: &[&str]) -> Output {
    let mut c = exporter();
    c.args(args);
    output(c, 120, &args.join(" "))
}

/// Run `c` to success; its stderr.
fn finish(c: &mut Command) -> String {
    succeeds(&c.output().unwrap())
}

/// Assert success; stderr.
fn succeeds(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "status {:?}: {err}", o.status);
    err
}

/// A failure with status `code` whose stderr has exactly one `exporter: error:` line, the
/// last, holding every needle.
fn fails(o: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("exporter: error: "), "stderr: {err}");
    for n in needles {
        assert!(last.contains(n), "stderr {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, h) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    h.metadata().clone().unwrap()
}

fn train_meta(path: &Path) -> serde_json::Value {
    serde_json::from_str(&metadata(path)["folio.train"]).unwrap()
}

/// The val split as the exporter defines it (last 10% of the text), tokenised with the file's vocab.
fn val_tokens(r: &Reference) -> Vec<u32> {
    let text = folio_exporter::data::load_text(None).unwrap().text;
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len() * 9 / 10;
    let s: String = chars[n..].iter().collect();
    r.encode(&s)
}

#[test]
fn model1_300_steps_records_a_val_loss_an_independent_f64_forward_agrees_with() {
    let d = tmpdir("model1");
    let out = d.join("m1.safetensors");
    let args = [
        "train",
        "--preset",
        "model1",
        "--max-iters",
        "300",
        "--dtype",
        "f32",
        "--threads",
        "1",
    ];
    finish(exporter().args(args).arg("--out").arg(&out));
    let meta = train_meta(&out);
    assert_eq!(metadata(&out)["folio.dtype"], "f32");
    assert_eq!(meta["iters"], 300);
    assert_eq!(meta["preset"], "model1");
    assert_eq!(meta["data_sha256"], folio_exporter::data::SHA256);
    for k in [
        "lr",
        "min_lr",
        "warmup_iters",
        "weight_decay",
        "grad_clip",
        "dropout",
        "seed",
        "batch_size",
        "git_rev",
    ] {
        assert!(!meta[k].is_null(), "folio.train lacks {k}");
    }
    let recorded = meta["val_loss"].as_f64().unwrap();
    // Independent: folio-tests' f64 reference (no tch, no runtime) over every val position
    // in consecutive block_size windows.
    let r = Reference::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    let t = r.config.block_size;
    let val = val_tokens(&r);
    let (mut total, mut count) = (0.0, 0usize);
    for w in val.chunks_exact(t + 1).step_by(3) {
        let logits = r.logits(&w[..t], Options::EXACT);
        for (l, &y) in logits.iter().zip(&w[1..]) {
            let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + l.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            total += lse - l[y as usize];
            count += 1;
        }
    }
    let independent = total / count as f64;
    eprintln!(
        "recorded val {recorded:.4}, independent f64 {independent:.4} over {count} positions"
    );
    assert!(
        (recorded - independent).abs() <= 0.02 * independent,
        "recorded {recorded} vs independent {independent}"
    );
    // The log has one line per evaluation (0, 250, 300), each with the documented fields.
    let log = std::fs::read_to_string(d.join("m1.log.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["iter"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 250, 300]
    );
    assert!(lines[2]["val_loss"].as_f64().unwrap() < lines[0]["val_loss"].as_f64().unwrap());
    for k in [
        "train_loss",
        "lr",
        "step_time",
        "eval_time",
        "tokens_per_s",
        "elapsed",
    ] {
        assert!(lines[2][k].is_number(), "log lacks {k}");
    }
    // quantize re-exports the f32 master without retraining; the runtime loads the result.
    let q4 = d.join("m1.q4.safetensors");
    let master = d.join("m1.f32.safetensors");
    let args = [
        "quantize",
        "--dtype",
        "q4_0",
        "--threads",
        "1",
        "--report-windows",
        "16",
    ];
    finish(exporter().args(args).arg(&master).arg("--out").arg(&q4));
    let q = train_meta(&q4);
    let dtype = metadata(&q4)["folio.dtype"].clone();
    assert!(dtype == "q4_0" || dtype == "mixed", "{dtype}");
    assert_eq!(q["quantization"]["windows"], 16);
    assert!(q["quantization"]["val_loss"].as_f64().unwrap() > 0.0);
    let bytes = AlignedBytes::new(&std::fs::read(&q4).unwrap());
    assert!(folio_runtime::Model::from_bytes(bytes.bytes()).is_ok());
    std::fs::remove_dir_all(&d).unwrap();
}

fn small(out: &Path) -> Command {
    let mut c = exporter();
    c.args([
        "train",
        "--preset",
        "model1",
        "--max-iters",
        "40",
        "--eval-interval",
        "10",
        "--eval-iters",
        "2",
    ])
    .args([
        "--dtype",
        "q8_0",
        "--threads",
        "1",
        "--report-windows",
        "4",
        "--dropout",
        "0.1",
    ])
    .arg("--out")
    .arg(out);
    c
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    tensors_of(&std::fs::read(path).unwrap())
}

#[test]
fn a_stopped_run_resumes_to_the_same_weights() {
    let d = tmpdir("resume");
    let (a, b) = (d.join("a.safetensors"), d.join("b.safetensors"));
    finish(&mut small(&a));
    finish(small(&b).args(["--stop-after", "25"]));
    assert!(!b.exists(), "a stopped run must not write --out");
    assert!(d.join("b.ckpt.safetensors").exists());
    let err = finish(small(&b).arg("--resume"));
    assert!(err.contains("resuming"), "{err}");
    // Same batches, same dropout masks, same AdamW moments: bit-identical weights.
    assert_eq!(
        tensors(&d.join("a.f32.safetensors")),
        tensors(&d.join("b.f32.safetensors"))
    );
    assert_eq!(tensors(&a), tensors(&b));
    let log = std::fs::read_to_string(d.join("b.log.jsonl")).unwrap();
    let iters: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(iters, vec![0, 10, 20, 30, 40]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_killed_run_leaves_no_model_and_resumes() {
    let d = tmpdir("kill");
    let out = d.join("k.safetensors");
    let log = d.join("k.log.jsonl");
    let mut c = exporter();
    c.args([
        "train",
        "--preset",
        "model1",
        "--max-iters",
        "300",
        "--eval-interval",
        "50",
        "--eval-iters",
        "2",
    ])
    .args([
        "--batch-size",
        "16",
        "--block-size",
        "64",
        "--n-embd",
        "128",
        "--n-layer",
        "2",
    ])
    .args(["--threads", "1", "--report-windows", "4"])
    .arg("--out")
    .arg(&out)
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    // Wait until a checkpoint past step 0 is on disk, then kill -9 mid-training.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let n = std::fs::read_to_string(&log)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no evaluation logged");
        assert!(child.try_wait().unwrap().is_none(), "exporter exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "killed run left {}", out.display());
    assert!(!d.join("k.f32.safetensors").exists());
    let ck = folio_exporter::checkpoint::Checkpoint::read(&d.join("k.ckpt.safetensors")).unwrap();
    assert!(
        ck.progress.step >= 100 && ck.progress.step < 300,
        "checkpoint at step {}",
        ck.progress.step
    );
    // Resume the killed run: it continues from the checkpoint (its hyper-parameters) to the end.
    let err = finish(
        exporter()
            .args([
                "train",
                "--resume",
                "--threads",
                "1",
                "--report-windows",
                "4",
            ])
            .arg("--out")
            .arg(&out),
    );
    assert!(
        err.contains(&format!(
            "resuming {}",
            d.join("k.ckpt.safetensors").display()
        )),
        "{err}"
    );
    let meta = train_meta(&out);
    assert_eq!(meta["iters"], 300);
    assert_eq!(meta["n_embd"], 128);
    let bytes = AlignedBytes::new(&std::fs::read(&out).unwrap());
    assert!(folio_runtime::Model::from_bytes(bytes.bytes()).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") && !n.contains("ckpt"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary model files left: {leftovers:?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn convert_upgrades_a_format_1_file() {
    use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
    use folio_tests::handwritten::edit_header;
    let d = tmpdir("convert");
    let config = Config::TINY[1];
    let new_file = FixtureSpec::new(config, Plan::All(Encoding::Q8_0), 4).to_bytes();
    // The same model as format 1: config and vocabulary as JSON inside strings.
    let old_file = edit_header(&new_file, |h| {
        let vocab: Vec<String> = folio_tests::fixture::vocab_for(config.vocab_size)
            .iter()
            .map(|c| c.to_string())
            .collect();
        let cfg = serde_json::json!({
            "vocab_size": config.vocab_size, "block_size": config.block_size,
            "n_embd": config.n_embd, "n_head": config.n_head, "n_layer": config.n_layer,
            "layer_norm_eps": config.layer_norm_eps, "activation": "gelu_tanh",
            "tied_embeddings": config.tied_embeddings,
        });
        h["__metadata__"] = serde_json::json!({
            "folio.format": "1",
            "folio.config": cfg.to_string(),
            "folio.vocab": serde_json::to_string(&vocab).unwrap(),
            "folio.dtype": "q8_0",
        });
    });
    let (old, new) = (d.join("old.safetensors"), d.join("new.safetensors"));
    std::fs::write(&old, &old_file).unwrap();
    let a = AlignedBytes::new(&old_file);
    assert_eq!(
        folio_runtime::Model::from_bytes(a.bytes()).map(|_| ()),
        Err(folio_runtime::Error::Format1)
    );
    let err = finish(exporter().arg("convert").arg(&old).arg("--out").arg(&new));
    assert!(
        err.contains("from format 1") && !err.contains("changed by"),
        "{err}"
    );
    // Same tensors, byte for byte; format 2 metadata; the runtime's logits unchanged.
    assert_eq!(tensors(&new), tensors_of(&new_file));
    let meta = metadata(&new);
    assert_eq!(meta["folio.format"], "2");
    assert_eq!(meta["folio.n_embd"], config.n_embd.to_string());
    let tokens: Vec<u32> = (0..config.block_size as u32).collect();
    let converted = AlignedBytes::new(&std::fs::read(&new).unwrap());
    let original = AlignedBytes::new(&new_file);
    assert_eq!(
        folio_tests::runtime_logits(converted.bytes(), &tokens).unwrap(),
        folio_tests::runtime_logits(original.bytes(), &tokens).unwrap()
    );
    std::fs::remove_dir_all(&d).unwrap();
}

fn tensors_of(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// A model1 run of `iters` steps into `out`, evaluating every `every` steps (6 and 3:
/// seconds).
fn tiny_run(out: &Path, iters: usize, every: usize) -> Vec<String> {
    let (iters, every) = (iters.to_string(), every.to_string());
    let args = [
        "train",
        "--preset",
        "model1",
        "--max-iters",
        &iters,
        "--eval-interval",
        &every,
        "--eval-iters",
        "1",
        "--threads",
        "1",
        "--report-windows",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.iter().map(|s| s.to_string()).collect()
}

fn tiny(out: &Path) -> Vec<String> {
    tiny_run(out, 6, 3)
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn bad_hyper_parameters_fail_before_training() {
    let d = tmpdir("hyper");
    let out = d.join("m.safetensors");
    let out = out.to_str().unwrap();
    for (flags, code, needles) in [
        (
            &["--dropout", "1.5"][..],
            1,
            &["dropout 1.5 is not in [0, 1)"][..],
        ),
        (&["--dropout", "nan"], 1, &["dropout NaN"]),
        (&["--dropout=-0.1"], 1, &["dropout -0.1"]),
        (&["--n-layer", "17"], 1, &["n_layer 17", "MAX_LAYERS 16"]),
        (
            &["--n-embd", "100", "--n-head", "3"],
            1,
            &["n_embd 100 is not a multiple of n_head 3"],
        ),
        (&["--n-head", "0"], 1, &["n_head must be at least 1"]),
        (
            &["--batch-size", "0"],
            1,
            &["batch_size must be at least 1"],
        ),
        (
            &["--block-size", "0"],
            1,
            &["block_size must be at least 1"],
        ),
        (
            &["--eval-interval", "0"],
            1,
            &["eval_interval must be at least 1"],
        ),
        (&["--beta2", "1"], 1, &["beta2 1 is not in [0, 1)"]),
        (&["--lr=-1"], 1, &["lr -1 is not in (0, inf)"]),
        (&["--weight-decay", "inf"], 1, &["weight_decay inf"]),
        (&["--grad-clip", "nan"], 1, &["grad_clip NaN"]),
        (&["--threads=-3"], 1, &["--threads -3"]),
        (&["--threads", "100000"], 1, &["--threads 100000"]),
        // Sizes that only the data or the memory estimate rule out.
        (
            &["--block-size", "200000"],
            1,
            &["block_size 200000 leaves no window"],
        ),
        (
            &["--block-size", "20000"],
            1,
            &["needs about", "TiB by estimate", "MemAvailable"],
        ),
        (
            &["--batch-size", "1000000000000"],
            1,
            &["batch_size 1000000000000", "EiB by estimate, more than the"],
        ),
        (
            &["--report-windows", "100000000"],
            1,
            &["--report-windows 100000000"],
        ),
        // Syntax and names.
        (
            &["--batch-size", "1e12"],
            2,
            &["invalid value '1e12' for '--batch-size"],
        ),
        (&["--frobnicate"], 2, &["--frobnicate"]),
        (&["--preset", "model9"], 1, &["unknown preset \"model9\""]),
        (&["--device", "tpu"], 1, &["--device \"tpu\""]),
        (&["--dtype", "q3"], 2, &["--dtype"]),
    ] {
        let mut args = vec!["train", "--out", out];
        args.extend(flags);
        let o = run(&args);
        fails(&o, code, needles);
        // Nothing was created: not the directory's files, not the lock.
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert!(left.is_empty(), "{flags:?} left {left:?}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn special_files_and_bad_outputs_fail_fast() {
    let d = tmpdir("files");
    let fifo = d.join("data.fifo");
    mkfifo(&fifo);
    let sub = d.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let out = d.join("m.safetensors");
    let out = out.to_str().unwrap();
    let fifo_s = fifo.to_str().unwrap();
    let sub_s = sub.to_str().unwrap();
    for (data, kind) in [
        ("/dev/zero", "a character device"),
        (fifo_s, "a FIFO"),
        (sub_s, "a directory"),
    ] {
        fails(
            &run(&["train", "--data", data, "--out", out]),
            1,
            &["--data", kind, "not a regular file"],
        );
    }
    let big = d.join("big.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    fails(
        &run(&["train", "--data", big.to_str().unwrap(), "--out", out]),
        1,
        &["68157440 bytes, more than the 67108864 bytes accepted"],
    );
    for (target, needle) in [
        (sub_s, "is a directory, not a regular file"),
        ("/dev/full", "is a character device, not a regular file"),
    ] {
        fails(&run(&["train", "--out", target]), 1, &[needle]);
        fails(
            &run(&["quantize", fifo_s, "--dtype", "q8_0", "--out", target]),
            1,
            &[needle],
        );
    }
    // A sibling that is a directory fails as well, before training.
    std::fs::create_dir_all(d.join("m.log.jsonl")).unwrap();
    fails(
        &run(&["train", "--out", out]),
        1,
        &["m.log.jsonl exists and is a directory"],
    );
    // A directory that cannot be created or written.
    fails(
        &run(&[
            "train",
            "--out",
            "/proc/folio-nope/m.safetensors",
            "--preset",
            "model1",
        ]),
        1,
        &["/proc/folio-nope"],
    );
    let q = d.join("q.safetensors");
    for (input, kind) in [
        (fifo_s, "a FIFO"),
        (sub_s, "a directory"),
        ("/dev/zero", "a character device"),
    ] {
        fails(
            &run(&[
                "quantize",
                input,
                "--dtype",
                "q8_0",
                "--out",
                q.to_str().unwrap(),
            ]),
            1,
            &[kind],
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// A master's config metadata (`folio.block_size`, ...) rewritten by `edit`, which sees
/// them as one object without the `folio.` prefix (the tensors left as they are).
fn edited_master(src: &Path, dst: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = &mut header["__metadata__"];
    let keys = ["vocab_size", "block_size", "n_embd", "n_head", "n_layer"];
    let mut cfg = serde_json::json!({});
    for k in keys {
        let v: u64 = meta[format!("folio.{k}")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        cfg[k] = v.into();
    }
    edit(&mut cfg);
    for k in keys {
        meta[format!("folio.{k}")] = serde_json::Value::String(cfg[k].to_string());
    }
    let mut text = header.to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(dst, out).unwrap();
}

#[test]
fn resume_quantize_streams_and_a_second_run() {
    let d = tmpdir("run");
    let out = d.join("m.safetensors");
    // A run stopped after 3 steps leaves a checkpoint; resuming it with another preset or a
    // different flag is refused and names each difference.
    let mut c = exporter();
    c.args(tiny(&out)).args(["--stop-after", "3"]);
    succeeds(&output(c, 300, "stopped run"));
    let o = run(&[
        "train",
        "--resume",
        "--preset",
        "edge",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails(
        &o,
        1,
        &[
            "--resume",
            "batch_size 8 (checkpoint) vs 32 (asked)",
            "n_embd 64 (checkpoint) vs 128 (asked)",
            "preset \"model1\" (checkpoint) vs \"edge\" (asked)",
        ],
    );
    let o = run(&[
        "train",
        "--resume",
        "--n-layer",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    fails(&o, 1, &["n_layer 3 (checkpoint) vs 2 (asked)"]);
    assert!(!out.exists());
    // Flags that agree continue the run; stderr may be full: exit 0 all the same.
    let script = r#"exec "$0" "$@" 2>/dev/full"#;
    let mut sh = Command::new("sh");
    sh.env("OMP_WAIT_POLICY", "passive")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_exporter"))
        .args(tiny(&out))
        .args(["--resume", "--n-layer", "3"]);
    let o = output(sh, 300, "resume with a full stderr");
    assert_eq!(o.status.code(), Some(0));
    assert!(out.exists());
    // An error with a full stderr keeps its exit code (eprintln! used to panic: 101).
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_exporter"))
        .args(["train", "--dropout", "2"]);
    assert_eq!(output(sh, 60, "error, full stderr").status.code(), Some(1));

    // quantize of a master whose config the runtime cannot load: an error, not a division
    // by zero or an export that fails at the end.
    let master = d.join("m.f32.safetensors");
    let bad = d.join("bad.f32.safetensors");
    let q = d.join("q.safetensors");
    for (edit, needle) in [
        (
            &(|c: &mut serde_json::Value| c["block_size"] = 0.into())
                as &dyn Fn(&mut serde_json::Value),
            "folio.block_size must be a positive decimal integer",
        ),
        (
            &|c: &mut serde_json::Value| c["n_layer"] = 17.into(),
            "folio.n_layer exceeds the runtime capacity 16",
        ),
        (
            &|c: &mut serde_json::Value| c["n_head"] = 5.into(),
            "not a multiple of n_head 5",
        ),
        (
            &|c: &mut serde_json::Value| c["vocab_size"] = 64.into(),
            "folio.vocab has 65",
        ),
    ] {
        edited_master(&master, &bad, edit);
        let o = run(&[
            "quantize",
            bad.to_str().unwrap(),
            "--dtype",
            "q8_0",
            "--threads",
            "1",
            "--out",
            q.to_str().unwrap(),
        ]);
        fails(&o, 1, &[needle]);
        assert!(!q.exists());
    }

    // A master holding a NaN is never exported.
    let mut bytes = std::fs::read(&master).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + n..8 + n + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&bad, bytes).unwrap();
    let o = run(&[
        "quantize",
        bad.to_str().unwrap(),
        "--dtype",
        "q4_0",
        "--threads",
        "1",
        "--out",
        q.to_str().unwrap(),
    ]);
    fails(
        &o,
        1,
        &["NaN or infinite weights in", "(1)", "refusing to write"],
    );
    assert!(!q.exists());

    // Two runs on one --out: the second is refused while the first holds BASE.lock.
    let shared = d.join("shared.safetensors");
    let log = d.join("shared.log.jsonl");
    let mut first = exporter()
        .args(tiny_run(&shared, 100_000, 1))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log.exists() {
        assert!(Instant::now() < deadline, "first run logged nothing");
        assert!(first.try_wait().unwrap().is_none(), "first run exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = run(&tiny(&shared).iter().map(String::as_str).collect::<Vec<_>>());
    fails(&o, 1, &["another run holds", "shared.lock"]);
    let o = run(&["train", "--resume", "--out", shared.to_str().unwrap()]);
    fails(&o, 1, &["another run holds"]);
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock dies with its holder: the next run may go (stopped at once here).
    let mut c = exporter();
    c.args(tiny(&shared)).args(["--stop-after", "0"]);
    succeeds(&output(c, 300, "run after the holder died"));
    std::fs::remove_dir_all(&d).unwrap();
}
