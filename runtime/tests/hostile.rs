//! The `folio` binary against hostile files, flags and streams: special files, models sized
//! to exhaust memory, non-finite weights and temperatures, control characters in the
//! file's text, full and closed output streams, a file changed while it runs.
//!
//! Every failing case asserts the exit code and exactly one `folio: error:` line on stderr;
//! every case runs under a deadline, so a hang fails instead of blocking the suite.
//!
//! The model files are written here: a header, then a data section left as a sparse hole
//! (all weights zero) with a few values patched in. A zero model is enough for every case
//! (its logits are all zero), and a hole lets a file claim a `block_size` of 2^24 in a few
//! KB of disk.
#![cfg(unix)]

use folio_tests::process::{output, wait};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Shape of a fixture model: vocabulary `\n a b c d`, F32 tensors.
#[derive(Clone, Copy)]
struct Shape {
    block_size: usize,
    n_embd: usize,
    n_layer: usize,
}

const SMALL: Shape = Shape {
    block_size: 8,
    n_embd: 32,
    n_layer: 1,
};
const VOCAB: usize = 5;

fn tensors(s: Shape) -> Vec<(String, Vec<usize>)> {
    let (c, t) = (s.n_embd, s.block_size);
    let mut v = vec![
        ("wte.weight".to_string(), vec![VOCAB, c]),
        ("wpe.weight".to_string(), vec![t, c]),
        ("ln_f.weight".to_string(), vec![c]),
        ("ln_f.bias".to_string(), vec![c]),
    ];
    for i in 0..s.n_layer {
        for (suffix, shape) in [
            ("ln_1.weight", vec![c]),
            ("ln_1.bias", vec![c]),
            ("attn.c_attn.weight", vec![3 * c, c]),
            ("attn.c_attn.bias", vec![3 * c]),
            ("attn.c_proj.weight", vec![c, c]),
            ("attn.c_proj.bias", vec![c]),
            ("ln_2.weight", vec![c]),
            ("ln_2.bias", vec![c]),
            ("mlp.c_fc.weight", vec![4 * c, c]),
            ("mlp.c_fc.bias", vec![4 * c]),
            ("mlp.c_proj.weight", vec![c, 4 * c]),
            ("mlp.c_proj.bias", vec![c]),
        ] {
            v.push((format!("h.{i}.{suffix}"), shape));
        }
    }
    v
}

