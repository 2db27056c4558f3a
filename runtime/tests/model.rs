//! `Model` and `Session` on fixture files: every encoding loads and runs, the encodings
//! agree with f32, session memory is exact at any alignment, and the metadata and tensor
//! table are what the file holds.
use folio_runtime::{Error, Model};
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::AlignedBytes;

/// 8/32/4/2, vocab 29.
const SMALL: Config = Config::new(8, 32, 4, 2).vocab(29);

fn small(config: Config, enc: Encoding) -> AlignedBytes {
    AlignedBytes::new(
        &FixtureSpec::new(config, Plan::All(enc), 4)
            .std(0.3)
            .to_bytes(),
    )
}

fn logits_all(model: &Model<'_>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut mem = vec![0u8; model.session_bytes()];
    let mut s = model.session(&mut mem).expect("session");
    let forward = |(p, &t): (usize, &u32)| s.forward(t, p).expect("forward").to_vec();
    tokens.iter().enumerate().map(forward).collect()
}

#[test]
fn loads_every_encoding_and_runs() {
    for enc in Encoding::ALL {
        for config in [SMALL, SMALL.untied()] {
            let file = small(config, enc);
            let model = Model::from_bytes(file.bytes()).expect("load");
            assert_eq!(model.config().vocab_size, 29);
            assert_eq!(model.tokenizer().len(), 29);
            assert!(model.encodings().all(|(_, e)| e == enc));
            let untied = usize::from(!config.tied_embeddings);
            assert_eq!(model.encodings().count(), 2 + 4 * 2 + untied);
            let ls = logits_all(&model, &[1, 5, 9, 2]);
            assert!(ls.iter().flatten().all(|v| v.is_finite()));
            assert_ne!(ls[0], ls[1]);
        }
    }
}

#[test]
fn encodings_agree_with_f32() {
    let tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    let reference = small(SMALL, Encoding::F32);
    let reference = logits_all(
        &Model::from_bytes(reference.bytes()).expect("load"),
        &tokens,
    );
    let scale = reference.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    for (enc, tol) in [
        (Encoding::F16, 0.01),
        (Encoding::Q8_0, 0.05),
        (Encoding::Q4_0, 0.5),
    ] {
        let file = small(SMALL, enc);
        let got = logits_all(&Model::from_bytes(file.bytes()).expect("load"), &tokens);
        let err = got
            .iter()
            .flatten()
            .zip(reference.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err <= tol * scale, "{enc:?}: {err} vs scale {scale}");
        assert!(err > 0.0, "{enc:?} should differ from f32 at all");
    }
}

#[test]
fn session_bytes_is_exact_at_any_alignment() {
    let file = small(SMALL, Encoding::F32);
    let model = Model::from_bytes(file.bytes()).expect("load");
    let need = model.session_bytes();
    let mut mem = vec![0u8; need + 8];
    for skew in 0..4 {
        assert!(
            model.session(&mut mem[skew..skew + need]).is_ok(),
            "skew {skew}"
        );
        let e = model
            .session(&mut mem[skew..skew + need - 1])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e,
            Error::SessionTooSmall {
                needed: need,
                got: need - 1
            }
        );
    }
    // The documented layout: 3 + 4 (11C + T + 2V + 4C / 32) + 4 (V + T)
    // + 2 (L * 2 * T * C) + 4C.
    let (c, t, v, l) = (32, 8, 29, 2);
    assert_eq!(
        need,
        3 + 4 * (11 * c + t + 2 * v + 4 * c / 32) + 4 * (v + t) + 2 * (l * 2 * t * c) + 4 * c
    );
    assert_eq!(model.kv_bytes(), 2 * (l * 2 * t * c));
}

#[test]
fn metadata_and_tensor_table() {
    let file = small(SMALL, Encoding::Q8_0);
    let model = Model::from_bytes(file.bytes()).expect("load");
    assert_eq!(model.header().metadata("folio.format"), Some("2"));
    assert_eq!(model.header().metadata("folio.n_layer"), Some("2"));
    assert_eq!(model.header().metadata("folio.train"), None);
    let vocab: String =
        folio_runtime::unescape(model.header().metadata("folio.vocab").expect("vocab")).collect();
    assert_eq!(vocab, model.tokenizer().chars().iter().collect::<String>());
    assert!(vocab.starts_with(" eta"), "{vocab:?}");
    // Matrices and their scales, 1-D tensors.
    assert_eq!(model.header().tensor_count, (2 + 4 * 2) * 2 + 8 * 2 + 2);
    let total: u64 = model.header().tensors().map(|t| t.bytes()).sum();
    assert_eq!(total as usize, model.weight_bytes());
    let used = model
        .header()
        .tensors()
        .filter(|t| model.tensor_id(t).is_some())
        .count();
    assert_eq!(used, model.header().tensor_count);
}

/// 16/128/4/2: wide enough that every matrix spans several of `matmul`'s row tiles.
const WIDE: Config = Config::new(16, 128, 4, 2).vocab(29);

#[test]
fn prefill_has_the_bits_of_token_by_token_forward() {
    let tokens: Vec<u32> = (0..13).map(|i| (i * 7 + 3) % 29).collect();
    for enc in Encoding::ALL {
        let file = small(WIDE, enc);
        let model = Model::from_bytes(file.bytes()).expect("load");
        let one_by_one = logits_all(&model, &tokens);
        for chunk in [2, 3, 32] {
            let mut mem = vec![0u8; model.session_bytes_for(chunk).expect("size")];
            let mut s = model.session(&mut mem).expect("session");
            // A whole prompt, then a prompt continued at a later position.
            let got = s.prefill(&tokens, 0).expect("prefill").to_vec();
            assert_eq!(bits(&got), bits(&one_by_one[12]), "{enc:?} chunk {chunk}");
            let got = s.prefill(&tokens[5..], 5).expect("prefill at 5").to_vec();
            assert_eq!(
                bits(&got),
                bits(&one_by_one[12]),
                "{enc:?} chunk {chunk} at 5"
            );
            // The KV cache it left is the same: the next token sees the same context.
            let next = s.forward(4, 13).expect("forward").to_vec();
            let mut all = tokens.clone();
            all.push(4);
            assert_eq!(bits(&next), bits(&logits_all(&model, &all)[13]), "{enc:?}");
        }
    }
}

#[test]
fn prefill_checks_its_range_first() {
    let file = small(WIDE, Encoding::Q8_0);
    let model = Model::from_bytes(file.bytes()).expect("load");
    let mut mem = vec![0u8; model.session_bytes_for(4).expect("size")];
    let mut s = model.session(&mut mem).expect("session");
    assert_eq!(s.prefill(&[], 0).unwrap_err(), Error::EmptyPrompt);
    let err = s.prefill(&[1; 5], 12).unwrap_err();
    assert_eq!(
        err,
        Error::PositionOutOfRange {
            pos: 16,
            block_size: 16
        }
    );
    let err = s.prefill(&[1, 29], 0).unwrap_err();
    assert_eq!(
        err,
        Error::TokenOutOfRange {
            token: 29,
            vocab_size: 29
        }
    );
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
