//! Generation against the f64 reference: greedy decoding follows the reference's argmax
//! step by step (Exact and Shift modes, past the window), seeded sampling is
//! deterministic, and the sampler's distributions are the documented ones.
use folio_runtime::{ContextMode, Error, Generator, Model, Sampler, SamplerConfig};
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::reference::{argmax, Options, Reference};
use folio_tests::AlignedBytes;

/// The context the runtime's generator sees after feeding `t`, per its documented policy.
fn advance(window: &mut Vec<u32>, t: u32, block: usize, mode: ContextMode) {
    match mode {
        // Full window: keep the most recent block/2 tokens (re-encoded at 0..), then append.
        ContextMode::Shift => {
            if window.len() >= block {
                let keep = block / 2;
                *window = window[window.len() - keep..].to_vec();
            }
            window.push(t);
        }
        // The last `block` tokens, recomputed from position 0.
        ContextMode::Exact => {
            window.push(t);
            if window.len() > block {
                window.remove(0);
            }
        }
    }
}

/// A generator over `model` whose session lives in `mem` (resized to fit).
fn generator<'s, 'a>(
    model: &'s Model<'a>,
    mem: &'s mut Vec<u8>,
    mode: ContextMode,
    cfg: SamplerConfig,
) -> Generator<'s, 'a> {
    mem.resize(model.session_bytes(), 0);
    let s = model.session(mem).expect("session");
    Generator::with_mode(s, Sampler::new(cfg).expect("sampler"), mode)
}

/// Greedy-generate `n` tokens and check each against the reference's argmax over the
/// same window. Steps where the reference's top two logits are closer than `tie` (relative
/// to the largest |logit|) are not judged (f32 vs f64 may order them either way); the
/// function returns how many steps were judged.
fn greedy_vs_reference(spec: FixtureSpec, mode: ContextMode, prompt: &str, n: usize) -> usize {
    let bytes = spec.to_bytes();
    let reference = Reference::from_bytes(&bytes).expect("reference");
    let a = AlignedBytes::new(&bytes);
    let model = Model::from_bytes(a.bytes()).expect("load");
    let mut mem = Vec::new();
    let mut g = generator(&model, &mut mem, mode, SamplerConfig::greedy());
    let block = spec.config.block_size;
    let prompt = reference.encode(prompt);
    let mut window = Vec::new();
    for &t in &prompt {
        advance(&mut window, t, block, mode);
    }
    g.prompt(&prompt).expect("prompt");
    // Twice the worst per-logit parity error seen (4.6e-4 relative, aarch64), rounded up.
    let tie = 1e-3;
    let mut judged = 0;
    for step in 0..n {
        let got = g.next().expect("next");
        assert_eq!(
            g.window(),
            &window[..],
            "step {step}: window differs from the documented {mode:?} policy"
        );
        let logits = reference.logits(&window, Options::FORMAT);
        let last = logits.last().expect("non-empty");
        let best = argmax(last);
        let scale = last.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let second = last
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best)
            .fold(f64::NEG_INFINITY, |m, (_, &v)| m.max(v));
        if (last[best] - second) / scale > tie {
            assert_eq!(
                got as usize,
                best,
                "{} {mode:?} step {step}: runtime picked {got}, reference argmax {best}",
                spec.config.label()
            );
            judged += 1;
        }
        advance(&mut window, got, block, mode);
    }
    judged
}

#[test]
fn greedy_matches_reference_in_the_first_block_and_past_it() {
    // Exact, block 16: 4 prompt tokens + 12 fill the first block; 12 more run past it.
    // Shift, block 12: 40 steps shift the window several times.
    let cases = [
        (Config::TINY[1], ContextMode::Exact, "the ", 24, 40),
        (Config::TINY[2], ContextMode::Shift, "ROMEO:", 40, 50),
    ];
    for (config, mode, prompt, n, seed) in cases {
        for (j, plan) in Plan::ALL.into_iter().enumerate() {
            let spec = FixtureSpec::new(config, plan, seed + j as u64).std(0.3);
            let judged = greedy_vs_reference(spec, mode, prompt, n);
            assert!(
                judged * 10 >= n * 9,
                "{mode:?} {}: only {judged}/{n} steps were decisive",
                plan.label()
            );
        }
    }
}

