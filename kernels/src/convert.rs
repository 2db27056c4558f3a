//! f16 <-> f32 slice conversion (round to nearest even), over the common prefix.
//!
//! AVX2 path: F16C `vcvtph2ps` / `vcvtps2ph` 8 at a time; NEON: `fcvtl` / `fcvtn` 4 at a
//! time (FPCR default rounding: nearest even); elsewhere `half`. All paths give the same
//! bits except NaN payloads (every path keeps a NaN a NaN).
use half::f16;

/// `out[i] = x[i] as f32`.
pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::f16_to_f32(out, x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { neon::f16_to_f32(out, x) }
    }
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    {
        scalar::f16_to_f32(out, x)
    }
}

/// `out[i] = f16(x[i])`, round to nearest even.
pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::f32_to_f16(out, x) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { neon::f32_to_f16(out, x) }
    }
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    {
        scalar::f32_to_f16(out, x)
    }
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::arch::x86_64::{load_f16, load_f32, store_f16, store_f32};
    use half::f16;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_to_f32(out: &mut [f32], x: &[f16]) {
        let (o8, ot) = out.as_chunks_mut::<8>();
        let (x8, xt) = x.as_chunks::<8>();
        for (o, h) in o8.iter_mut().zip(x8) {
            store_f32(o, load_f16(h));
        }
        super::scalar::f16_to_f32(ot, xt);
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f32_to_f16(out: &mut [f16], x: &[f32]) {
        let (o8, ot) = out.as_chunks_mut::<8>();
        let (x8, xt) = x.as_chunks::<8>();
        for (o, v) in o8.iter_mut().zip(x8) {
            store_f16(o, load_f32(v));
        }
        super::scalar::f32_to_f16(ot, xt);
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use crate::arch::aarch64::{load_f16, load_f32, store_f16, store_f32};
    use half::f16;

    #[target_feature(enable = "neon")]
    pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
        let (o4, ot) = out.as_chunks_mut::<4>();
        let (x4, xt) = x.as_chunks::<4>();
        for (o, h) in o4.iter_mut().zip(x4) {
            store_f32(o, load_f16(h));
        }
        super::scalar::f16_to_f32(ot, xt);
    }

    #[target_feature(enable = "neon")]
    pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
        let (o4, ot) = out.as_chunks_mut::<4>();
        let (x4, xt) = x.as_chunks::<4>();
        for (o, v) in o4.iter_mut().zip(x4) {
            store_f16(o, load_f32(v));
        }
        super::scalar::f32_to_f16(ot, xt);
    }
}
