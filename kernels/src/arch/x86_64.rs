//! x86-64 AVX2 + FMA + F16C primitives, and the check that selects the AVX2 kernels.
//!
//! [`enabled`] is a constant `true` when the crate is built with all three features
//! (`-C target-cpu=x86-64-v3`). Otherwise, with the `std` feature, the CPU is asked once
//! (`std::is_x86_feature_detected!`) and the answer cached in an atomic, so a baseline
//! build runs the AVX2 kernels on capable CPUs at the cost of one relaxed load per kernel
//! call. Without `std` a baseline build never uses them (compile-time dispatch).
//!
//! The helpers are safe `#[target_feature]` functions: callable without `unsafe` from
//! the AVX2 kernels (which enable the same features) and inlined into them.
use core::arch::x86_64::*;
use half::f16;

/// Whether the AVX2 + FMA + F16C kernels may run on this CPU.
#[inline(always)]
pub fn enabled() -> bool {
    #[cfg(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        true
    }
    #[cfg(all(
        feature = "std",
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    ))]
    {
        detected()
    }
    #[cfg(all(
        not(feature = "std"),
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    ))]
    {
        false
    }
}

/// Run-time detection, done once: 0 = not asked yet, 1 = absent, 2 = present.
#[cfg(feature = "std")]
#[inline]
fn detected() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c");
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

/// 8 f32 from an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f32(a: &[f32; 8]) -> __m256 {
    // SAFETY: `a` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(a.as_ptr()) }
}

/// Store 8 f32 into an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn store_f32(a: &mut [f32; 8], v: __m256) {
    // SAFETY: `a` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) }
}

/// 8 f16 widened to 8 f32 (F16C `vcvtph2ps`, exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f16(a: &[f16; 8]) -> __m256 {
    // SAFETY: `a` is 16 readable bytes (f16 is a `repr(transparent)` u16).
    let h = unsafe { _mm_loadu_si128(a.as_ptr().cast::<__m128i>()) };
    _mm256_cvtph_ps(h)
}

/// 8 f32 rounded (to nearest even) to 8 f16 (F16C `vcvtps2ph`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn store_f16(a: &mut [f16; 8], v: __m256) {
    let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
    // SAFETY: `a` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(a.as_mut_ptr().cast::<__m128i>(), h) }
}

/// One f16 widened to f32 and broadcast to all 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn splat_f16(h: f16) -> __m256 {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits())));
    _mm256_broadcastss_ps(v)
}

/// One f16 widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// 32 consecutive i8 (as two 16-byte blocks) widened to 4 x 8 f32 (`vpmovsxbd` +
/// `vcvtdq2ps`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_i8x32(lo: &[u8; 16], hi: &[u8; 16]) -> [__m256; 4] {
    // SAFETY: `lo` and `hi` are 16 readable bytes each; unaligned loads.
    let (lo, hi) = unsafe {
        (
            _mm_loadu_si128(lo.as_ptr().cast::<__m128i>()),
            _mm_loadu_si128(hi.as_ptr().cast::<__m128i>()),
        )
    };
    widen_i8x32(lo, hi)
}

/// 16 bytes of q4_0 nibbles (column 2j low, 2j+1 high, value = nibble - 8) widened to
/// 4 x 8 f32 in column order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_q4x32(a: &[u8; 16]) -> [__m256; 4] {
    // SAFETY: `a` is 16 readable bytes; unaligned load.
    let b = unsafe { _mm_loadu_si128(a.as_ptr().cast::<__m128i>()) };
    let mask = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(b, mask);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), mask);
    let eight = _mm_set1_epi8(8);
    // Interleave back to column order: bytes lo0 hi0 lo1 hi1 ...
    let c0 = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight);
    let c1 = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);
    widen_i8x32(c0, c1)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_i8x32(lo: __m128i, hi: __m128i) -> [__m256; 4] {
    [
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(lo))),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)),
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(hi))),
    ]
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// `s` as blocks of 2 x 8 elements (16 columns a step); the tail is left out.
#[inline(always)]
pub fn blocks16<T>(s: &[T]) -> &[[[T; 8]; 2]] {
    s.as_chunks::<8>().0.as_chunks::<2>().0
}
