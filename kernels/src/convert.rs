//! f16 <-> f32 slice conversion (round to nearest even), over the common prefix.
//!
//! AVX2 path: F16C `vcvtph2ps` / `vcvtps2ph` 8 at a time; NEON: `fcvtl` / `fcvtn` 4 at a
//! time (FPCR default rounding: nearest even). Elsewhere f16 -> f32 uses
//! [`widen_f16x8`] (integer ops and one multiply on `wide` lanes) and f32 -> f16 uses
//! `half`. All paths give the same bits except NaN payloads (a NaN stays a NaN).
//!
//! [`widen_f16x8`]: `bits(f32) = (h & 0x7fff) << 13` puts the f16 exponent and mantissa
//! under the f32 ones; multiplying by 2^112 rebiases the exponent (15 -> 127) and turns
//! f16 subnormals (exponent 0) into the right f32 normals in the same step. Only inf/NaN
//! (exponent 31) need a fix-up (exponent forced to 255); the sign is OR-ed back last.
//! Exact for all 65536 patterns (tested exhaustively); assumes subnormals are not
//! flushed (the default on x86-64, aarch64 Linux and Cortex-M).
use half::f16;
use wide::{f32x8, u32x8};

/// 8 f16 widened exactly to f32 without F16C or `fcvtl` (see the module header).
#[inline(always)]
pub fn widen_f16x8(h: &[f16; 8]) -> f32x8 {
    let b = u32x8::from(h.map(|v| u32::from(v.to_bits())));
    let em = (b & u32x8::splat(0x7fff)) << 13;
    let sign = (b & u32x8::splat(0x8000)) << 16;
    let finite = f32x8::from_bits(em) * f32x8::splat(f32::from_bits(0x7780_0000)); // 2^112
    let infnan = em.simd_gt(u32x8::splat(0x7bff << 13));
    let v = infnan.select(f32x8::from_bits(em | u32x8::splat(0x7f80_0000)), finite);
    f32x8::from_bits(v.to_bits() | sign)
}

/// `out[i] = x[i] as f32`.
pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): a plain loop, with the
    // Cortex-M4F's `VCVTB` (or integer bit arithmetic) instead of `half`'s software path.
    if cfg!(target_arch = "arm") {
        for (o, v) in out.iter_mut().zip(x) {
            *o = crate::quantize_act::h2f(*v);
        }
        return;
    }
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    simd!(f16_to_f32(out, x) else {
        let (o8, ot) = out.as_chunks_mut::<8>();
        let (x8, xt) = x.as_chunks::<8>();
        for (o, h) in o8.iter_mut().zip(x8) {
            *o = widen_f16x8(h).to_array();
        }
        scalar::f16_to_f32(ot, xt)
    })
}

/// `out[i] = f16(x[i])`, round to nearest even.
pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::f32_to_f16(out, x);
    }
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    simd!(f32_to_f16(out, x) else scalar::f32_to_f16(out, x))
}

/// Plain-loop reference (`half`), always compiled.
pub mod scalar {
    use half::f16;

    /// Scalar `f16_to_f32`.
    pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
        for (o, v) in out.iter_mut().zip(x) {
            *o = v.to_f32();
        }
    }

    /// Scalar `f32_to_f16`.
    pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f16::from_f32(v);
        }
    }
}

/// `simd` on each whole block of `N` elements of `x` into `out`, then `tail` on the rest
/// (the SIMD paths' driver).
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
#[inline(always)]
fn by_chunks<A, B, const N: usize>(
    out: &mut [B],
    x: &[A],
    mut simd: impl FnMut(&mut [B; N], &[A; N]),
    tail: impl FnOnce(&mut [B], &[A]),
) {
    let (on, ot) = out.as_chunks_mut::<N>();
    let (xn, xt) = x.as_chunks::<N>();
    for (o, v) in on.iter_mut().zip(xn) {
        simd(o, v);
    }
    tail(ot, xt);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{by_chunks, scalar};
    use crate::arch::x86_64::{load_f16, load_f32, store_f16, store_f32};
    use half::f16;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_to_f32(out: &mut [f32], x: &[f16]) {
        by_chunks(out, x, |o, h| store_f32(o, load_f16(h)), scalar::f16_to_f32);
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f32_to_f16(out: &mut [f16], x: &[f32]) {
        by_chunks(out, x, |o, v| store_f16(o, load_f32(v)), scalar::f32_to_f16);
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::{by_chunks, scalar};
    use crate::arch::aarch64::{load_f16, load_f32, store_f16, store_f32};
    use half::f16;

    #[target_feature(enable = "neon")]
    pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
        by_chunks(out, x, |o, h| store_f32(o, load_f16(h)), scalar::f16_to_f32);
    }

    #[target_feature(enable = "neon")]
    pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
        by_chunks(out, x, |o, v| store_f16(o, load_f32(v)), scalar::f32_to_f16);
    }
}
