//! The `folio` binary, one suite:
//!
//! - `logits` against the independent f64 reference on files from both writers in every
//!   encoding, greedy `generate` following the reference's argmax, seeded sampling, `info`
//!   and `bench`, files whose header length leaves the data misaligned;
//! - hostile files, flags and streams: special files, models sized to exhaust memory
//!   (sparse zero models, [`handwritten::sparse_model`], that claim a `block_size` of 2^20
//!   in a few KB of disk), non-finite weights and temperatures, control characters in the
//!   file's text, full and closed output streams, a file changed while it runs.
//!
//! Every failure asserts the exit code and exactly one `folio: error:` line on stderr, and
//! every run has a deadline, so a hang fails instead of blocking the suite.
#![cfg(unix)]

use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::handwritten::{self, edit_header, Layout, RawFile};
use folio_tests::process::{output, wait};
use folio_tests::reference::{argmax, Options, Reference};
use folio_tests::rel_diff;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// 8/32/4/1, vocab 11 (" etaoinshrd"), tied.
const SMALL: Config = Config::TINY[0];

/// The zero models' shape: 8/32/4/1, vocabulary [`ZERO_VOCAB`], tied.
const ZERO: Config = Config::new(8, 32, 4, 1).vocab(5);
const ZERO_VOCAB: &str = "\nabcd";

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("folio-cli");
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// Write `bytes` under `name` in the test directory.
fn write(name: &str, bytes: &[u8]) -> String {
    let path = dir().join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path.to_str().expect("utf-8 path").to_string()
}

/// The small fixture with weights large enough for decisive argmaxes.
fn small_model() -> Vec<u8> {
    FixtureSpec::new(SMALL, Plan::All(Encoding::F32), 3)
        .std(0.3)
        .to_bytes()
}

/// A sparse zero model of `config` named `name` (see [`handwritten::sparse_model`]: every
/// context prefers `c`), with extra metadata, extra tensors and patched values.
fn sparse(
    name: &str,
    config: Config,
    meta: &[(&str, &str)],
    tensors: &[&str],
    patch: &[(&str, usize, f32)],
) -> PathBuf {
    let p = dir().join(name);
    handwritten::sparse_model(&p, &config, ZERO_VOCAB, meta, tensors, patch)
        .expect("write a sparse model");
    p
}

/// The plain zero model.
fn zero_model(name: &str) -> PathBuf {
    sparse(name, ZERO, &[], &[], &[])
}

fn folio_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

/// Run `folio ARGS...` with a 60 s deadline.
fn folio(args: &[&str]) -> Output {
    let mut cmd = folio_cmd();
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

/// Assert success; stdout.
fn stdout(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "status {:?}, stderr {err}", o.status);
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

/// Assert a failure with status `code` and exactly one stderr line, `folio: error: ...`
/// holding every needle.
fn fails(o: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("folio: error: "), "stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "stderr {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success());
}

/// Run `folio logits FILE --text TEXT` and parse its JSON: (tokens, logits).
fn cli_logits(path: &str, text: &str) -> (Vec<u32>, Vec<Vec<f64>>) {
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&folio(&["logits", path, "--text", text])))
            .expect("folio logits prints JSON");
    let tokens = v["tokens"].as_array().expect("tokens");
    let tokens = tokens.iter().map(|t| t.as_u64().expect("u64") as u32);
    let row = |r: &serde_json::Value| -> Vec<f64> {
        let r = r.as_array().expect("row");
        r.iter().map(|x| x.as_f64().expect("finite")).collect()
    };
    let logits = v["logits"].as_array().expect("logits").iter().map(row);
    (tokens.collect(), logits.collect())
}

#[test]
fn logits_match_the_reference_on_both_writers() {
    let text = "the rose is red";
    for (i, config) in [Config::TINY[1], Config::LAB[0]].into_iter().enumerate() {
        for (j, plan) in Plan::ALL.into_iter().enumerate() {
            let fx = FixtureSpec::new(config, plan, (i * 10 + j) as u64)
                .std(0.1)
                .build();
            let text: String = text.chars().take(config.block_size).collect();
            let mut files = vec![("safetensors", fx.to_safetensors())];
            for (label, layout) in Layout::variants() {
                files.push((label, handwritten::write(&fx, &layout)));
            }
            for (label, bytes) in files {
                let name = format!(
                    "{i}-{}-{}.safetensors",
                    plan.label(),
                    label.replace(' ', "_")
                );
                let path = write(&name, &bytes);
                let reference = Reference::from_bytes(&bytes).expect("reference");
                let want_tokens = reference.encode(&text);
                let want = reference.logits(&want_tokens, Options::FORMAT);
                let (tokens, got) = cli_logits(&path, &text);
                assert_eq!(tokens, want_tokens, "{label}");
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{label}: one logits row per position"
                );
                // The bounds of parity.rs (FLOAT_BOUND, QUANT_BOUND).
                let bound = if plan.quantised() { 3e-2 } else { 5e-4 };
                for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                    let g: Vec<f32> = g.iter().map(|&x| x as f32).collect();
                    let d = rel_diff(&g, w);
                    let what = format!("{} {} {label}", config.label(), plan.label());
                    assert!(d <= bound, "{what}: position {p}: {d:.3e} > {bound:.0e}");
                }
                std::fs::remove_file(&path).expect("rm");
            }
        }
    }
}

