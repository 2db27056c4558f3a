//! The `exporter` binary end to end: the model1 run and its recorded val loss, the
//! quantize sub-command, resume after a stop or a kill, atomic outputs, and `convert` of a
//! format 1 file.
use folio_tests::reference::{Options, Reference};
use folio_tests::AlignedBytes;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exporter failed: {err}");
    err
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
    run(exporter().args(args).arg("--out").arg(&out));
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
    run(exporter().args(args).arg(&master).arg("--out").arg(&q4));
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
    run(&mut small(&a));
    run(small(&b).args(["--stop-after", "25"]));
    assert!(!b.exists(), "a stopped run must not write --out");
    assert!(d.join("b.ckpt.safetensors").exists());
    let err = run(small(&b).arg("--resume"));
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
    let err = run(exporter()
        .args([
            "train",
            "--resume",
            "--threads",
            "1",
            "--report-windows",
            "4",
        ])
        .arg("--out")
        .arg(&out));
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
    let err = run(exporter().arg("convert").arg(&old).arg("--out").arg(&new));
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