#[test]
fn greedy_on_the_first_lab_shape() {
    // block 4: both modes leave the window after a few tokens.
    for mode in [ContextMode::Exact, ContextMode::Shift] {
        let spec = FixtureSpec::new(Config::LAB[0], Plan::All(Encoding::Q8_0), 60).std(0.3);
        let judged = greedy_vs_reference(spec, mode, "ROMEO:", 20);
        assert!(judged >= 18, "{mode:?}: {judged}/20");
    }
}

fn sample_run(bytes: &[u8], cfg: SamplerConfig, mode: ContextMode, n: usize) -> Vec<u32> {
    let model = Model::from_bytes(bytes).expect("load");
    let mut mem = Vec::new();
    let mut g = generator(&model, &mut mem, mode, cfg);
    let mut prompt = [0u32; 8];
    let np = model
        .tokenizer()
        .encode("to the", &mut prompt)
        .expect("encode");
    g.prompt(&prompt[..np]).expect("prompt");
    (0..n).map(|_| g.next().expect("next")).collect()
}

#[test]
fn seeded_sampling_is_deterministic_and_seed_dependent() {
    let a = AlignedBytes::new(
        &FixtureSpec::new(Config::TINY[1], Plan::Mixed, 8)
            .std(0.1)
            .to_bytes(),
    );
    let cfg = |seed| SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed,
    };
    // Exact mode recomputes the window every token: fewer tokens keep it quick.
    for (mode, n) in [(ContextMode::Shift, 100), (ContextMode::Exact, 40)] {
        let s1 = sample_run(a.bytes(), cfg(1), mode, n);
        assert_eq!(
            s1,
            sample_run(a.bytes(), cfg(1), mode, n),
            "{mode:?}: same seed, same tokens"
        );
        let s2 = sample_run(a.bytes(), cfg(2), mode, n);
        let s3 = sample_run(a.bytes(), cfg(3), mode, n);
        assert_ne!(s1, s2, "{mode:?}: seeds 1 and 2");
        assert_ne!(s2, s3, "{mode:?}: seeds 2 and 3");
        // Not degenerate: near-uniform logits over 29 tokens give many distinct tokens.
        let mut distinct = s1.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 10,
            "{mode:?}: {} distinct tokens",
            distinct.len()
        );
    }
    // top_k = 1 is greedy whatever the seed.
    let k1 = |seed| SamplerConfig {
        temperature: 1.5,
        top_k: 1,
        top_p: 1.0,
        seed,
    };
    let greedy = sample_run(a.bytes(), SamplerConfig::greedy(), ContextMode::Shift, 50);
    assert_eq!(sample_run(a.bytes(), k1(5), ContextMode::Shift, 50), greedy);
    assert_eq!(sample_run(a.bytes(), k1(6), ContextMode::Shift, 50), greedy);
}

#[test]
fn shift_mode_runs_far_past_the_window() {
    for config in [Config::TINY[0], Config::LAB[0]] {
        let a =
            AlignedBytes::new(&FixtureSpec::new(config, Plan::All(Encoding::Q4_0), 9).to_bytes());
        let cfg = SamplerConfig {
            temperature: 0.8,
            top_k: 10,
            top_p: 0.95,
            seed: 3,
        };
        let tokens = sample_run(a.bytes(), cfg, ContextMode::Shift, 20 * config.block_size);
        assert!(tokens.iter().all(|&t| (t as usize) < config.vocab_size));
    }
}

/// Empirical frequencies of `draws` samples from fixed logits.
fn frequencies(cfg: SamplerConfig, logits: &[f32], draws: usize) -> Vec<f64> {
    let mut s = Sampler::new(cfg).expect("sampler");
    let (mut probs, mut idx) = (vec![0.0; logits.len()], vec![0u32; logits.len()]);
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        counts[s.sample(logits, &mut probs, &mut idx).expect("sample") as usize] += 1;
    }
    counts
        .into_iter()
        .map(|c| c as f64 / draws as f64)
        .collect()
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    // 40k draws: one standard deviation is at most 0.0025; 0.012 is about 5 sigma.
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 0.012,
            "{what}: token {i}: frequency {g:.4}, expected {w:.4}\n got {got:?}\nwant {want:?}"
        );
    }
}