#[test]
fn a_header_length_that_leaves_the_data_misaligned_is_copied_not_refused() {
    // The same file with its data section at 0 and at 1, 2, 3, 5 mod 8: same logits.
    let good = small_model();
    let base = write("aligned.safetensors", &good);
    let (_, want) = cli_logits(&base, "tea");
    let raw = RawFile::parse(&good);
    for mod8 in [1, 2, 3, 5] {
        let path = write(
            &format!("data-at-{mod8}.safetensors"),
            &raw.to_bytes_with_data_at(mod8),
        );
        let (_, got) = cli_logits(&path, "tea");
        assert_eq!(got, want, "data at {mod8} mod 8");
        let out = stdout(&folio(&["info", &path]));
        assert!(out.contains("vocab_size=11"), "{out}");
    }
}

#[test]
fn greedy_generate_follows_the_reference_argmax() {
    let bytes = small_model();
    let reference = Reference::from_bytes(&bytes).expect("reference");
    let path = write("greedy.safetensors", &bytes);
    let out = stdout(&folio(&[
        "generate",
        &path,
        "--prompt",
        "tea",
        "-n",
        "5",
        "--temperature",
        "0",
    ]));
    assert!(out.starts_with("tea"), "{out:?}");
    // 3 + 5 tokens fit the 8-token window: every step is one reference pass.
    let mut ctx = reference.encode("tea");
    let mut judged = 0;
    for ch in out.chars().skip(3) {
        let logits = reference.logits(&ctx, Options::FORMAT);
        let last = logits.last().expect("a row");
        let mut sorted = last.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let next = reference.encode(&ch.to_string())[0];
        // Judge only steps whose top two logits are apart by more than float noise.
        if sorted[0] - sorted[1] > 1e-3 * sorted[0].abs().max(1.0) {
            assert_eq!(next as usize, argmax(last), "{out:?}");
            judged += 1;
        }
        ctx.push(next);
    }
    assert_eq!(ctx.len(), 8);
    assert!(judged >= 3, "only {judged} decisive steps");
}

