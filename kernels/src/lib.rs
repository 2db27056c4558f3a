//! folio's compute kernels: `#![no_std]`, no allocation, safe public API.
//!
//! One file per op (`matvec_q8.rs`, `attention.rs`, ...). Each holds the public safe
//! function, a `scalar` module that is always compiled (the reference every SIMD path is
//! tested against) and the SIMD paths, chosen at compile time from `cfg(target_feature)`.
//! Intrinsics that `wide` lacks live in `arch/`.
//!
//! Conventions: outputs first (`matvec(out, w, x)`); matrices are row-major `[rows, cols]`
//! with `rows = out.len()` and `cols = x.len()`; quantised rows are split into groups of
//! [`QK`] consecutive columns, each with one f16 scale. Kernels never panic: callers
//! validate shapes once at load; on mismatched lengths a kernel computes over the common
//! prefix (iterator zips), never indexes out of bounds.
//!
//! Paths, per target (see each op's header for what it vectorises):
//! - x86-64 with AVX2 + FMA + F16C (`-C target-cpu=x86-64-v3`, or the `std` feature's
//!   one-time run-time detection on a baseline build): `core::arch` kernels, 8 lanes.
//! - aarch64 (NEON is baseline): `core::arch` kernels, 4 lanes, `fcvtl` for f16.
//! - Cortex-M (`target_arch = "arm"`): the scalar references for every op (`wide` has no
//!   SIMD backend there: plain arrays, 2-3x slower than the loops), except `matvec_q8`,
//!   which on ARMv7E-M (`thumbv7em`, `cfg(folio_dsp)` from build.rs) runs `SXTB16` +
//!   `SMLAD` inline `asm!`, bit-identical to its scalar reference.
//! - elsewhere (baseline x86-64 = SSE2): `wide`, which picks SSE2 at compile time; the
//!   integer-dot matvecs run their scalar references there.
//!
//! `matvec_q8` and `matvec_q4` take activations quantised once per matmul to int8 groups
//! ([`quantize_act`]) and sum each group exactly in integers; the float part has one
//! defined order, so all their paths give the same bits (see `quantize_act.rs`).
//! Element-wise ops (LayerNorm, GELU, softmax, argmax) go through `wide` on the hosts.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

#[macro_use]
mod arch;
pub mod argmax;
pub mod attention;
pub mod convert;
pub mod gelu;
pub mod layernorm;
pub mod math;
pub mod matvec_f16;
pub mod matvec_f32;
pub mod matvec_q4;
pub mod matvec_q8;
pub mod quant;
pub mod quantize_act;
pub mod softmax;

pub use argmax::argmax;
pub use attention::attention_f16;
pub use convert::{f16_to_f32, f32_to_f16};
pub use gelu::gelu_tanh;
pub use layernorm::{layernorm_f16, layernorm_f32};
pub use matvec_f16::matvec_f16;
pub use matvec_f32::matvec_f32;
pub use matvec_q4::matvec_q4;
pub use matvec_q8::matvec_q8;
pub use quantize_act::quantize_act;
pub use softmax::softmax;

pub use half::f16;

/// Columns per quantisation group (one f16 scale per group) in q8_0 and q4_0.
pub const QK: usize = 32;
