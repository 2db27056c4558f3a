//! f16 <-> f32 slice conversion (round to nearest even).
use half::f16;

/// `out[i] = x[i] as f32`.
pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = v.to_f32();
    }
}

/// `out[i] = f16(x[i])`, round to nearest even.
pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v);
    }
}
