//! Runtime logits against the independent f64 reference, position by position, for every
//! fixture shape (tiny ones, an odd-width one, the lab's three) and every encoding, on
//! files from both writers.
//!
//! Metric: for each position, `max |runtime - reference| / max |reference|` over the vocab.
//! The reference rounds K/V to f16 as the format does and quantised matrices' inputs to
//! int8 as the runtime does ([`Options::FORMAT`]); the printed "exact-KV" column is the
//! same metric against an all-f64 reference (f64 K/V, f64 inputs), for comparison.
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan, Vectors};
use folio_tests::handwritten::{self, Layout};
use folio_tests::reference::{Options, Reference};
use folio_tests::{big_shape_positions, rel_diff, runtime_logits, token_sequence, AlignedBytes};

/// Bound for F32/F16 weights (from the task: 5e-4).
const FLOAT_BOUND: f64 = 5e-4;

/// Bound for q8_0/q4_0/mixed weights. The reference decodes the same stored codes and,
/// as the runtime's matvecs do, rounds each quantised matrix's input to int8 groups
/// ([`Options::FORMAT`]), so most positions agree to f32 rounding (about 2e-7). But the
/// reference's activations differ from the runtime's f32 ones in the last bits, and an
/// activation within that distance of a rounding tie takes the other code: one step of
/// `max|x| / 127` in one input. The fixtures' residual streams are small (weights of std
/// 0.02), so the next LayerNorm multiplies such a step by about 30, and through the KV
/// cache it stays in every later position. Measured (2026-12-03) over every case of this
/// file: at most 2.3e-2 on x86-64 (the 256/384 lab shape), 1.9e-2 on aarch64 under qemu
/// (a tiny shape; f32/f16: 5.3e-5). The bound stays at the task's 3e-2 ceiling; a wrong
/// nibble order or group scale moves the logits by O(1) (see `quantised_references_track_the_f32_one` in
/// writers.rs for the scale of unrelated weights).
const QUANT_BOUND: f64 = 3e-2;

/// Bound between the runtime's logits on the two writers' files (same tensors, other
/// layout and alignment): only summation-order effects of alignment could differ.
const WRITER_BOUND: f64 = 1e-6;

fn bound(plan: Plan) -> f64 {
    if plan.quantised() {
        QUANT_BOUND
    } else {
        FLOAT_BOUND
    }
}

/// One parity run; returns the worst per-position relative error.
fn check(
    spec: FixtureSpec,
    positions: usize,
    layouts: &[(&str, Layout)],
    exact_column: bool,
) -> f64 {
    let fx = spec.build();
    let file = fx.to_safetensors();
    let reference = Reference::from_bytes(&file).expect("reference loads the fixture");
    let n = positions.min(spec.config.block_size);
    let tokens = token_sequence(n, spec.config.vocab_size, spec.seed ^ 0x55);
    let want = reference.logits(&tokens, Options::FORMAT);
    let exact = if exact_column {
        Some(reference.logits(&tokens, Options::EXACT))
    } else {
        None
    };

    let aligned = AlignedBytes::new(&file);
    let got = runtime_logits(aligned.bytes(), &tokens)
        .unwrap_or_else(|e| panic!("{}: runtime: {e}", spec.config.label()));
    let bound = bound(spec.plan);
    let mut worst = 0.0f64;
    let mut worst_exact = 0.0f64;
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = rel_diff(g, w);
        assert!(
            d <= bound,
            "{} {} seed {}: position {p}: relative error {d:.3e} > {bound:.1e}",
            spec.config.label(),
            spec.plan.label(),
            spec.seed
        );
        worst = worst.max(d);
        if let Some(e) = &exact {
            worst_exact = worst_exact.max(rel_diff(g, &e[p]));
        }
    }
    for (label, layout) in layouts {
        let other = AlignedBytes::new(&handwritten::write(&fx, layout));
        let got2 = runtime_logits(other.bytes(), &tokens)
            .unwrap_or_else(|e| panic!("handwritten ({label}): runtime: {e}"));
        for (p, (a, b)) in got2.iter().zip(&got).enumerate() {
            let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
            let d = rel_diff(a, &b64);
            assert!(
                d <= WRITER_BOUND,
                "{}: writer 2 ({label}) differs from writer 1 at position {p}: {d:.3e}",
                spec.config.label()
            );
        }
    }
    eprintln!(
        "parity {:<24} {:<5} vec {:?} pos {:>3}: max rel err {:.2e}{}",
        spec.config.label(),
        spec.plan.label(),
        spec.vectors,
        n,
        worst,
        if exact_column {
            format!(" (exact-KV reference: {worst_exact:.2e})")
        } else {
            String::new()
        }
    );
    worst
}

