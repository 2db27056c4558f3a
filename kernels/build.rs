//! Sets `cfg(folio_dsp)` on targets with the ARMv7E-M DSP extension (Cortex-M4/M7/M33
//! class: `thumbv7em-*`, `thumbv8m.main-*`): Rust's `target_feature = "dsp"` is
//! unstable, so it cannot be tested by `cfg(target_feature)` on stable.
fn main() {
    println!("cargo:rustc-check-cfg=cfg(folio_dsp)");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") {
        println!("cargo:rustc-cfg=folio_dsp");
    }
}
