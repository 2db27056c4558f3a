//! ISA primitives that `wide` lacks: F16C / NEON f16 conversion, int8 widening, loads.
//!
//! The kernels themselves live in their op files (`matvec_q8.rs` holds its `avx2` and
//! `neon` modules); this module only holds the small building blocks they share and, on
//! x86-64, the AVX2 availability check, and [`simd!`], the dispatch every op shares.
#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// The tail of a kernel's public function: `avx2::$f(args)` when x86-64 has AVX2,
/// FMA and F16C (`x86_64::enabled()`), else `neon::$f(args)` on aarch64 with NEON, else
/// `$fallback` (the `wide` path or the scalar reference).
macro_rules! simd {
    ($f:ident($($arg:expr),*) else $fallback:expr) => {{
        #[cfg(target_arch = "x86_64")]
        if crate::arch::x86_64::enabled() {
            // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
            // (enabled at compile time, or detected on this CPU).
            return unsafe { avx2::$f($($arg),*) };
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        {
            // SAFETY: NEON is enabled at compile time (the `cfg` above).
            unsafe { neon::$f($($arg),*) }
        }
        #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
        {
            $fallback
        }
    }};
}