#[test]
fn tiny_shapes_every_encoding_both_writers() {
    let layouts = Layout::variants();
    for (i, config) in Config::TINY.into_iter().enumerate() {
        for (j, plan) in Plan::ALL.into_iter().enumerate() {
            let spec = FixtureSpec::new(config, plan, (10 * i + j) as u64).std(0.05);
            check(spec, config.block_size, &layouts, true);
        }
    }
}

#[test]
fn larger_weights_make_attention_peaky() {
    // std 0.3: attention far from uniform, logits spread; a masking or scaling bug shows.
    for plan in Plan::ALL {
        check(
            FixtureSpec::new(Config::TINY[1], plan, 77).std(0.3),
            16,
            &[],
            true,
        );
    }
}

#[test]
fn odd_width_shape_float_encodings() {
    let layouts = Layout::variants();
    for plan in [Plan::All(Encoding::F32), Plan::All(Encoding::F16)] {
        for vectors in [Vectors::F32, Vectors::F16, Vectors::Alternate] {
            check(
                FixtureSpec::new(Config::ODD, plan, 4)
                    .vectors(vectors)
                    .std(0.05),
                6,
                &layouts,
                true,
            );
        }
    }
}

#[test]
fn vector_dtypes_independent_of_matrix_encoding() {
    for plan in Plan::ALL {
        for vectors in [Vectors::F32, Vectors::F16, Vectors::Alternate] {
            check(
                FixtureSpec::new(Config::TINY[0], plan, 21)
                    .vectors(vectors)
                    .std(0.05),
                8,
                &[],
                false,
            );
        }
    }
}

#[test]
fn lab_shape_4_64_4_3() {
    let layouts = Layout::variants();
    for (j, plan) in Plan::ALL.into_iter().enumerate() {
        check(
            FixtureSpec::new(Config::LAB[0], plan, 100 + j as u64),
            4,
            &layouts,
            true,
        );
    }
}

/// The plans run on the two big lab shapes: all five on x86-64; under emulation (aarch64
/// via qemu-user, where building and decoding 7M-parameter fixtures is slow) one each:
/// mixed (every encoding in one file) on 128/384/6/4 and q8_0 on 256/384/6/4.
/// `FOLIO_PARITY_ALL_PLANS=1` runs all five everywhere.
fn big_plans(emulated_choice: Plan) -> Vec<Plan> {
    if cfg!(target_arch = "x86_64") || std::env::var_os("FOLIO_PARITY_ALL_PLANS").is_some() {
        Plan::ALL.to_vec()
    } else {
        vec![emulated_choice]
    }
}

#[test]
fn lab_shape_128_384_6_4() {
    let layouts = [Layout::variants()[0]];
    for (j, plan) in big_plans(Plan::Mixed).into_iter().enumerate() {
        check(
            FixtureSpec::new(Config::LAB[1], plan, 200 + j as u64),
            big_shape_positions(),
            &layouts,
            j == 0,
        );
    }
}

#[test]
fn lab_shape_256_384_6_4() {
    let layouts = [Layout::variants()[3]];
    for (j, plan) in big_plans(Plan::All(Encoding::Q8_0)).into_iter().enumerate() {
        check(
            FixtureSpec::new(Config::LAB[2], plan, 300 + j as u64),
            big_shape_positions(),
            &layouts,
            false,
        );
    }
}

/// The committed runs in `models/` (the report's inputs: real weights, trained by the
/// exporter on Tiny Shakespeare, q8_0) against the reference on a line of the play, so a
/// format or kernel change that would strand them fails here.
#[test]
fn committed_models_match_the_reference() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let text =
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.";
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("models/") {
        let path = entry.expect("models/ entry").path();
        if !path.to_string_lossy().ends_with(".q8_0.safetensors") {
            continue;
        }
        let file = std::fs::read(&path).expect("read a committed model");
        let reference = Reference::from_bytes(&file).expect("reference loads it");
        let mut tokens = reference.encode(text);
        tokens.truncate(reference.config.block_size);
        let want = reference.logits(&tokens, Options::FORMAT);
        let got = runtime_logits(AlignedBytes::new(&file).bytes(), &tokens)
            .unwrap_or_else(|e| panic!("{}: runtime: {e}", path.display()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| rel_diff(g, w))
            .fold(0.0, f64::max);
        assert!(worst <= QUANT_BOUND, "{}: {worst:.3e}", path.display());
        eprintln!(
            "parity {}: {} positions, max rel err {worst:.2e}",
            path.display(),
            tokens.len()
        );
        seen.push(path);
    }
    assert!(
        seen.len() >= 3,
        "models/ should hold model1, model2 and edge, found {seen:?}"
    );
}