#[test]
fn sampling_is_seeded() {
    let m = write("seeded.safetensors", &small_model());
    let run = |seed: &str| {
        stdout(&folio(&[
            "generate",
            &m,
            "-n",
            "60",
            "--temperature",
            "30",
            "--seed",
            seed,
        ]))
    };
    let a = run("5");
    assert_eq!(a, run("5"));
    assert_ne!(a, run("6"));
    assert_eq!(a.chars().count(), 60);
    // Beyond block_size (8) the window shifts; --exact recomputes; both run to the end.
    let e = stdout(&folio(&[
        "generate", &m, "-n", "30", "--exact", "--top-k", "2", "--top-p", "0.9",
    ]));
    assert_eq!(e.chars().count(), 30);
    let o = folio(&["generate", &m, "-n", "5"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 5 tokens"));
}

#[test]
fn info_and_bench() {
    let bytes = edit_header(&small_model(), |h| {
        h["__metadata__"]["folio.train"] = json!(r#"{"steps": 7, "val_loss": 1.5}"#);
    });
    let m = write("info.safetensors", &bytes);
    let out = stdout(&folio(&["info", &m]));
    assert!(out.contains("format: 2, dtype label: f32"), "{out}");
    assert!(
        out.contains("vocab_size=11 block_size=8 n_embd=32 n_head=4 n_layer=1"),
        "{out}"
    );
    assert!(out.contains("h.0.mlp.c_fc.weight"), "{out}");
    assert!(out.contains("encodings: f32 x6"), "{out}");
    assert!(
        out.contains(r#"folio.train: {"steps": 7, "val_loss": 1.5}"#),
        "{out}"
    );
    let out = stdout(&folio(&["bench", &m, "-n", "8", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["n"], 8);
    assert_eq!(j["kv_bytes"], 2 * 8 * 32 * 2);
    assert!(j["decode_us"]["p50"].as_f64().expect("p50") > 0.0);
    assert!(j["decode_tokens_per_s"].as_f64().expect("tokens/s") > 0.0);
    let text = stdout(&folio(&["bench", &m]));
    assert!(
        text.contains("tokens/s") && text.contains("KV cache"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let m = write("bad.safetensors", &small_model());
    let m = m.as_str();
    let missing = dir().join("no-such-file.safetensors");
    fails(
        &folio(&["info", missing.to_str().expect("path")]),
        1,
        &["cannot open"],
    );
    let junk = write("junk.safetensors", b"\x05\0\0\0\0\0\0\0{\"a\":");
    fails(
        &folio(&["generate", &junk]),
        1,
        &["not a valid folio model"],
    );
    let short = write("short.safetensors", b"abc");
    fails(
        &folio(&["logits", &short, "--text", "a"]),
        1,
        &["shorter than the 8-byte"],
    );
    let good = small_model();
    let truncated = write("truncated.safetensors", &good[..good.len() / 2]);
    fails(
        &folio(&["logits", &truncated, "--text", "the"]),
        1,
        &["not a valid folio model"],
    );
    let old = edit_header(&good, |h| h["__metadata__"]["folio.format"] = json!("1"));
    let old = write("format1.safetensors", &old);
    fails(&folio(&["info", &old]), 1, &["exporter convert"]);
    fails(
        &folio(&["generate", m, "--prompt", "teé"]),
        1,
        &["'é' at position 2"],
    );
    fails(
        &folio(&["logits", m, "--text", "teateatea"]),
        1,
        &["longer than block_size 8"],
    );
    fails(
        &folio(&["logits", m, "--text", "tXa"]),
        1,
        &["'X' at position 1"],
    );
    fails(&folio(&["generate", m, "-n", "2000000"]), 1, &["too large"]);
    fails(&folio(&["bench", m, "-n", "9"]), 1, &["too large"]);
    fails(
        &folio(&["generate", m, "--temperature=-1"]),
        1,
        &["temperature"],
    );
    fails(&folio(&["generate", m, "--top-p", "0"]), 1, &["top_p"]);
    fails(
        &folio(&["generate", m, "-n", "lots"]),
        2,
        &["invalid value"],
    );
    fails(&folio(&["frobnicate"]), 2, &["unrecognized subcommand"]);
    fails(&folio(&[]), 2, &["missing subcommand"]);
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
                fails(
                    &folio(&args),
                    1,
                    &["cannot open", kind, "not a regular file"],
                );
            }
        }
    }
    let missing = dir().join("missing.safetensors");
    fails(
        &folio(&["info", missing.to_str().unwrap()]),
        1,
        &["cannot open", "No such file"],
    );
    let empty = dir().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    fails(
        &folio(&["info", empty.to_str().unwrap()]),
        1,
        &["not a valid folio model", "shorter than the 8-byte"],
    );
}

#[test]
fn a_session_over_the_memory_limit_is_refused_before_allocating() {
    // block_size 2^20 and 16 layers: a 128 MiB data section that is a hole on disk, and a
    // session that needs 2 GiB of KV cache.
    let huge = Config::new(1 << 20, 32, 4, 16).vocab(5);
    let huge = sparse("huge-block.safetensors", huge, &[], &[], &[]);
    let h = huge.to_str().unwrap();
    let info = stdout(&folio(&["info", h]));
    assert!(info.contains("block_size=1048576"), "{info}");
    for args in [
        &["generate", h, "-n", "3"][..],
        &["logits", h, "--text", "ab"],
        &["bench", h],
        &["bench", h, "-n", "1048576"],
        &["generate", h, "--max-memory", "1900M"],
    ] {
        fails(
            &folio(args),
            1,
            &["session", "--max-memory", "KV cache 2147483648 bytes"],
        );
    }
    // Read into memory, the file itself is over the limit.
    fails(
        &folio(&["info", h, "--no-mmap", "--max-memory", "64M"]),
        1,
        &["more than the 67108864 bytes allowed", "--max-memory"],
    );

    // The limit is the user's: a small model runs under the default, and fails below its size.
    let m = zero_model("limit.safetensors");
    let m = m.to_str().unwrap();
    stdout(&folio(&["generate", m, "-n", "4"]));
    stdout(&folio(&["generate", m, "-n", "4", "--max-memory", "64K"]));
    fails(
        &folio(&["generate", m, "--max-memory", "1000"]),
        1,
        &["session", "--max-memory 1000"],
    );
    fails(
        &folio(&["logits", m, "--text", "a", "--max-memory", "1K"]),
        1,
        &["session"],
    );
    fails(
        &folio(&["bench", m, "--max-memory", "2000"]),
        1,
        &["--max-memory"],
    );
    // --no-mmap counts the file copy too.
    let file_len = std::fs::metadata(m).unwrap().len().to_string();
    fails(
        &folio(&["info", m, "--no-mmap", "--max-memory", "4K"]),
        1,
        &["more than the 4096 bytes allowed"],
    );
    stdout(&folio(&["info", m, "--no-mmap", "--max-memory", &file_len]));
    for bad in ["12X", "-1", "", "99999999999T", "1.5G"] {
        let arg = format!("--max-memory={bad}");
        fails(
            &folio(&["info", m, &arg]),
            2,
            &["--max-memory", "byte count"],
        );
    }
}

#[test]
fn sampler_settings_are_checked_and_tiny_temperatures_are_greedy() {
    let m = zero_model("sampler.safetensors");
    let m = m.to_str().unwrap();
    let greedy = stdout(&folio(&["generate", m, "-n", "12", "--temperature", "0"]));
    // Before, 1/1e-40 overflowed to inf, 0 * inf = NaN, and the draw emitted token 0
    // ("\n") forever.
    for t in ["1e-40", "1e-45", "2e-39"] {
        let out = stdout(&folio(&["generate", m, "-n", "12", "--temperature", t]));
        assert_eq!(out, greedy, "--temperature {t}");
    }
    assert!(greedy.ends_with("cccccccccccc"), "{greedy:?}");
    for t in ["nan", "inf", "-1", "-1e-40", "-inf"] {
        fails(
            &folio(&["generate", m, &format!("--temperature={t}")]),
            1,
            &["temperature must be finite and >= 0"],
        );
    }
    for p in ["0", "1.5", "nan", "-0.1", "inf"] {
        fails(
            &folio(&["generate", m, &format!("--top-p={p}")]),
            1,
            &["top_p must be in (0, 1]"],
        );
    }
    fails(&folio(&["generate", m, "--top-k=-1"]), 2, &["--top-k"]);
    fails(
        &folio(&["generate", m, "-n", "lots"]),
        2,
        &["invalid value"],
    );
    fails(
        &folio(&["generate", m, "--frobnicate"]),
        2,
        &["--frobnicate"],
    );
    fails(&folio(&["generate"]), 2, &["MODEL"]);
}

#[test]
fn non_finite_weights_are_reported_and_never_sampled() {
    let m = sparse(
        "nan.safetensors",
        ZERO,
        &[],
        &[],
        &[
            ("ln_f.bias", 3, f32::NAN),
            ("h.0.mlp.c_fc.weight", 7, f32::INFINITY),
        ],
    );
    let m = m.to_str().unwrap();
    let info = stdout(&folio(&["info", m]));
    assert!(
        info.contains("weights: 2 NaN or infinite values (first found in h.0.mlp.c_fc.weight)"),
        "{info}"
    );
    let clean = stdout(&folio(&[
        "info",
        zero_model("finite.safetensors").to_str().unwrap(),
    ]));
    assert!(clean.contains("weights: all finite"), "{clean}");
    for t in ["0", "0.8"] {
        let o = folio(&[
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
    fails(&folio(&["bench", m]), 1, &["NaN or infinite"]);
    // logits prints what it computed: non-finite values as JSON null.
    let out = stdout(&folio(&["logits", m, "--text", "a"]));
    assert!(out.contains("null"), "{out}");
}

#[test]
fn control_characters_from_the_file_are_escaped() {
    let m = sparse(
        "evil\x1b[2J.safetensors",
        ZERO,
        &[
            ("folio.dtype", r#""q8_0\u001b]0;pwned\u0007\r""#),
            ("folio.train", r#""{\"steps\": 1}\u001b[31m\u009b\u202e""#),
        ],
        &[r"h.9.evil\u001b[1A\u007fname"],
        &[],
    );
    let out = folio(&["info", m.to_str().unwrap()]);
    let text = stdout(&out);
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
    let o = folio(&["info", dir().join("gone\x1b[2J").to_str().unwrap()]);
    fails(&o, 1, &[r"gone\u{1b}[2J"]);
    assert!(!o.stderr.contains(&0x1b));
}

#[test]
fn output_stream_failures_are_errors_not_panics_or_silence() {
    let m = zero_model("streams.safetensors");
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
    let mut child = folio_cmd()
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
    let src = zero_model("truncate.safetensors");
    let len = std::fs::metadata(&src).unwrap().len();
    let mut child = folio_cmd()
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
        fails(&folio(&args), 1, &["not a valid folio model"]);
    }
}
