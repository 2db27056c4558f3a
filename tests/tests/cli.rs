//! `folio logits` (the CLI binary) against the f64 reference, on files from both writers,
//! every encoding and mixed.
//!
//! Finding the binary: a test of another crate cannot use `env!("CARGO_BIN_EXE_folio")`,
//! so the test runs `cargo build -p folio-runtime --bin folio` (same profile, same target
//! dir: the build lock is free while tests run, and the build is a no-op when fresh) and
//! executes `<target dir>/<profile>/folio`. `FOLIO_BIN=/path/to/folio` skips the build.
//!
//! Host only: under qemu-user (the aarch64 run) the emulated test cannot exec an aarch64
//! child without binfmt_misc, so this file is compiled for x86-64 only; the library-level
//! parity tests cover aarch64.
#![cfg(target_arch = "x86_64")]

use folio_tests::fixture::{Config, FixtureSpec, Plan};
use folio_tests::handwritten::{self, Layout};
use folio_tests::reference::{Options, Reference};
use folio_tests::rel_diff;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `<target>/<profile>` of this test executable (`<target>/<profile>/deps/cli-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

fn folio_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FOLIO_BIN") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let profile = dir
            .file_name()
            .and_then(|s| s.to_str())
            .expect("profile name")
            .to_string();
        let target_dir = dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "folio-runtime", "--bin", "folio"])
            .env("CARGO_TARGET_DIR", &target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let mut child = cmd.spawn().expect("spawn cargo build");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "cargo build of the folio binary failed");
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                panic!("cargo build of the folio binary took over 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let bin = dir.join("folio");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// Run `folio logits FILE --text TEXT` and parse its JSON.
fn cli_logits(file: &Path, text: &str) -> (Vec<u32>, Vec<Vec<f32>>) {
    let out = Command::new(folio_bin())
        .arg("logits")
        .arg(file)
        .args(["--text", text])
        .output()
        .expect("run folio");
    assert!(
        out.status.success(),
        "folio logits failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("folio logits prints JSON");
    let tokens = v["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t.as_u64().expect("u64") as u32)
        .collect();
    let logits = v["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("finite") as f32)
                .collect()
        })
        .collect();
    (tokens, logits)
}

fn temp_dir() -> PathBuf {
    let d = profile_dir().join("folio-cli-fixtures");
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn folio_logits_matches_reference_on_both_writers() {
    let dir = temp_dir();
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
                let path = dir.join(format!(
                    "{}-{}-{}.safetensors",
                    i,
                    plan.label(),
                    label.replace([' ', ','], "_")
                ));
                std::fs::write(&path, &bytes).expect("write fixture");
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
                let bound = if plan.quantised() { 5e-2 } else { 5e-4 };
                for (p, (g, w)) in got.iter().zip(&want).enumerate() {
                    let d = rel_diff(g, w);
                    assert!(
                        d <= bound,
                        "{} {} {label}: position {p}: {d:.3e} > {bound:.0e}",
                        config.label(),
                        plan.label()
                    );
                }
                std::fs::remove_file(&path).expect("rm");
            }
        }
    }
}

#[test]
fn folio_logits_rejects_bad_files_with_one_line() {
    let dir = temp_dir();
    let path = dir.join("truncated.safetensors");
    let good = FixtureSpec::new(Config::TINY[0], Plan::Mixed, 1).to_bytes();
    std::fs::write(&path, &good[..good.len() / 2]).expect("write");
    let out = Command::new(folio_bin())
        .arg("logits")
        .arg(&path)
        .args(["--text", "the"])
        .output()
        .expect("run folio");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("folio: error:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    std::fs::remove_file(&path).expect("rm");
}
