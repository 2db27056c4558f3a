//! Stage 6: logits → next token.
//!
//! - `temperature == 0`: greedy, `folio_kernels::argmax` (first index on ties); no random
//!   number is drawn. A temperature so small that `1 / temperature` overflows f32 (below
//!   about `2.9e-39`) is greedy too: that is the softmax's limit, and the scaled logits would
//!   otherwise be `0 · inf = NaN`.
//! - otherwise `p_i ∝ exp((l_i - max) / temperature)`, then optionally top-k (keep the `k`
//!   most likely) and top-p (keep the smallest most-likely prefix whose mass reaches
//!   `top_p` of what top-k kept), then one draw from what is left.
//!
//! Top-k/top-p use partial selection (select the next largest, stop when done): `O(k·V)`
//! and no sort code in flash. Scratch (`probs`, `idx`, `V` each) comes from the caller;
//! [`crate::Session::sample`] passes the session's own.
//!
//! Every logit must be finite: a NaN or infinite one (non-finite weights) is
//! [`Error::NonFiniteLogit`], whatever the settings, so a broken model stops instead of
//! emitting one token forever.
//!
//! PRNG: **xorshift64\*** (Vigna 2016: `x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
//! out = x * 0x2545F4914F6CDD1D`), state seeded by one round of **splitmix64** of `seed`.
//! A uniform `u ∈ [0, 1)` is the top 24 bits of one output times `2^-24`; each
//! non-greedy sample draws exactly one output.
use crate::error::{Error, SamplerParam};

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` = greedy. Must be finite and `>= 0`; values below about
    /// `2.9e-39` (whose inverse overflows) are greedy as well.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` = off.
    pub top_k: usize,
    /// Nucleus mass in `(0, 1]`; `1.0` = off.
    pub top_p: f32,
    /// PRNG seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// Temperature 1, no top-k/top-p, seed 0.
    fn default() -> Self {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding.
    pub const fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// xorshift64* seeded through splitmix64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded from `seed` (any value, 0 included).
    pub const fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`, 24 bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
    }
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    /// `1 / temperature`, or `None` for greedy decoding.
    inv_t: Option<f32>,
    rng: Rng,
}

impl Sampler {
    /// Validate `config` ([`Error::BadSamplerParam`]) and seed the PRNG.
    pub fn new(config: SamplerConfig) -> Result<Self, Error> {
        if !(config.temperature.is_finite() && config.temperature >= 0.0) {
            return Err(Error::BadSamplerParam {
                param: SamplerParam::Temperature,
            });
        }
        if !(config.top_p > 0.0 && config.top_p <= 1.0) {
            return Err(Error::BadSamplerParam {
                param: SamplerParam::TopP,
            });
        }
        let inv_t = Some(1.0 / config.temperature).filter(|i| i.is_finite());
        Ok(Sampler {
            config,
            inv_t,
            rng: Rng::new(config.seed),
        })
    }

    /// Pick a token from `logits (V)`. `probs` and `idx` are scratch of at least `V`
    /// elements each (else [`Error::BufferTooSmall`]); their contents are overwritten.
    /// A NaN or infinite logit is [`Error::NonFiniteLogit`].
    pub fn sample(
        &mut self,
        logits: &[f32],
        probs: &mut [f32],
        idx: &mut [u32],
    ) -> Result<u32, Error> {
        let v = logits.len();
        let (Some(probs), Some(idx)) = (probs.get_mut(..v), idx.get_mut(..v)) else {
            return Err(Error::BufferTooSmall { needed: v });
        };
        if let Some(token) = logits.iter().position(|l| !l.is_finite()) {
            return Err(Error::NonFiniteLogit {
                token: token as u32,
            });
        }
        let cfg = self.config;
        let inv_t = match self.inv_t {
            Some(inv_t) if v > 1 => inv_t,
            _ => return Ok(folio_kernels::argmax(logits) as u32),
        };
        // probs (V) = exp((l - max) / T), unnormalised.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f32;
        for (p, &l) in probs.iter_mut().zip(logits) {
            *p = folio_kernels::math::expf((l - max) * inv_t);
            total += *p;
        }
        for (i, slot) in idx.iter_mut().enumerate() {
            *slot = i as u32;
        }
        let k = if cfg.top_k == 0 { v } else { cfg.top_k.min(v) };
        let nucleus = cfg.top_p < 1.0;
        // Candidates: idx[..n], of mass `mass`.
        let (mut n, mut mass) = (v, total);
        if k < v || nucleus {
            // Partial selection, idx[..n] in decreasing probability: the top k, or without
            // top-k just enough to reach top_p of the total.
            let stop = if k < v {
                f32::INFINITY
            } else {
                cfg.top_p * total
            };
            (n, mass) = (0, 0.0);
            while n < k && mass < stop {
                idx.swap(n, best_from(probs, idx, n));
                mass += idx
                    .get(n)
                    .and_then(|&i| probs.get(i as usize))
                    .unwrap_or(&0.0);
                n += 1;
            }
            if nucleus && k < v {
                // top-p within the top-k set.
                let (target, mut acc, mut m) = (cfg.top_p * mass, 0.0f32, 0);
                for &i in idx.iter().take(n) {
                    acc += probs.get(i as usize).copied().unwrap_or(0.0);
                    m += 1;
                    if acc >= target {
                        break;
                    }
                }
                (n, mass) = (m, acc);
            }
        }
        let r = self.rng.next_f32() * mass;
        let mut acc = 0.0f32;
        let mut last = idx.first().copied().unwrap_or(0);
        for &i in idx.iter().take(n) {
            let p = probs.get(i as usize).copied().unwrap_or(0.0);
            if p > 0.0 {
                last = i;
            }
            acc += p;
            if r < acc {
                return Ok(i);
            }
        }
        Ok(last)
    }
}

/// Position in `idx[from..]` (as an index into `idx`) of the most probable candidate
/// (first on ties).
fn best_from(probs: &[f32], idx: &[u32], from: usize) -> usize {
    let mut best = from;
    let mut best_p = f32::NEG_INFINITY;
    for (j, &i) in idx.iter().enumerate().skip(from) {
        let p = probs.get(i as usize).copied().unwrap_or(0.0);
        if p > best_p {
            best = j;
            best_p = p;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }
    use std::vec;
    use std::vec::Vec;

    fn draw(cfg: SamplerConfig, logits: &[f32], n: usize) -> Vec<u32> {
        let mut s = Sampler::new(cfg).unwrap();
        let mut probs = vec![0.0; logits.len()];
        let mut idx = vec![0; logits.len()];
        (0..n)
            .map(|_| s.sample(logits, &mut probs, &mut idx).unwrap())
            .collect()
    }

    fn histogram(tokens: &[u32], v: usize) -> Vec<f64> {
        let mut h = vec![0.0; v];
        for &t in tokens {
            h[t as usize] += 1.0 / tokens.len() as f64;
        }
        h
    }

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.0, 0.0, 2.5];

    #[test]
    fn rng_is_xorshift64_star() {
        // From the published recurrence, state 1, computed separately in Python.
        let mut r = Rng { state: 1 };
        assert_eq!(r.next_u64(), 0x47e4_ce4b_896c_dd1d);
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        let mut r = Rng::new(0);
        assert!((0..1000)
            .map(|_| r.next_f32())
            .all(|u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn greedy_is_argmax_and_draws_nothing() {
        assert!(draw(SamplerConfig::greedy(), &LOGITS, 10)
            .iter()
            .all(|&t| t == 1));
        assert_eq!(draw(SamplerConfig::greedy(), &[2.0, 2.0], 1), [0]);
    }

    #[test]
    fn seeded_sampling_is_deterministic() {
        let cfg = cfg(0.9, 3, 0.95, 7);
        assert_eq!(draw(cfg, &LOGITS, 200), draw(cfg, &LOGITS, 200));
        assert_ne!(
            draw(cfg, &LOGITS, 200),
            draw(SamplerConfig { seed: 8, ..cfg }, &LOGITS, 200)
        );
    }

    #[test]
    fn temperature_one_matches_softmax() {
        let n = 40_000;
        let h = histogram(
            &draw(
                SamplerConfig {
                    seed: 3,
                    ..Default::default()
                },
                &LOGITS,
                n,
            ),
            5,
        );
        let z: f64 = LOGITS.iter().map(|&l| (l as f64).exp()).sum();
        for (i, &l) in LOGITS.iter().enumerate() {
            let p = (l as f64).exp() / z;
            // 5 standard deviations of a binomial proportion.
            let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt();
            assert!((h[i] - p).abs() < tol, "token {i}: {} vs {p}", h[i]);
        }
    }

    #[test]
    fn top_k_keeps_only_the_k_best() {
        let toks = draw(cfg(1.0, 2, 1.0, 1), &LOGITS, 5000);
        let h = histogram(&toks, 5);
        assert_eq!(h[0] + h[2] + h[3], 0.0);
        // Renormalised over {1, 4}: p(1) = e^3 / (e^3 + e^2.5).
        let p1 = 1.0 / (1.0 + (-0.5f64).exp());
        assert!((h[1] - p1).abs() < 0.03, "{h:?}");
        let one = draw(
            SamplerConfig {
                top_k: 1,
                ..Default::default()
            },
            &LOGITS,
            50,
        );
        assert!(one.iter().all(|&t| t == 1));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // softmax(LOGITS) ≈ [0.054, 0.400, 0.147, 0.020, 0.243] (sorted: 1, 4, 2, 0, 3);
        // top_p 0.6: tokens 1 and 4 (mass 0.643).
        let toks = draw(cfg(1.0, 0, 0.6, 5), &LOGITS, 5000);
        let h = histogram(&toks, 5);
        assert_eq!(h[0] + h[2] + h[3], 0.0, "{h:?}");
        assert!(h[1] > 0.55 && h[4] > 0.3, "{h:?}");
        // top_p within top_k: k = 3 keeps {1, 4, 2} (mass .79); p = .5 of that needs {1, 4}.
        let toks = draw(cfg(1.0, 3, 0.55, 5), &LOGITS, 2000);
        let h = histogram(&toks, 5);
        assert_eq!(h[0] + h[2] + h[3], 0.0, "{h:?}");
        // A tiny top_p is greedy.
        let toks = draw(cfg(1.0, 0, 1e-6, 5), &LOGITS, 100);
        assert!(toks.iter().all(|&t| t == 1));
    }

    #[test]
    fn low_temperature_sharpens() {
        let toks = draw(
            SamplerConfig {
                temperature: 0.05,
                ..Default::default()
            },
            &LOGITS,
            500,
        );
        assert!(toks.iter().filter(|&&t| t == 1).count() > 490);
    }

    #[test]
    fn bad_parameters_and_scratch() {
        let temperatures =
            [-1.0, f32::NAN, f32::INFINITY].map(|t| (cfg(t, 0, 1.0, 0), SamplerParam::Temperature));
        let top_ps = [0.0, -0.5, 1.5, f32::NAN].map(|p| (cfg(1.0, 0, p, 0), SamplerParam::TopP));
        for (c, param) in temperatures.into_iter().chain(top_ps) {
            assert_eq!(
                Sampler::new(c).unwrap_err(),
                Error::BadSamplerParam { param },
                "{c:?}"
            );
        }
        let mut s = Sampler::new(SamplerConfig::default()).unwrap();
        assert_eq!(
            s.sample(&LOGITS, &mut [0.0; 4], &mut [0; 5]),
            Err(Error::BufferTooSmall { needed: 5 })
        );
    }

    #[test]
    fn non_finite_logits_are_an_error_in_every_mode() {
        let greedy = SamplerConfig::greedy();
        let sampled = cfg(0.7, 2, 0.9, 3);
        for cfg in [greedy, sampled, SamplerConfig::default()] {
            let mut s = Sampler::new(cfg).unwrap();
            for (bad, at) in [
                ([1.0, f32::NAN, 2.0], 1),
                ([f32::INFINITY, 1.0, 2.0], 0),
                ([1.0, 2.0, f32::NEG_INFINITY], 2),
            ] {
                assert_eq!(
                    s.sample(&bad, &mut [0.0; 3], &mut [0; 3]),
                    Err(Error::NonFiniteLogit { token: at }),
                    "{cfg:?} {bad:?}"
                );
            }
            // A single-token vocabulary is checked too.
            assert_eq!(
                s.sample(&[f32::NAN], &mut [0.0; 1], &mut [0; 1]),
                Err(Error::NonFiniteLogit { token: 0 })
            );
        }
    }

    #[test]
    fn temperatures_whose_inverse_overflows_are_greedy() {
        // 1 / 1e-40 overflows f32; before, (l - max) * inf gave 0 * inf = NaN for the best
        // token and the draw always fell through to token 0.
        for t in [1e-40f32, f32::MIN_POSITIVE / 8.0, 1e-45] {
            assert!((1.0 / t).is_infinite(), "{t}");
            let cfg = SamplerConfig {
                temperature: t,
                seed: 9,
                ..Default::default()
            };
            assert!(Sampler::new(cfg).unwrap().inv_t.is_none());
            assert!(draw(cfg, &LOGITS, 20).iter().all(|&x| x == 1), "{t}");
            let last_best = [0.5, -1.0, 0.25, 3.0];
            assert!(draw(cfg, &last_best, 5).iter().all(|&x| x == 3), "{t}");
        }
        // A temperature just above the overflow still samples (sharply).
        let t = 4e-39f32;
        assert!((1.0 / t).is_finite());
        let cfg = SamplerConfig {
            temperature: t,
            seed: 9,
            ..Default::default()
        };
        assert!(Sampler::new(cfg).unwrap().inv_t.is_some());
        assert!(draw(cfg, &LOGITS, 20).iter().all(|&x| x == 1));
    }
}
