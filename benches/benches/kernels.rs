//! Kernel throughput: each matvec encoding at the model's shapes, scalar reference and the
//! SIMD path this build selects side by side in one group (q8_0/q4_0 with the activation
//! quantisation each call makes), `Throughput::Bytes` = weight
//! bytes streamed per call (so criterion reports GB/s of weights); attention_f16 over 256
//! cached positions (bytes = the K and V rows read).
//!
//! `cargo bench -p folio-benches --bench kernels -- --warm-up-time 1 --measurement-time 2`
//! (add `RUSTFLAGS="-C target-cpu=x86-64-v3"` for the compile-time AVX2 build).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use folio_kernels::{self as k, f16, quant, QK};
use std::hint::black_box;

/// Deterministic values in [-1, 1) (SplitMix64), no dependency.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
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
        let scale_bytes = (rows * g * 2) as u64;

        let mut grp = c.benchmark_group(format!("matvec_f32/{shape}"));
        grp.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        grp.bench_function("scalar", |b| {
            b.iter(|| k::matvec_f32::scalar::matvec_f32(&mut out, black_box(&w), black_box(&x)))
        });
        grp.bench_function("simd", |b| {
            b.iter(|| k::matvec_f32(&mut out, black_box(&w), black_box(&x)))
        });
        grp.finish();

        let mut grp = c.benchmark_group(format!("matvec_f16/{shape}"));
        grp.throughput(Throughput::Bytes((rows * cols * 2) as u64));
        grp.bench_function("scalar", |b| {
            b.iter(|| k::matvec_f16::scalar::matvec_f16(&mut out, black_box(&wh), black_box(&x)))
        });
        grp.bench_function("simd", |b| {
            b.iter(|| k::matvec_f16(&mut out, black_box(&wh), black_box(&x)))
        });
        grp.finish();

        // The quantised matvecs include quantize_act: the runtime quantises each matmul's x.
        let (mut xq, mut xs) = (vec![0i8; cols], vec![0.0f32; g]);
        let mut grp = c.benchmark_group(format!("matvec_q8/{shape}"));
        grp.throughput(Throughput::Bytes((rows * cols) as u64 + scale_bytes));
        grp.bench_function("scalar", |b| {
            b.iter(|| {
                k::quantize_act::scalar::quantize_act(&mut xq, &mut xs, black_box(&x));
                k::matvec_q8::scalar::matvec_q8(&mut out, black_box(&q8), black_box(&s8), &xq, &xs)
            })
        });
        grp.bench_function("simd", |b| {
            b.iter(|| {
                k::quantize_act(&mut xq, &mut xs, black_box(&x));
                k::matvec_q8(&mut out, black_box(&q8), black_box(&s8), &xq, &xs)
            })
        });
        grp.finish();

        let mut grp = c.benchmark_group(format!("matvec_q4/{shape}"));
        grp.throughput(Throughput::Bytes((rows * cols / 2) as u64 + scale_bytes));
        grp.bench_function("scalar", |b| {
            b.iter(|| {
                k::quantize_act::scalar::quantize_act(&mut xq, &mut xs, black_box(&x));
                k::matvec_q4::scalar::matvec_q4(&mut out, black_box(&q4), black_box(&s4), &xq, &xs)
            })
        });
        grp.bench_function("simd", |b| {
            b.iter(|| {
                k::quantize_act(&mut xq, &mut xs, black_box(&x));
                k::matvec_q4(&mut out, black_box(&q4), black_box(&s4), &xq, &xs)
            })
        });
        grp.finish();
    }
}

fn attention(c: &mut Criterion) {
    // One head of the 384-wide, 6-head model over 256 cached positions.
    let (n_embd, hs, n_pos) = (384, 64, 256);
    let q = values(hs, 3);
    let kc: Vec<f16> = values(n_pos * n_embd, 4)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let vc: Vec<f16> = values(n_pos * n_embd, 5)
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    let (mut out, mut scores) = (vec![0.0f32; hs], vec![0.0f32; n_pos]);
    let mut grp = c.benchmark_group("attention_f16");
    grp.throughput(Throughput::Bytes((2 * n_pos * hs * 2) as u64));
    grp.bench_with_input(BenchmarkId::new("scalar", n_pos), &n_pos, |b, &n| {
        b.iter(|| {
            k::attention::scalar::attention_f16(
                &mut out,
                black_box(&q),
                black_box(&kc),
                black_box(&vc),
                n_embd,
                n,
                &mut scores,
            )
        })
    });
    grp.bench_with_input(BenchmarkId::new("simd", n_pos), &n_pos, |b, &n| {
        b.iter(|| {
            k::attention_f16(
                &mut out,
                black_box(&q),
                black_box(&kc),
                black_box(&vc),
                n_embd,
                n,
                &mut scores,
            )
        })
    });
    grp.finish();
}

criterion_group!(benches, matvec, attention);
criterion_main!(benches);
