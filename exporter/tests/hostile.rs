//! The `exporter` binary against hostile flags, files and situations: hyper-parameters out
//! of range or too big for memory, special files as data, input or output, an unwritable
//! output directory, a full stderr, two runs on one `--out`, a resume with another config,
//! a master whose config the runtime cannot load.
//!
//! Every failing case asserts the exit code and exactly one `exporter: error:` line (the
//! last line of stderr) and runs under a deadline, so a hang fails instead of blocking.
#![cfg(unix)]

use folio_tests::process::output;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exporter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exporter"));
    c.env("OMP_WAIT_POLICY", "passive");
    c
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("folio-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    let mut c = exporter();
    c.args(args);
    output(c, 120, &args.join(" "))
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

fn succeeds(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
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
