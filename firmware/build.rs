//! Picks the board's `memory.x` from the target and tells cargo about the embedded model.
//!
//! `thumbv7em-none-eabihf` → `memory/mps2-an386.x` (Cortex-M4F), `thumbv7m-none-eabi` →
//! `memory/lm3s6965evb.x` (Cortex-M3). cortex-m-rt's `device` feature includes a
//! `device.x`: ours is empty, since `src/board.rs` binds every interrupt line to the default
//! handler itself. The model file is `include_bytes!(env!("FOLIO_MODEL"))` in
//! `src/main.rs`; rebuilding when the variable or the file changes is cargo's job here.
use std::{env, fs, path::PathBuf};

fn main() {
    let target = env::var("TARGET").unwrap_or_default();
    let board = match target.as_str() {
        "thumbv7em-none-eabihf" | "thumbv7em-none-eabi" => "mps2-an386",
        "thumbv7m-none-eabi" => "lm3s6965evb",
        // Host builds (`cargo test --lib` of the pure helpers) link nothing of ours.
        _ => return,
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = format!("memory/{board}.x");
    fs::copy(&src, out.join("memory.x")).expect("copy memory.x");
    fs::write(
        out.join("device.x"),
        "/* no interrupt handler names: see src/board.rs */\n",
    )
    .expect("write device.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rustc-cfg=board=\"{board}\"");
    println!("cargo:rustc-check-cfg=cfg(board, values(\"mps2-an386\", \"lm3s6965evb\"))");

    println!("cargo:rerun-if-env-changed=FOLIO_MODEL");
    match env::var("FOLIO_MODEL") {
        Ok(path) => println!("cargo:rerun-if-changed={path}"),
        Err(_) => panic!(
            "set FOLIO_MODEL to the model file to embed, e.g. \
             FOLIO_MODEL=$PWD/../target/firmware/model1.q8_0.safetensors"
        ),
    }
}
