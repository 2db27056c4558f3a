//! Causal attention of one query head over the f16 KV cache.
//!
//! `k` and `v` start at this head's first element of position 0; position `t`'s head vector
//! is `k[t * stride .. t * stride + hs]` where `hs = q.len()` and `stride` is `n_embd`.
//! `scores` (at least `n_pos`) is caller scratch. `out (hs) = softmax(q·k_t / sqrt(hs)) · v`.
use half::f16;

/// One head, one query, positions `0..n_pos`.
pub fn attention_f16(out: &mut [f32], q: &[f32], k: &[f16], v: &[f16], stride: usize, n_pos: usize, scores: &mut [f32]) {
    let hs = q.len();
    let scale = 1.0 / libm::sqrtf(hs as f32);
    let n = n_pos.min(scores.len());
    let scores = &mut scores[..n];
    for (t, s) in scores.iter_mut().enumerate() {
        let kt = k.get(t * stride..t * stride + hs).unwrap_or(&[]);
        *s = kt.iter().zip(q).map(|(a, b)| a.to_f32() * b).sum::<f32>() * scale;
    }
    crate::softmax(scores);
    out.fill(0.0);
    for (t, &p) in scores.iter().enumerate() {
        let vt = v.get(t * stride..t * stride + hs).unwrap_or(&[]);
        for (o, x) in out.iter_mut().zip(vt) {
            *o += p * x.to_f32();
        }
    }
}
