//! Kernel throughput: each matvec encoding at the model's shapes, scalar reference and the
//! SIMD path this build selects side by side in one group (q8_0/q4_0 with the activation
//! quantisation each call makes), `Throughput::Bytes` = weight
//! bytes streamed per call (so criterion reports GB/s of weights); attention_f16 over 256
//! cached positions (bytes = the K and V rows read).
//!
//! `cargo bench -p folio-benches --bench kernels -- --warm-up-time 1 --measurement-time 2`
//! (add `RUSTFLAGS="-C target-cpu=x86-64-v3"` for the compile-time AVX2 build).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use folio_kernels::{self as k, f16, quant, QK};
use folio_tests::rng::Rng;
use std::hint::black_box;

/// Kernel `$op` (of module `$m`, by default `$op`) on `$args`: its SIMD path, or (`simd`
/// false) its scalar reference.
macro_rules! call {
    ($simd:expr, $m:ident::$op:ident($($arg:expr),*)) => {
        if $simd {
            k::$op($($arg),*)
        } else {
            k::$m::scalar::$op($($arg),*)
        }
    };
    ($simd:expr, $op:ident($($arg:expr),*)) => {
        call!($simd, $op::$op($($arg),*))
    };
}

/// Deterministic values in [-1, 1) (the test kit's SplitMix64).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// (rows, cols): a head-sized toy, attention/projection, and the MLP's c_fc.
const SHAPES: [(usize, usize); 3] = [(64, 64), (384, 384), (1536, 384)];

fn matvec(c: &mut Criterion) {
    for (rows, cols) in SHAPES {
        let w = values(rows * cols, 1);
        let x = values(cols, 2);
        let mut out = vec![0.0f32; rows];
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let g = cols / QK;
        let (mut q8, mut s8) = (vec![0i8; rows * cols], vec![f16::ZERO; rows * g]);
        let (mut q4, mut s4) = (vec![0u8; rows * cols / 2], vec![f16::ZERO; rows * g]);
        for r in 0..rows {
            let src = &w[r * cols..(r + 1) * cols];
            quant::quantize_row_q8(
                &mut q8[r * cols..(r + 1) * cols],
                &mut s8[r * g..(r + 1) * g],
                src,
            );
            quant::quantize_row_q4(
                &mut q4[r * cols / 2..(r + 1) * cols / 2],
                &mut s4[r * g..(r + 1) * g],
                src,
            );
        }
        let shape = format!("{rows}x{cols}");
        let scale_bytes = rows * g * 2;

        pair(c, &format!("matvec_f32/{shape}"), rows * cols * 4, |simd| {
            call!(simd, matvec_f32(&mut out, black_box(&w), black_box(&x)))
        });
        pair(c, &format!("matvec_f16/{shape}"), rows * cols * 2, |simd| {
            call!(simd, matvec_f16(&mut out, black_box(&wh), black_box(&x)))
        });
        // The quantised matvecs include quantize_act: the runtime quantises each matmul's x.
        let (mut xq, mut xs) = (vec![0i8; cols], vec![0.0f32; g]);
        let (b8, b4) = (rows * cols + scale_bytes, rows * cols / 2 + scale_bytes);
        pair(c, &format!("matvec_q8/{shape}"), b8, |simd| {
            let (q8, s8) = (black_box(&q8), black_box(&s8));
            call!(simd, quantize_act(&mut xq, &mut xs, black_box(&x)));
            call!(simd, matvec_q8(&mut out, q8, s8, &xq, &xs))
        });
        pair(c, &format!("matvec_q4/{shape}"), b4, |simd| {
            let (q4, s4) = (black_box(&q4), black_box(&s4));
            call!(simd, quantize_act(&mut xq, &mut xs, black_box(&x)));
            call!(simd, matvec_q4(&mut out, q4, s4, &xq, &xs))
        });
    }
}

/// One group `name`: the scalar reference (`run(false)`) and the SIMD path (`run(true)`)
/// over the same input, `bytes` read per call.
fn pair(c: &mut Criterion, name: &str, bytes: usize, mut run: impl FnMut(bool)) {
    let mut grp = c.benchmark_group(name);
    grp.throughput(Throughput::Bytes(bytes as u64));
    for (id, simd) in [("scalar", false), ("simd", true)] {
        grp.bench_function(id, |b| b.iter(|| run(simd)));
    }
    grp.finish();
}

fn attention(c: &mut Criterion) {
    // One head of the 384-wide, 6-head model over 256 cached positions.
    let (n_embd, hs, n_pos) = (384, 64, 256);
    let q = values(hs, 3);
    let cache = |seed| -> Vec<f16> {
        values(n_pos * n_embd, seed)
            .into_iter()
            .map(f16::from_f32)
            .collect()
    };
    let (kc, vc) = (cache(4), cache(5));
    let (mut out, mut scores) = (vec![0.0f32; hs], vec![0.0f32; n_pos]);
    let bytes = 2 * n_pos * hs * 2;
    pair(c, &format!("attention_f16/{n_pos}"), bytes, |simd| {
        let (q, kc, vc) = (black_box(&q), black_box(&kc), black_box(&vc));
        let s = &mut scores;
        call!(
            simd,
            attention::attention_f16(&mut out, q, kc, vc, n_embd, n_pos, s)
        )
    });
}

criterion_group!(benches, matvec, attention);
criterion_main!(benches);
