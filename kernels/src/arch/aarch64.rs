//! aarch64 NEON primitives: f16 widening (`fcvtl`, baseline ARMv8.0: Pi 4 and up), int8
//! widening (`sxtl`) and loads. NEON is part of the aarch64 baseline, so the NEON
//! kernels are selected at compile time with `cfg(target_feature = "neon")`; they and
//! these helpers are `#[target_feature(enable = "neon")]` functions, so the one `unsafe`
//! a kernel needs is at its call site in the op's public function.
//!
//! No `sdot` (`vdotq_s32` is unstable, and the Pi 4's Cortex-A72 lacks it): activations
//! stay f32, so the quantised kernels widen i8 to f32 and use f32 FMA.
use core::arch::aarch64::*;
use half::f16;

/// 4 f32 from an array.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f32(a: &[f32; 4]) -> float32x4_t {
    // SAFETY: `a` is 16 readable bytes; `ld1` has no alignment requirement.
    unsafe { vld1q_f32(a.as_ptr()) }
}

/// Store 4 f32 into an array.
#[inline]
#[target_feature(enable = "neon")]
pub fn store_f32(a: &mut [f32; 4], v: float32x4_t) {
    // SAFETY: `a` is 16 writable bytes; `st1` has no alignment requirement.
    unsafe { vst1q_f32(a.as_mut_ptr(), v) }
}

/// 4 f16 widened to 4 f32 (`fcvtl`, exact).
#[inline]
#[target_feature(enable = "neon")]
pub fn load_f16(a: &[f16; 4]) -> float32x4_t {
    // SAFETY: `a` is 8 readable bytes (f16 is a `repr(transparent)` u16).
    let h = unsafe { vld1_u16(a.as_ptr().cast::<u16>()) };
    vcvt_f32_f16(vreinterpret_f16_u16(h))
}

/// 4 f32 rounded (to nearest even, the FPCR default) to 4 f16 (`fcvtn`).
#[inline]
#[target_feature(enable = "neon")]
pub fn store_f16(a: &mut [f16; 4], v: float32x4_t) {
    let h = vreinterpret_u16_f16(vcvt_f16_f32(v));
    // SAFETY: `a` is 8 writable bytes; `st1` has no alignment requirement.
    unsafe { vst1_u16(a.as_mut_ptr().cast::<u16>(), h) }
}

/// 16 i8 widened to 4 x 4 f32 (`sxtl`, `sxtl2`, `scvtf`).
#[inline]
#[target_feature(enable = "neon")]
pub fn widen_i8x16(b: int8x16_t) -> [float32x4_t; 4] {
    let lo = vmovl_s8(vget_low_s8(b));
    let hi = vmovl_high_s8(b);
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
        vcvtq_f32_s32(vmovl_high_s16(lo)),
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
        vcvtq_f32_s32(vmovl_high_s16(hi)),
    ]
}

/// 32 consecutive i8 (as two 16-byte blocks) in two NEON registers.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_i8x32(lo: &[u8; 16], hi: &[u8; 16]) -> [int8x16_t; 2] {
    // SAFETY: `lo` and `hi` are 16 readable bytes each; unaligned loads.
    unsafe {
        [
            vld1q_s8(lo.as_ptr().cast::<i8>()),
            vld1q_s8(hi.as_ptr().cast::<i8>()),
        ]
    }
}

/// One f16 widened to f32 (`fcvtl`; `half` would convert in software here).
#[inline]
#[target_feature(enable = "neon")]
pub fn f16_to_f32(h: f16) -> f32 {
    vgetq_lane_f32::<0>(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h.to_bits()))))
}

/// 16 bytes of q4_0 nibbles (column 2j low, 2j+1 high, value = nibble - 8) as 32 i8
/// in column order.
#[inline]
#[target_feature(enable = "neon")]
pub fn load_q4x32(a: &[u8; 16]) -> [int8x16_t; 2] {
    // SAFETY: `a` is 16 readable bytes; unaligned load.
    let b = unsafe { vld1q_u8(a.as_ptr()) };
    let lo = vandq_u8(b, vdupq_n_u8(0x0f));
    let hi = vshrq_n_u8::<4>(b);
    let eight = vdupq_n_s8(8);
    [
        vsubq_s8(vreinterpretq_s8_u8(vzip1q_u8(lo, hi)), eight),
        vsubq_s8(vreinterpretq_s8_u8(vzip2q_u8(lo, hi)), eight),
    ]
}

/// `s` as blocks of 2 x 4 elements (8 columns a step); the tail is left out.
#[inline(always)]
pub fn blocks8<T>(s: &[T]) -> &[[[T; 4]; 2]] {
    s.as_chunks::<4>().0.as_chunks::<2>().0
}