/// The `__metadata__` entries (JSON text of each value, quotes included) of docs/FORMAT.md.
fn metadata(s: Shape) -> Vec<(&'static str, String)> {
    let q = |v: &dyn std::fmt::Display| format!("\"{v}\"");
    vec![
        ("folio.format", q(&2)),
        ("folio.vocab_size", q(&VOCAB)),
        ("folio.block_size", q(&s.block_size)),
        ("folio.n_embd", q(&s.n_embd)),
        ("folio.n_head", q(&4)),
        ("folio.n_layer", q(&s.n_layer)),
        ("folio.layer_norm_eps", q(&"0.00001")),
        ("folio.activation", q(&"gelu_tanh")),
        ("folio.tied_embeddings", q(&true)),
        ("folio.vocab", r#""\nabcd""#.to_string()),
    ]
}

/// Write a model of shape `s` to `path`: `extra_meta` entries (raw JSON values) and
/// `extra_tensors` (1-element, names as raw JSON string bodies) are added, and each
/// `(tensor, index, value)` of `patch` is set in the otherwise all-zero data. LayerNorm
/// gains are 1, and `wte[3]` and `ln_f.bias` hold the same ±0.5 pattern, so every context
/// prefers token 3 (`c`).
fn write_model(
    path: &Path,
    s: Shape,
    extra_meta: &[(&str, &str)],
    extra_tensors: &[&str],
    patch: &[(&str, usize, f32)],
) {
    let mut all = tensors(s);
    all.extend(extra_tensors.iter().map(|n| (n.to_string(), vec![1])));
    let mut meta: Vec<String> = metadata(s)
        .into_iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    meta.extend(extra_meta.iter().map(|(k, v)| format!("\"{k}\": {v}")));
    let mut header = format!("{{\"__metadata__\": {{{}}}", meta.join(", "));
    let mut offset = 0u64;
    let mut at = std::collections::HashMap::new();
    for (name, shape) in &all {
        let bytes = 4 * shape.iter().product::<usize>() as u64;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            ", \"{name}\": {{\"dtype\": \"F32\", \"shape\": [{}], \"data_offsets\": [{offset}, {}]}}",
            dims.join(", "),
            offset + bytes
        );
        at.insert(name.clone(), offset);
        offset += bytes;
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let start = 8 + header.len() as u64;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    f.set_len(start + offset).unwrap();
    let mut ones: Vec<(&str, usize, f32)> = Vec::new();
    for (name, shape) in &all {
        if name.ends_with("ln_1.weight") || name.ends_with("ln_2.weight") || name == "ln_f.weight" {
            ones.extend((0..shape[0]).map(|i| (name.as_str(), i, 1.0)));
        }
    }
    let pattern = |i: usize| 0.5 - (i % 2) as f32;
    ones.extend((0..s.n_embd).map(|i| ("wte.weight", 3 * s.n_embd + i, pattern(i))));
    ones.extend((0..s.n_embd).map(|i| ("ln_f.bias", i, pattern(i))));
    for &(name, i, v) in ones.iter().chain(patch) {
        f.seek(SeekFrom::Start(start + at[name] + 4 * i as u64))
            .unwrap();
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("folio-hostile");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small_model(name: &str) -> PathBuf {
    let p = dir().join(name);
    write_model(&p, SMALL, &[], &[], &[]);
    p
}

fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

fn run(args: &[&str]) -> Output {
    let mut cmd = folio();
    cmd.args(args);
    output(cmd, 60, &args.join(" "))
}

/// Run through `sh -c SCRIPT folio ARGS...` (`"$0" "$@"` is the folio command), for
/// redirections the Command API cannot express.
fn run_sh(script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_folio"))
        .args(args);
    output(cmd, 60, script)
}

/// A failure with status `code` and exactly one stderr line, `folio: error: ...` holding
/// every needle.
fn fails(o: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("folio: error: "), "stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "stderr {err:?} lacks {n:?}");
    }
}

fn succeeds(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}, stderr {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success());
}

#[test]
fn special_files_fail_fast_with_their_kind() {
    let fifo = dir().join("model.fifo");
    mkfifo(&fifo);
    let d = dir().join("a-directory.safetensors");
    std::fs::create_dir_all(&d).unwrap();
    let (fifo, d) = (fifo.to_str().unwrap(), d.to_str().unwrap());
    for cmd in [
        &["info"][..],
        &["generate"],
        &["bench"],
        &["logits", "--text", "a"],
    ] {
        for mmap in [&[][..], &["--no-mmap"]] {
            for (path, kind) in [
                (fifo, "a FIFO"),
                (d, "a directory"),
                ("/dev/zero", "a character device"),
                ("/dev/null", "a character device"),
            ] {
                let mut args = cmd.to_vec();
                args.insert(1, path);
                args.extend(mmap);
                fails(&run(&args), 1, &["cannot open", kind, "not a regular file"]);
            }
        }
    }
    let missing = dir().join("missing.safetensors");
    fails(
        &run(&["info", missing.to_str().unwrap()]),
        1,
        &["cannot open", "No such file"],
    );
    let empty = dir().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    fails(
        &run(&["info", empty.to_str().unwrap()]),
        1,
        &["not a valid folio model", "shorter than the 8-byte"],
    );
}

#[test]
fn a_session_over_the_memory_limit_is_refused_before_allocating() {
    // block_size 2^20 and 16 layers: a 128 MiB data section that is a hole on disk, and a
    // session that needs 2 GiB of KV cache.
    let huge = dir().join("huge-block.safetensors");
    let shape = Shape {
        block_size: 1 << 20,
        n_embd: 32,
        n_layer: 16,
    };
    write_model(&huge, shape, &[], &[], &[]);
    let h = huge.to_str().unwrap();
    let info = succeeds(&run(&["info", h]));
    assert!(info.contains("block_size=1048576"), "{info}");
    for args in [
        &["generate", h, "-n", "3"][..],
        &["logits", h, "--text", "ab"],
        &["bench", h],
        &["bench", h, "-n", "1048576"],
        &["generate", h, "--max-memory", "1900M"],
    ] {
        fails(
            &run(args),
            1,
            &["session", "--max-memory", "KV cache 2147483648 bytes"],
        );
    }
    // Read into memory, the file itself is over the limit.
    fails(
        &run(&["info", h, "--no-mmap", "--max-memory", "64M"]),
        1,
        &["more than the 67108864 bytes allowed", "--max-memory"],
    );

    // The limit is the user's: a small model runs under the default, and fails below its size.
    let m = small_model("limit.safetensors");
    let m = m.to_str().unwrap();
    succeeds(&run(&["generate", m, "-n", "4"]));
    succeeds(&run(&["generate", m, "-n", "4", "--max-memory", "64K"]));
    fails(
        &run(&["generate", m, "--max-memory", "1000"]),
        1,
        &["session", "--max-memory 1000"],
    );
    fails(
        &run(&["logits", m, "--text", "a", "--max-memory", "1K"]),
        1,
        &["session"],
    );
    fails(
        &run(&["bench", m, "--max-memory", "2000"]),
        1,
        &["--max-memory"],
    );
    // --no-mmap counts the file copy too.
    let file_len = std::fs::metadata(m).unwrap().len().to_string();
    fails(
        &run(&["info", m, "--no-mmap", "--max-memory", "4K"]),
        1,
        &["more than the 4096 bytes allowed"],
    );
    succeeds(&run(&["info", m, "--no-mmap", "--max-memory", &file_len]));
    for bad in ["12X", "-1", "", "99999999999T", "1.5G"] {
        let arg = format!("--max-memory={bad}");
        fails(&run(&["info", m, &arg]), 2, &["--max-memory", "byte count"]);
    }
}

#[test]
fn sampler_settings_are_checked_and_tiny_temperatures_are_greedy() {
    let m = small_model("sampler.safetensors");
    let m = m.to_str().unwrap();
    let greedy = succeeds(&run(&["generate", m, "-n", "12", "--temperature", "0"]));
    // Before, 1/1e-40 overflowed to inf, 0 * inf = NaN, and the draw emitted token 0
    // ("\n") forever.
    for t in ["1e-40", "1e-45", "2e-39"] {
        let out = succeeds(&run(&["generate", m, "-n", "12", "--temperature", t]));
        assert_eq!(out, greedy, "--temperature {t}");
    }
    assert!(greedy.ends_with("cccccccccccc"), "{greedy:?}");
    for t in ["nan", "inf", "-1", "-1e-40", "-inf"] {
        fails(
            &run(&["generate", m, &format!("--temperature={t}")]),
            1,
            &["temperature must be finite and >= 0"],
        );
    }
    for p in ["0", "1.5", "nan", "-0.1", "inf"] {
        fails(
            &run(&["generate", m, &format!("--top-p={p}")]),
            1,
            &["top_p must be in (0, 1]"],
        );
    }
    fails(&run(&["generate", m, "--top-k=-1"]), 2, &["--top-k"]);
    fails(&run(&["generate", m, "-n", "lots"]), 2, &["invalid value"]);
    fails(&run(&["generate", m, "--frobnicate"]), 2, &["--frobnicate"]);
    fails(&run(&["generate"]), 2, &["MODEL"]);
}

#[test]
fn non_finite_weights_are_reported_and_never_sampled() {
    let m = dir().join("nan.safetensors");
    write_model(
        &m,
        SMALL,
        &[],
        &[],
        &[
            ("ln_f.bias", 3, f32::NAN),
            ("h.0.mlp.c_fc.weight", 7, f32::INFINITY),
        ],
    );
    let m = m.to_str().unwrap();
    let info = succeeds(&run(&["info", m]));
    assert!(
        info.contains("weights: 2 NaN or infinite values (first found in h.0.mlp.c_fc.weight)"),
        "{info}"
    );
    let clean = succeeds(&run(&[
        "info",
        small_model("finite.safetensors").to_str().unwrap(),
    ]));
    assert!(clean.contains("weights: all finite"), "{clean}");
    for t in ["0", "0.8"] {
        let o = run(&[
            "generate",
            m,
            "-n",
            "100000",
            "--temperature",
            t,
            "--prompt",
            "ab",
        ]);
        fails(&o, 1, &["logit of token 0 is NaN or infinite"]);
        // The prompt echo is all that reached stdout.
        assert_eq!(o.stdout, b"ab");
    }
    fails(&run(&["bench", m]), 1, &["NaN or infinite"]);
    // logits prints what it computed: non-finite values as JSON null.
    let out = succeeds(&run(&["logits", m, "--text", "a"]));
    assert!(out.contains("null"), "{out}");
}

#[test]
fn control_characters_from_the_file_are_escaped() {
    let m = dir().join("evil\x1b[2J.safetensors");
    write_model(
        &m,
        SMALL,
        &[
            ("folio.dtype", r#""q8_0\u001b]0;pwned\u0007\r""#),
            ("folio.train", r#""{\"steps\": 1}\u001b[31m\u009b\u202e""#),
        ],
        &[r"h.9.evil\u001b[1A\u007fname"],
        &[],
    );
    let out = run(&["info", m.to_str().unwrap()]);
    let text = succeeds(&out);
    for (i, b) in out.stdout.iter().enumerate() {
        assert!(
            *b == b'\n' || (*b >= 0x20 && *b != 0x7f),
            "raw control byte {b:#x} at {i}: {text:?}"
        );
    }
    for c in ['\u{9b}', '\u{202e}'] {
        assert!(!text.contains(c), "{c:?} printed raw: {text:?}");
    }
    for shown in [
        r"dtype label: q8_0\u{1b}]0;pwned\u{7}\r",
        r#"folio.train: {"steps": 1}\u{1b}[31m\u{9b}\u{202e}"#,
        r"h.9.evil\u{1b}[1A\u{7f}name",
        r"evil\u{1b}[2J.safetensors",
        r#"vocab: "\nabcd""#,
    ] {
        assert!(text.contains(shown), "{shown:?} not in {text}");
    }
    // Error lines escape the path too.
    let o = run(&["info", dir().join("gone\x1b[2J").to_str().unwrap()]);
    fails(&o, 1, &[r"gone\u{1b}[2J"]);
    assert!(!o.stderr.contains(&0x1b));
}

#[test]
fn output_stream_failures_are_errors_not_panics_or_silence() {
    let m = small_model("streams.safetensors");
    let m = m.to_str().unwrap();
    // A full stdout: the write fails, the error says so, exit 1.
    for args in [
        &["generate", m, "-n", "5"][..],
        &["info", m],
        &["logits", m, "--text", "ab"],
        &["bench", m, "--json"],
    ] {
        fails(
            &run_sh(r#"exec "$0" "$@" >/dev/full"#, args),
            1,
            &["cannot write to standard output", "No space left on device"],
        );
        // A closed stdout is an error too (Rust's stdout would report success).
        fails(
            &run_sh(r#"exec "$0" "$@" >&-"#, args),
            1,
            &["standard output is not open"],
        );
    }
    // A full stderr is ignored: success stays success, an error keeps its exit code.
    let o = run_sh(r#"exec "$0" "$@" 2>/dev/full"#, &["generate", m, "-n", "5"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout, b"ccccc");
    let o = run_sh(r#"exec "$0" "$@" 2>/dev/full"#, &["info", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run_sh(r#"exec "$0" "$@" 2>&-"#, &["generate", m, "--top-p", "7"]);
    assert_eq!(o.status.code(), Some(1));
    // A reader that goes away: the broken pipe is reported, not a silent success.
    let mut child = folio()
        .args(["generate", m, "-n", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = wait(child, 60, "generate into a closed pipe");
    fails(&o, 1, &["cannot write to standard output", "Broken pipe"]);
    // --help goes through the same checked stdout.
    let o = run_sh(r#"exec "$0" "$@" >/dev/full"#, &["--help"]);
    fails(&o, 1, &["cannot write to standard output"]);
}

#[test]
fn no_mmap_survives_the_file_being_truncated_while_it_runs() {
    let src = small_model("truncate.safetensors");
    let len = std::fs::metadata(&src).unwrap().len();
    let mut child = folio()
        .args([
            "generate",
            src.to_str().unwrap(),
            "-n",
            "200000",
            "--no-mmap",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The prompt echo comes after the file was read: truncate it then.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let o = wait(child, 120, "generate --no-mmap");
    assert!(
        o.status.success(),
        "{:?}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(1 + rest.len(), 200_000);
    // The truncated file is now refused at load, mapped or read.
    for extra in [&[][..], &["--no-mmap"]] {
        let mut args = vec!["info", src.to_str().unwrap()];
        args.extend(extra);
        fails(&run(&args), 1, &["not a valid folio model"]);
    }
}
