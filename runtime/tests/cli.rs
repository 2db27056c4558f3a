//! The `folio` binary: `logits` against the independent f64 reference on files from both
//! writers in every encoding, greedy `generate` following the reference's argmax, seeded
//! sampling, `info` and `bench`, files whose header length leaves the data misaligned,
//! and one-line errors with non-zero exit codes.
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::handwritten::{self, edit_header, Layout, RawFile};
use folio_tests::reference::{argmax, Options, Reference};
use folio_tests::rel_diff;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Output};

/// 8/32/4/1, vocab 11 (" etaoinshrd"), tied.
const SMALL: Config = Config::TINY[0];

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

fn folio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .output()
        .expect("run folio")
}

fn stdout(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "status {:?}, stderr {err}", o.status);
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

/// Assert a failure with exactly one `folio: error:` line on stderr containing `needle`.
fn fails_with(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("folio: error: "), "stderr: {err}");
    assert!(lines[0].contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"));
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
    fails_with(
        &folio(&["info", missing.to_str().expect("path")]),
        1,
        "cannot open",
    );
    let junk = write("junk.safetensors", b"\x05\0\0\0\0\0\0\0{\"a\":");
    fails_with(&folio(&["generate", &junk]), 1, "not a valid folio model");
    let short = write("short.safetensors", b"abc");
    fails_with(
        &folio(&["logits", &short, "--text", "a"]),
        1,
        "shorter than the 8-byte",
    );
    let good = small_model();
    let truncated = write("truncated.safetensors", &good[..good.len() / 2]);
    fails_with(
        &folio(&["logits", &truncated, "--text", "the"]),
        1,
        "not a valid folio model",
    );
    let old = edit_header(&good, |h| h["__metadata__"]["folio.format"] = json!("1"));
    let old = write("format1.safetensors", &old);
    fails_with(&folio(&["info", &old]), 1, "exporter convert");
    fails_with(
        &folio(&["generate", m, "--prompt", "teé"]),
        1,
        "'é' at position 2",
    );
    fails_with(
        &folio(&["logits", m, "--text", "teateatea"]),
        1,
        "longer than block_size 8",
    );
    fails_with(
        &folio(&["logits", m, "--text", "tXa"]),
        1,
        "'X' at position 1",
    );
    fails_with(&folio(&["generate", m, "-n", "2000000"]), 1, "too large");
    fails_with(&folio(&["bench", m, "-n", "9"]), 1, "too large");
    fails_with(
        &folio(&["generate", m, "--temperature=-1"]),
        1,
        "temperature",
    );
    fails_with(&folio(&["generate", m, "--top-p", "0"]), 1, "top_p");
    fails_with(&folio(&["generate", m, "-n", "lots"]), 2, "invalid value");
    fails_with(&folio(&["frobnicate"]), 2, "unrecognized subcommand");
    fails_with(&folio(&[]), 2, "missing subcommand");
}
