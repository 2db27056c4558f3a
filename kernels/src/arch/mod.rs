//! ISA primitives that `wide` lacks: F16C / NEON f16 conversion, int8 widening, loads.
//!
//! The kernels themselves live in their op files (`matvec_q8.rs` holds its `avx2` and
//! `neon` modules); this module only holds the small building blocks they share and, on
//! x86-64, the AVX2 availability check.
#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;
