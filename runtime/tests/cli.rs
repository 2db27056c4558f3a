//! Tests of the `folio` binary: outputs, and one-line errors with non-zero exit codes.
//!
//! The model is written by hand here (raw safetensors bytes). Its one layer has all-zero
//! matrices and biases, so the forward pass reduces to `logits = wte · LN_f(wte[t] + wpe[p])`,
//! which the test computes independently in f64.
use std::path::PathBuf;
use std::process::{Command, Output};

const VOCAB: [char; 5] = ['\n', ' ', 'a', 'b', 'c'];
const V: usize = 5;
const T: usize = 8;
const C: usize = 32;

fn wte(r: usize, c: usize) -> f32 {
    ((r as f32) * 1.3 + (c as f32) * 0.37).sin()
}
fn wpe(r: usize, c: usize) -> f32 {
    0.5 * ((r as f32) * 0.7 - (c as f32) * 0.11).cos()
}

/// Write the model; `train` adds a `folio.train` metadata entry.
fn write_model(name: &str, train: bool) -> PathBuf {
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let m = |f: fn(usize, usize) -> f32, rows: usize| {
        (0..rows * C).map(|i| f(i / C, i % C)).collect::<Vec<f32>>()
    };
    tensors.push(("wte.weight".into(), vec![V, C], m(wte, V)));
    tensors.push(("wpe.weight".into(), vec![T, C], m(wpe, T)));
    let zeros = |n: usize| vec![0.0f32; n];
    for (suffix, shape) in [
        ("ln_1.weight", vec![C]),
        ("ln_1.bias", vec![C]),
        ("attn.c_attn.weight", vec![3 * C, C]),
        ("attn.c_attn.bias", vec![3 * C]),
        ("attn.c_proj.weight", vec![C, C]),
        ("attn.c_proj.bias", vec![C]),
        ("ln_2.weight", vec![C]),
        ("ln_2.bias", vec![C]),
        ("mlp.c_fc.weight", vec![4 * C, C]),
        ("mlp.c_fc.bias", vec![4 * C]),
        ("mlp.c_proj.weight", vec![C, 4 * C]),
        ("mlp.c_proj.bias", vec![C]),
    ] {
        let n = shape.iter().product();
        let data = if suffix.ends_with("ln_1.weight") || suffix.ends_with("ln_2.weight") {
            vec![1.0; n]
        } else {
            zeros(n)
        };
        tensors.push((format!("h.0.{suffix}"), shape, data));
    }
    tensors.push(("ln_f.weight".into(), vec![C], vec![1.0; C]));
    tensors.push(("ln_f.bias".into(), vec![C], zeros(C)));

    let config = format!(
        r#"{{\"vocab_size\": {V}, \"block_size\": {T}, \"n_embd\": {C}, \"n_head\": 4, \"n_layer\": 1, \"layer_norm_eps\": 1e-5, \"activation\": \"gelu_tanh\", \"tied_embeddings\": true}}"#
    );
    let vocab = r#"[\"\\n\", \" \", \"a\", \"b\", \"c\"]"#;
    let mut header = format!(
        r#"{{"__metadata__": {{"folio.format": "1", "folio.config": "{config}", "folio.vocab": "{vocab}""#
    );
    if train {
        header += r#", "folio.train": "{\"steps\": 7, \"val_loss\": 1.5}""#;
    }
    header += "}";
    let mut data: Vec<u8> = Vec::new();
    for (name, shape, values) in &tensors {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let begin = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header += &format!(
            r#", "{name}": {{"dtype": "F32", "shape": [{}], "data_offsets": [{begin}, {}]}}"#,
            dims.join(", "),
            data.len()
        );
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    let path = dir().join(name);
    std::fs::write(&path, file).unwrap();
    path
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("folio-cli");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn folio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "status {:?}, stderr {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
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

/// f64 logits of the zero-layer model for `tokens` at positions 0...
fn reference(tokens: &[usize]) -> Vec<Vec<f64>> {
    tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| {
            let x: Vec<f64> = (0..C)
                .map(|c| wte(t, c) as f64 + wpe(p, c) as f64)
                .collect();
            let mean = x.iter().sum::<f64>() / C as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / C as f64;
            let n: Vec<f64> = x.iter().map(|v| (v - mean) / (var + 1e-5).sqrt()).collect();
            (0..V)
                .map(|r| (0..C).map(|c| wte(r, c) as f64 * n[c]).sum())
                .collect()
        })
        .collect()
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn logits_match_an_independent_reference() {
    let model = write_model("logits.safetensors", false);
    let out = stdout(&folio(&[
        "logits",
        model.to_str().unwrap(),
        "--text",
        "ab c\n",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tokens: Vec<u64> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(tokens, [2, 3, 1, 4, 0]);
    let want = reference(&[2, 3, 1, 4, 0]);
    let got = json["logits"].as_array().unwrap();
    assert_eq!(got.len(), 5);
    for (row, want) in got.iter().zip(&want) {
        let row: Vec<f64> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(row.len(), V);
        for (g, w) in row.iter().zip(want) {
            assert!(
                (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                "{row:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn greedy_generate_follows_the_reference_argmax() {
    let model = write_model("greedy.safetensors", false);
    let out = stdout(&folio(&[
        "generate",
        model.to_str().unwrap(),
        "--prompt",
        "ab",
        "-n",
        "4",
        "--temperature",
        "0",
    ]));
    assert!(out.starts_with("ab"), "{out:?}");
    let mut ctx: Vec<usize> = vec![2, 3];
    for ch in out.chars().skip(2) {
        let next = argmax(reference(&ctx).last().unwrap());
        assert_eq!(ch, VOCAB[next], "{out:?}");
        ctx.push(next);
    }
    assert_eq!(ctx.len(), 6);
}

#[test]
fn sampling_is_seeded() {
    let model = write_model("seeded.safetensors", false);
    let m = model.to_str().unwrap();
    let run = |seed: &str| {
        stdout(&folio(&[
            "generate",
            m,
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
        "generate", m, "-n", "30", "--exact", "--top-k", "2", "--top-p", "0.9",
    ]));
    assert_eq!(e.chars().count(), 30);
    let o = folio(&["generate", m, "-n", "5"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("generated 5 tokens"));
}

#[test]
fn info_and_bench() {
    let model = write_model("info.safetensors", true);
    let m = model.to_str().unwrap();
    let out = stdout(&folio(&["info", m]));
    assert!(
        out.contains("vocab_size=5 block_size=8 n_embd=32 n_head=4 n_layer=1"),
        "{out}"
    );
    assert!(out.contains("h.0.mlp.c_fc.weight"), "{out}");
    assert!(out.contains("encodings: f32 x6"), "{out}");
    assert!(
        out.contains(r#"folio.train: {"steps": 7, "val_loss": 1.5}"#),
        "{out}"
    );
    let out = stdout(&folio(&["bench", m, "-n", "8", "--json"]));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["n"], 8);
    assert_eq!(j["kv_bytes"], 2 * T * C * 2);
    assert!(j["decode_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(j["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    let text = stdout(&folio(&["bench", m]));
    assert!(
        text.contains("tokens/s") && text.contains("KV cache"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let model = write_model("bad.safetensors", false);
    let m = model.to_str().unwrap();
    let missing = dir().join("no-such-file.safetensors");
    fails_with(
        &folio(&["info", missing.to_str().unwrap()]),
        1,
        "cannot open",
    );
    let junk = dir().join("junk.safetensors");
    std::fs::write(&junk, b"\x05\0\0\0\0\0\0\0{\"a\":").unwrap();
    fails_with(
        &folio(&["generate", junk.to_str().unwrap()]),
        1,
        "not a valid folio model",
    );
    let short = dir().join("short.safetensors");
    std::fs::write(&short, b"abc").unwrap();
    fails_with(
        &folio(&["logits", short.to_str().unwrap(), "--text", "a"]),
        1,
        "shorter than the 8-byte",
    );
    fails_with(
        &folio(&["generate", m, "--prompt", "abé"]),
        1,
        "'é' at position 2",
    );
    fails_with(
        &folio(&["logits", m, "--text", "abcabcabc"]),
        1,
        "longer than block_size 8",
    );
    fails_with(
        &folio(&["logits", m, "--text", "aXb"]),
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