#[test]
fn sampler_distributions_are_the_documented_ones() {
    let logits = [0.5f32, 2.0, -1.0, 1.0, 0.0, 1.7];
    let l64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let n = 40_000;
    let cfg = |temperature, top_k, top_p| SamplerConfig {
        temperature,
        top_k,
        top_p,
        seed: 99,
    };

    // Plain softmax, and temperature 0.5 (= softmax of 2l).
    assert_close(
        &frequencies(cfg(1.0, 0, 1.0), &logits, n),
        &softmax(&l64),
        "T=1",
    );
    let l2: Vec<f64> = l64.iter().map(|v| v * 2.0).collect();
    assert_close(
        &frequencies(cfg(0.5, 0, 1.0), &logits, n),
        &softmax(&l2),
        "T=0.5",
    );

    // top-k 2: tokens 1 and 5, renormalised.
    let p = softmax(&l64);
    let mut want = vec![0.0; 6];
    want[1] = p[1] / (p[1] + p[5]);
    want[5] = p[5] / (p[1] + p[5]);
    assert_close(&frequencies(cfg(1.0, 2, 1.0), &logits, n), &want, "top_k=2");

    // top-p: the smallest most-likely prefix reaching the mass. Sorted: 1, 5, 3, 0, 4, 2.
    let order = [1usize, 5, 3, 0, 4, 2];
    for top_p in [0.5f32, 0.8, 0.95] {
        let mut acc = 0.0;
        let mut kept = Vec::new();
        for &i in &order {
            kept.push(i);
            acc += p[i];
            if acc >= top_p as f64 {
                break;
            }
        }
        let mass: f64 = kept.iter().map(|&i| p[i]).sum();
        let mut want = vec![0.0; 6];
        for &i in &kept {
            want[i] = p[i] / mass;
        }
        assert_close(
            &frequencies(cfg(1.0, 0, top_p), &logits, n),
            &want,
            &format!("top_p={top_p}"),
        );
    }

    // Greedy: always the argmax, first on ties.
    assert_eq!(frequencies(cfg(0.0, 0, 1.0), &logits, 100)[1], 1.0);
    assert_eq!(frequencies(cfg(0.0, 0, 1.0), &[1.0, 3.0, 3.0], 10)[1], 1.0);
}

// ---- the generator's own contract ----------------------------------------------------------

/// 8/32/4/2, vocab 29, tied, F32, weights with std 0.3.
fn small() -> AlignedBytes {
    let config = Config::new(8, 32, 4, 2).vocab(29);
    AlignedBytes::new(
        &FixtureSpec::new(config, Plan::All(Encoding::F32), 4)
            .std(0.3)
            .to_bytes(),
    )
}

/// `f` on a greedy generator over [`small`] in `mode`.
fn greedy_small(mode: ContextMode, f: impl FnOnce(&mut Generator<'_, '_>)) {
    let file = small();
    let model = Model::from_bytes(file.bytes()).expect("load");
    let mut mem = Vec::new();
    f(&mut generator(
        &model,
        &mut mem,
        mode,
        SamplerConfig::greedy(),
    ))
}

fn run(
    model: &Model<'_>,
    mode: ContextMode,
    cfg: SamplerConfig,
    prompt: &[u32],
    n: usize,
) -> Vec<u32> {
    let mut mem = Vec::new();
    let mut g = generator(model, &mut mem, mode, cfg);
    g.prompt(prompt).expect("prompt");
    (0..n).map(|_| g.next().expect("next")).collect()
}

#[test]
fn shift_equals_exact_until_the_window_fills() {
    let file = small();
    let model = Model::from_bytes(file.bytes()).expect("load");
    let cfg = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 11,
    };
    // Prompt 3 + 5 generated = 8 = block_size: every step fits in the window.
    let a = run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 6);
    assert_eq!(a, run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 6));
    // Beyond the window both keep going and stay deterministic.
    let a = run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 40);
    assert_eq!(a, run(&model, ContextMode::Shift, cfg, &[1, 2, 3], 40));
    let e = run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 40);
    assert_eq!(e, run(&model, ContextMode::Exact, cfg, &[1, 2, 3], 40));
    assert!(a.iter().chain(&e).all(|&t| t < 29));
}

#[test]
fn greedy_next_is_argmax_of_a_fresh_forward() {
    let file = small();
    let model = Model::from_bytes(file.bytes()).expect("load");
    let toks = run(
        &model,
        ContextMode::Shift,
        SamplerConfig::greedy(),
        &[4, 7],
        5,
    );
    // Recompute each step from scratch with a plain session.
    let mut ctx = vec![4u32, 7];
    for &t in &toks {
        let mut mem = vec![0u8; model.session_bytes()];
        let mut s = model.session(&mut mem).expect("session");
        let mut last = Vec::new();
        for (p, &c) in ctx.iter().enumerate() {
            last = s.forward(c, p).expect("forward").to_vec();
        }
        assert_eq!(folio_kernels::argmax(&last) as u32, t);
        ctx.push(t);
    }
}

#[test]
fn exact_mode_window_is_the_last_block() {
    greedy_small(ContextMode::Exact, |g| {
        let prompt: Vec<u32> = (0..12).collect();
        g.prompt(&prompt).expect("prompt");
        assert_eq!(g.window(), &prompt[4..]);
        let t = g.next().expect("next");
        g.next().expect("next");
        assert_eq!(g.window().len(), 8);
        assert_eq!(*g.window().last().expect("last"), t);
    });
}

#[test]
fn shift_mode_keeps_half_the_window() {
    greedy_small(ContextMode::Shift, |g| {
        let prompt: Vec<u32> = (0..9).collect();
        g.prompt(&prompt).expect("prompt");
        // 8 fill the window; the 9th shifts: keep 4 (4..8), then 8.
        assert_eq!(g.window(), &[4, 5, 6, 7, 8]);
    });
}

#[test]
fn generator_errors() {
    greedy_small(ContextMode::Shift, |g| {
        assert_eq!(g.next(), Err(Error::EmptyPrompt));
        assert_eq!(g.prompt(&[]), Err(Error::EmptyPrompt));
        let e = Error::TokenOutOfRange {
            token: 99,
            vocab_size: 29,
        };
        assert_eq!(g.prompt(&[1, 99]), Err(e));
    });
}

/// A long prompt costs at most `block_size` forwards: `prompt` keeps only the window that
/// feeding every token one at a time would have ended with. That window is re-encoded from
/// position 0 after the last shift, so it must equal a fresh prompt of the window itself:
/// the same window, bit-identical logits and the same continuation.
#[test]
fn long_prompts_skip_to_the_window_token_by_token_feeding_ends_with() {
    let file = small();
    let model = Model::from_bytes(file.bytes()).expect("load");
    let block = model.config().block_size;
    let cfg = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 5,
    };
    let (mut ma, mut mb) = (Vec::new(), Vec::new());
    for mode in [ContextMode::Shift, ContextMode::Exact] {
        for n in 1..=5 * block + 3 {
            let prompt: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 29).collect();
            // The documented policy, token by token.
            let mut want = Vec::new();
            for &t in &prompt {
                advance(&mut want, t, block, mode);
            }
            let mut long = generator(&model, &mut ma, mode, cfg);
            long.prompt(&prompt).expect("prompt");
            assert_eq!(long.window(), &want[..], "{mode:?} n={n}");
            let mut fresh = generator(&model, &mut mb, mode, cfg);
            fresh.prompt(&want).expect("prompt");
            let (la, lb) = (long.session().logits(), fresh.session().logits());
            assert!(
                la.iter().zip(lb).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{mode:?} n={n}"
            );
            for step in 0..2 * block {
                assert_eq!(long.next(), fresh.next(), "{mode:?} n={n} step {step}");
            }
        }
    }
}
