//! Loader attack tests: one malformed-file class per test, each asserting the specific
//! `folio_runtime::Error` variant; a cross-check against the `safetensors` crate (same
//! tensors on valid files, same verdict on safetensors-level breakages); and a seeded
//! mutation test (random byte edits and truncations never panic).
use folio_runtime::{ConfigField, Dtype as RtDtype, Error, MetaKey, Model, TensorId, TensorKind};
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::handwritten::{self, edit_header, raw_file, split, Layout};
use folio_tests::rng::Rng;
use folio_tests::AlignedBytes;
use safetensors::SafeTensors;
use serde_json::{json, Value};

/// 8/32/4/1, vocab 11, tied.
const SMALL: Config = Config::TINY[0];

fn file(plan: Plan) -> Vec<u8> {
    FixtureSpec::new(SMALL, plan, 1).to_bytes()
}

fn f32_file() -> Vec<u8> {
    file(Plan::All(Encoding::F32))
}

fn q8_file() -> Vec<u8> {
    file(Plan::All(Encoding::Q8_0))
}

/// Load from an aligned copy.
fn load(bytes: &[u8]) -> Result<(), Error> {
    let a = AlignedBytes::new(bytes);
    Model::from_bytes(a.bytes()).map(|_| ())
}

fn err(bytes: &[u8]) -> Error {
    load(bytes).expect_err("the loader accepted a malformed file")
}

fn st_accepts(bytes: &[u8]) -> bool {
    SafeTensors::deserialize(bytes).is_ok()
}

fn id(kind: TensorKind, layer: u8) -> TensorId {
    TensorId {
        kind,
        layer,
        scale: false,
    }
}

fn scale_id(kind: TensorKind, layer: u8) -> TensorId {
    TensorId {
        kind,
        layer,
        scale: true,
    }
}

/// Edit one `__metadata__` value.
fn edit_meta(bytes: &[u8], key: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    edit_header(bytes, |h| f(&mut h["__metadata__"][key]))
}

/// Edit a field of `folio.config` (a JSON object inside a JSON string).
fn edit_config(bytes: &[u8], f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    edit_meta(bytes, "folio.config", |v| {
        let mut cfg: Value =
            serde_json::from_str(v.as_str().expect("string")).expect("config json");
        f(cfg.as_object_mut().expect("object"));
        *v = Value::String(cfg.to_string());
    })
}

/// Replace the vocabulary list.
fn with_vocab(bytes: &[u8], vocab: &[&str]) -> Vec<u8> {
    edit_meta(bytes, "folio.vocab", |v| {
        *v = Value::String(serde_json::to_string(vocab).expect("json"))
    })
}

fn vocab_strings() -> Vec<String> {
    folio_tests::fixture::vocab_for(SMALL.vocab_size)
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn valid_fixtures_load() {
    for plan in Plan::ALL {
        let b = file(plan);
        load(&b).unwrap_or_else(|e| panic!("{}: {e}", plan.label()));
        for (label, layout) in Layout::variants() {
            let fx = FixtureSpec::new(SMALL, plan, 1).build();
            load(&handwritten::write(&fx, &layout))
                .unwrap_or_else(|e| panic!("{} {label}: {e}", plan.label()));
        }
    }
}

// ---- safetensors-level structure --------------------------------------------------------

#[test]
fn truncated_length_prefix() {
    for n in 0..8 {
        let b = &f32_file()[..n];
        assert_eq!(err(b), Error::TooShort { len: n });
        assert!(!st_accepts(b));
    }
}

#[test]
fn huge_header_length() {
    let good = f32_file();
    for n in [u64::MAX, 1 << 40, good.len() as u64] {
        let mut b = good.clone();
        b[..8].copy_from_slice(&n.to_le_bytes());
        assert_eq!(
            err(&b),
            Error::HeaderTooLong {
                header_len: n,
                file_len: good.len()
            },
            "{n}"
        );
        assert!(!st_accepts(&b));
    }
}

#[test]
fn file_cut_inside_the_header() {
    let good = f32_file();
    let n = u64::from_le_bytes(good[..8].try_into().expect("8")) as usize;
    for cut in [9, 8 + n / 2, 8 + n - 1] {
        let b = &good[..cut];
        assert!(
            matches!(err(b), Error::HeaderTooLong { .. }),
            "cut at {cut}: {:?}",
            err(b)
        );
        assert!(!st_accepts(b));
    }
}

#[test]
fn header_not_utf8() {
    // A name with the byte 0xFF inside an otherwise valid header.
    let mut b = raw_file(
        "{\"aZ\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        &[0],
    );
    let i = b.iter().position(|&c| c == b'Z').expect("marker");
    b[i] = 0xFF;
    assert_eq!(err(&b), Error::HeaderNotUtf8);
    assert!(!st_accepts(&b));
}

#[test]
fn bad_json() {
    let cases: &[&str] = &[
        "",
        "{",
        "[]",
        "{\"a\":}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} x",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"__metadata__\":{\"k\":1}}",
        "{\"a\\q\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]} \"b\":{}}",
    ];
    for h in cases {
        let b = raw_file(h, &[0]);
        assert!(
            matches!(err(&b), Error::BadJson { .. }),
            "{h:?}: {:?}",
            err(&b)
        );
        assert!(!st_accepts(&b), "safetensors accepts {h:?}");
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{{\"x\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let b = raw_file(&deep, &[]);
    assert!(matches!(err(&b), Error::BadJson { .. }), "{:?}", err(&b));
    assert!(!st_accepts(&b));
}

#[test]
fn unknown_dtype() {
    let b = edit_header(&f32_file(), |h| h["ln_f.bias"]["dtype"] = json!("F99"));
    assert!(
        matches!(err(&b), Error::UnknownDtype { .. }),
        "{:?}",
        err(&b)
    );
    assert!(!st_accepts(&b));
}

#[test]
fn offsets_out_of_range() {
    let good = f32_file();
    let (_, data) = split(&good);
    let n = data.len() as u64;
    let tensor = id(TensorKind::LnFBias, 0);
    for offs in [
        json!([n - 4, n + 124]),
        json!([n + 8, n + 136]),
        json!([100, 99]),
        json!([u64::MAX - 3, u64::MAX]),
    ] {
        let b = edit_header(&good, |h| h["ln_f.bias"]["data_offsets"] = offs.clone());
        assert_eq!(err(&b), Error::OffsetsOutOfRange { tensor }, "{offs}");
        assert!(!st_accepts(&b), "{offs}");
    }
}

#[test]
fn offsets_length_mismatch() {
    let good = f32_file();
    // ln_f.bias is F32 [32] = 128 bytes; claim a shape of 31 or 33 elements.
    for shape in [json!([31]), json!([33]), json!([4, 8, 2])] {
        let b = edit_header(&good, |h| h["ln_f.bias"]["shape"] = shape.clone());
        assert_eq!(
            err(&b),
            Error::OffsetsLength {
                tensor: id(TensorKind::LnFBias, 0)
            },
            "{shape}"
        );
        assert!(!st_accepts(&b));
    }
    // Element count overflowing u64.
    let b = edit_header(&good, |h| {
        h["ln_f.bias"]["shape"] = json!([1u64 << 40, 1u64 << 40])
    });
    assert_eq!(
        err(&b),
        Error::OffsetsLength {
            tensor: id(TensorKind::LnFBias, 0)
        }
    );
    assert!(!st_accepts(&b));
}

#[test]
fn overlapping_offsets() {
    let good = f32_file();
    let (h, _) = split(&good);
    let wpe = h["wpe.weight"]["data_offsets"].clone();
    // ln_f.bias (128 bytes) moved onto the first 128 bytes of wpe.weight.
    let b0 = wpe[0].as_u64().expect("u64");
    let b = edit_header(&good, |h| {
        h["ln_f.bias"]["data_offsets"] = json!([b0, b0 + 128])
    });
    match err(&b) {
        Error::OffsetsOverlap { a, b } => {
            let mut pair = [a, b];
            pair.sort_by_key(|t| t.kind as u8);
            assert_eq!(pair, [id(TensorKind::Wpe, 0), id(TensorKind::LnFBias, 0)]);
        }
        e => panic!("expected OffsetsOverlap, got {e:?}"),
    }
    assert!(!st_accepts(&b));
    // An unknown tensor overlapping a used one is just as wrong.
    let b =
        edit_header(
            &good,
            |h| {
                h["zz.extra"] =
                    json!({"dtype": "U8", "shape": [2], "data_offsets": [b0 + 1, b0 + 3]})
            },
        );
    assert!(
        matches!(err(&b), Error::OffsetsOverlap { .. }),
        "{:?}",
        err(&b)
    );
    assert!(!st_accepts(&b));
}

#[test]
fn too_many_tensors() {
    let mut entries: Vec<String> = (0..513)
        .map(|i| {
            format!(
                "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[{i},{}]}}",
                i + 1
            )
        })
        .collect();
    entries.push("\"__metadata__\":{\"folio.format\":\"1\"}".into());
    let b = raw_file(&format!("{{{}}}", entries.join(",")), &[7u8; 513]);
    assert_eq!(err(&b), Error::TooManyTensors { max: 512 });
    assert!(
        st_accepts(&b),
        "a safetensors-valid file; the limit is folio's own"
    );
}

// ---- alignment ---------------------------------------------------------------------------

#[test]
fn misaligned_tensor() {
    // Put a 2-byte unknown tensor first and shift every other tensor by 2 bytes: F16 stays
    // aligned, F32 does not.
    let fx = FixtureSpec::new(SMALL, Plan::All(Encoding::F32), 1).build();
    let good = fx.to_safetensors();
    let (mut h, data) = split(&good);
    for (_, t) in h.as_object_mut().expect("obj").iter_mut() {
        if let Some(o) = t.get_mut("data_offsets") {
            let (a, b) = (o[0].as_u64().expect("a"), o[1].as_u64().expect("b"));
            *o = json!([a + 2, b + 2]);
        }
    }
    h["aa.pad"] = json!({"dtype": "U8", "shape": [2], "data_offsets": [0, 2]});
    let mut d = vec![0u8, 0];
    d.extend_from_slice(&data);
    let b = handwritten::join(&h, &d);
    assert!(matches!(err(&b), Error::Misaligned { .. }), "{:?}", err(&b));
    assert!(
        st_accepts(&b),
        "safetensors has no alignment rule; folio does (FORMAT.md)"
    );
}

#[test]
fn misaligned_buffer_address() {
    let good = f32_file();
    for off in 1..4 {
        let a = AlignedBytes::with_offset(&good, off);
        assert_eq!(
            Model::from_bytes(a.bytes()).map(|_| ()),
            Err(Error::BufferMisaligned),
            "offset {off}"
        );
    }
    let a = AlignedBytes::with_offset(&good, 4);
    assert!(
        Model::from_bytes(a.bytes()).is_ok(),
        "4-byte aligned is enough"
    );
}

#[test]
fn data_buffer_at_2_mod_4_breaks_alignment() {
    // Header padded so the data buffer starts 2 bytes past a 4-byte boundary.
    let good = f32_file();
    let (h, data) = split(&good);
    let mut text = h.to_string();
    while (8 + text.len()) % 4 != 2 {
        text.push(' ');
    }
    let mut b = (text.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(text.as_bytes());
    b.extend_from_slice(&data);
    assert_eq!(err(&b), Error::BufferMisaligned);
    assert!(st_accepts(&b));
}

#[test]
fn session_memory_any_alignment_and_exact_size() {
    let good = AlignedBytes::new(&q8_file());
    let model = Model::from_bytes(good.bytes()).expect("valid");
    let n = model.session_bytes();
    let mut mem = vec![0u8; n + 8];
    for off in 0..4 {
        let mut s = model
            .session(&mut mem[off..off + n])
            .unwrap_or_else(|e| panic!("offset {off}: {e}"));
        s.forward(1, 0).expect("forward");
    }
    let mut short = vec![0u8; n - 1];
    assert_eq!(
        model.session(&mut short).map(|_| ()).unwrap_err(),
        Error::SessionTooSmall {
            needed: n,
            got: n - 1
        }
    );
}

// ---- metadata -----------------------------------------------------------------------------

#[test]
fn missing_metadata() {
    let good = f32_file();
    let b = edit_header(&good, |h| {
        h.as_object_mut().expect("obj").remove("__metadata__");
    });
    assert_eq!(
        err(&b),
        Error::MissingMetadata {
            key: MetaKey::Format
        }
    );
    for (key, mk) in [
        ("folio.format", MetaKey::Format),
        ("folio.config", MetaKey::Config),
        ("folio.vocab", MetaKey::Vocab),
    ] {
        let b = edit_header(&good, |h| {
            h["__metadata__"].as_object_mut().expect("obj").remove(key);
        });
        assert_eq!(err(&b), Error::MissingMetadata { key: mk }, "{key}");
        // Misnamed: the right value under a near-miss key.
        let b = edit_header(&good, |h| {
            let m = h["__metadata__"].as_object_mut().expect("obj");
            let v = m.remove(key).expect("present");
            m.insert(format!("{key}s"), v.clone());
            m.insert(key.to_uppercase(), v);
        });
        assert_eq!(
            err(&b),
            Error::MissingMetadata { key: mk },
            "{key} misnamed"
        );
    }
    // folio.dtype is optional.
    let b = edit_header(&good, |h| {
        h["__metadata__"]
            .as_object_mut()
            .expect("obj")
            .remove("folio.dtype");
    });
    load(&b).expect("folio.dtype is informational");
}

#[test]
fn metadata_values_must_be_strings() {
    let b = edit_meta(&f32_file(), "folio.format", |v| *v = json!(1));
    assert!(matches!(err(&b), Error::BadJson { .. }), "{:?}", err(&b));
    assert!(!st_accepts(&b));
}

#[test]
fn duplicate_names() {
    let good = f32_file();
    let (h, data) = split(&good);
    let text = h.to_string();
    // Repeat the ln_f.bias entry (same offsets) verbatim: a duplicate key.
    let entry = format!("\"ln_f.bias\":{}", h["ln_f.bias"]);
    let dup = text.replacen('{', &format!("{{{entry},"), 1);
    let b = raw_file(&dup, &data);
    // The second copy overlaps the first as well; either way the file is rejected with a
    // structural error naming the problem.
    assert!(
        matches!(
            err(&b),
            Error::DuplicateName { .. } | Error::OffsetsOverlap { .. }
        ),
        "{:?}",
        err(&b)
    );
    // A second ln_f.bias with its own, non-overlapping bytes: only the name clashes.
    let n = data.len();
    let entry2 = format!(
        "\"ln_f.bias\":{{\"dtype\":\"F32\",\"shape\":[32],\"data_offsets\":[{n},{}]}}",
        n + 128
    );
    let mut data2 = data.clone();
    data2.extend_from_slice(&[0u8; 128]);
    let b = raw_file(&text.replacen('{', &format!("{{{entry2},"), 1), &data2);
    assert!(
        matches!(err(&b), Error::DuplicateName { .. }),
        "{:?}",
        err(&b)
    );
    // Two __metadata__ objects.
    let meta = format!("\"__metadata__\":{}", h["__metadata__"]);
    let b = raw_file(&text.replacen('{', &format!("{{{meta},"), 1), &data);
    assert!(
        matches!(err(&b), Error::DuplicateName { .. }),
        "{:?}",
        err(&b)
    );
}

#[test]
fn bad_format_version() {
    for v in ["2", "", "1.0", " 1", "v1"] {
        let b = edit_meta(&f32_file(), "folio.format", |x| *x = json!(v));
        assert_eq!(err(&b), Error::UnsupportedFormat, "{v:?}");
    }
    // An escaped "1" is still "1".
    let good = f32_file();
    let (h, data) = split(&good);
    let text = h
        .to_string()
        .replace("\"folio.format\":\"1\"", "\"folio.format\":\"\\u0031\"");
    load(&raw_file(&text, &data)).expect("\\u0031 is \"1\"");
}

#[test]
fn config_not_json() {
    for v in [
        "",
        "{",
        "{\"vocab_size\": 11",
        "[1,2]x",
        "{\"vocab_size\" 11}",
    ] {
        let b = edit_meta(&f32_file(), "folio.config", |x| *x = json!(v));
        assert!(
            matches!(
                err(&b),
                Error::BadMetadataJson {
                    key: MetaKey::Config,
                    ..
                }
            ),
            "{v:?}: {:?}",
            err(&b)
        );
    }
}

#[test]
fn bad_config_fields() {
    let good = f32_file();
    let sizes = [
        ("vocab_size", ConfigField::VocabSize),
        ("block_size", ConfigField::BlockSize),
        ("n_embd", ConfigField::NEmbd),
        ("n_head", ConfigField::NHead),
        ("n_layer", ConfigField::NLayer),
    ];
    for (key, field) in sizes {
        for bad in [
            json!(0),
            json!(-4),
            json!(4.5),
            json!("8"),
            json!(null),
            json!(true),
        ] {
            let b = edit_config(&good, |c| {
                c.insert(key.into(), bad.clone());
            });
            assert_eq!(err(&b), Error::BadConfig { field }, "{key} = {bad}");
        }
        let b = edit_config(&good, |c| {
            c.remove(key);
        });
        assert_eq!(err(&b), Error::BadConfig { field }, "{key} missing");
    }
    for bad in [json!(-1e-5), json!("1e-5"), json!(null)] {
        let b = edit_config(&good, |c| {
            c.insert("layer_norm_eps".into(), bad.clone());
        });
        assert_eq!(
            err(&b),
            Error::BadConfig {
                field: ConfigField::LayerNormEps
            },
            "eps = {bad}"
        );
    }
    let b = edit_config(&good, |c| {
        c.remove("layer_norm_eps");
    });
    assert_eq!(
        err(&b),
        Error::BadConfig {
            field: ConfigField::LayerNormEps
        }
    );
    for bad in [json!("yes"), json!(1), json!(null)] {
        let b = edit_config(&good, |c| {
            c.insert("tied_embeddings".into(), bad.clone());
        });
        assert_eq!(
            err(&b),
            Error::BadConfig {
                field: ConfigField::TiedEmbeddings
            },
            "tied = {bad}"
        );
    }
    for bad in [json!(1), json!(null)] {
        let b = edit_config(&good, |c| {
            c.insert("activation".into(), bad.clone());
        });
        assert_eq!(
            err(&b),
            Error::BadConfig {
                field: ConfigField::Activation
            },
            "activation = {bad}"
        );
    }
    for bad in ["gelu", "relu", "GELU_TANH", ""] {
        let b = edit_config(&good, |c| {
            c.insert("activation".into(), json!(bad));
        });
        assert_eq!(err(&b), Error::BadActivation, "activation = {bad:?}");
    }
    // Unknown fields are ignored.
    let b = edit_config(&good, |c| {
        c.insert("dropout".into(), json!(0.1));
        c.insert("notes".into(), json!({"a": [1, 2, {"b": null}]}));
    });
    load(&b).expect("unknown config fields are ignored");
}

#[test]
fn config_does_not_divide() {
    let b = edit_config(&f32_file(), |c| {
        c.insert("n_head".into(), json!(5));
    });
    assert_eq!(
        err(&b),
        Error::HeadsDoNotDivide {
            n_embd: 32,
            n_head: 5
        }
    );
}

#[test]
fn config_too_large() {
    let good = f32_file();
    let b = edit_config(&good, |c| {
        c.insert("n_layer".into(), json!(17));
    });
    assert_eq!(
        err(&b),
        Error::ConfigTooLarge {
            field: ConfigField::NLayer,
            max: 16
        }
    );
    let b = edit_config(&good, |c| {
        c.insert("vocab_size".into(), json!(257));
    });
    assert_eq!(
        err(&b),
        Error::ConfigTooLarge {
            field: ConfigField::VocabSize,
            max: 256
        }
    );
    let b = edit_config(&good, |c| {
        c.insert("block_size".into(), json!(1u64 << 33));
    });
    assert_eq!(
        err(&b),
        Error::ConfigTooLarge {
            field: ConfigField::BlockSize,
            max: u32::MAX
        }
    );
}

#[test]
fn quantised_matrix_with_bad_column_count() {
    // n_embd 24: wte stored as I8 [V, 24] with a [V, 1] scale.
    let fx = FixtureSpec::new(Config::ODD, Plan::All(Encoding::F32), 1).build();
    let good = fx.to_safetensors();
    let (mut h, mut data) = split(&good);
    let v = Config::ODD.vocab_size;
    let start = data.len();
    data.extend(std::iter::repeat_n(1u8, v * 24));
    data.extend(std::iter::repeat_n(0u8, v * 2));
    h["wte.weight"] =
        json!({"dtype": "I8", "shape": [v, 24], "data_offsets": [start, start + v * 24]});
    h["wte.weight_scale"] =
        json!({"dtype": "F16", "shape": [v, 1], "data_offsets": [start + v * 24, start + v * 26]});
    let b = handwritten::join(&h, &data);
    assert_eq!(
        err(&b),
        Error::QuantCols {
            tensor: id(TensorKind::Wte, 0),
            cols: 24
        }
    );
}

// ---- vocabulary ---------------------------------------------------------------------------

#[test]
fn vocab_errors() {
    let good = f32_file();
    let v = vocab_strings();
    let refs: Vec<&str> = v.iter().map(String::as_str).collect();
    let b = with_vocab(&good, &refs[..10]);
    assert_eq!(
        err(&b),
        Error::VocabLength {
            expected: 11,
            found: 10
        }
    );
    let mut more = refs.clone();
    more.push("Z");
    assert_eq!(
        err(&with_vocab(&good, &more)),
        Error::VocabLength {
            expected: 11,
            found: 12
        }
    );
    let mut two = refs.clone();
    two[3] = "ab";
    assert_eq!(
        err(&with_vocab(&good, &two)),
        Error::BadVocabEntry { index: 3 }
    );
    let mut empty = refs.clone();
    empty[5] = "";
    assert_eq!(
        err(&with_vocab(&good, &empty)),
        Error::BadVocabEntry { index: 5 }
    );
    let mut dup = refs.clone();
    dup[7] = refs[2];
    let ch = refs[2].chars().next().expect("char");
    assert_eq!(
        err(&with_vocab(&good, &dup)),
        Error::DuplicateVocab { index: 7, ch }
    );
    let b = edit_meta(&good, "folio.vocab", |x| *x = json!("[\"a\", 1]"));
    assert!(
        matches!(
            err(&b),
            Error::BadVocabEntry { index: 1 } | Error::VocabLength { .. }
        ),
        "{:?}",
        err(&b)
    );
    for bad in ["", "[", "[\"a\"", "{\"a\": 1}", "[\"a\"] x"] {
        let b = edit_meta(&good, "folio.vocab", |x| *x = json!(bad));
        assert!(
            matches!(
                err(&b),
                Error::BadMetadataJson {
                    key: MetaKey::Vocab,
                    ..
                }
            ),
            "{bad:?}: {:?}",
            err(&b)
        );
    }
}

// ---- tensors ------------------------------------------------------------------------------

#[test]
fn missing_tensor() {
    let good = q8_file();
    for (name, tid) in [
        ("h.0.ln_2.bias", id(TensorKind::Ln2Bias, 0)),
        ("wte.weight", id(TensorKind::Wte, 0)),
        ("ln_f.weight", id(TensorKind::LnFWeight, 0)),
    ] {
        // Removed, or renamed to a name folio ignores.
        let b = edit_header(&good, |h| {
            let o = h.as_object_mut().expect("obj");
            let t = o.remove(name).expect("present");
            o.insert(format!("{name}.old"), t);
        });
        let e = err(&b);
        if name == "wte.weight" {
            // Its `_scale` is still there: a scale whose weight is missing.
            assert!(
                matches!(e, Error::ScaleWithoutWeight { tensor } if tensor == tid),
                "{name}: {e:?}"
            );
        } else {
            assert_eq!(e, Error::MissingTensor { tensor: tid }, "{name}");
        }
    }
    // A layer beyond the stored ones.
    let b = edit_config(&good, |c| {
        c.insert("n_layer".into(), json!(2));
    });
    assert!(
        matches!(err(&b), Error::MissingTensor { tensor } if tensor.layer == 1),
        "{:?}",
        err(&b)
    );
    // Untied config without lm_head.weight.
    let b = edit_config(&good, |c| {
        c.insert("tied_embeddings".into(), json!(false));
    });
    assert_eq!(
        err(&b),
        Error::MissingTensor {
            tensor: id(TensorKind::LmHead, 0)
        }
    );
}

#[test]
fn wrong_dtype() {
    let good = f32_file();
    let b = edit_header(&good, |h| h["h.0.ln_1.weight"]["dtype"] = json!("I32"));
    assert_eq!(
        err(&b),
        Error::UnexpectedDtype {
            tensor: id(TensorKind::Ln1Weight, 0),
            dtype: RtDtype::I32
        }
    );
    let b = edit_header(&good, |h| {
        h["h.0.attn.c_proj.weight"]["dtype"] = json!("U32")
    });
    assert_eq!(
        err(&b),
        Error::UnexpectedDtype {
            tensor: id(TensorKind::AttnProjWeight, 0),
            dtype: RtDtype::U32
        }
    );
    let f16 = file(Plan::All(Encoding::F16));
    let b = edit_header(&f16, |h| h["wpe.weight"]["dtype"] = json!("BF16"));
    assert_eq!(
        err(&b),
        Error::UnexpectedDtype {
            tensor: id(TensorKind::Wpe, 0),
            dtype: RtDtype::BF16
        }
    );
    // A q8_0 scale stored as I16 (same size as F16).
    let b = edit_header(&q8_file(), |h| {
        h["h.0.mlp.c_fc.weight_scale"]["dtype"] = json!("I16")
    });
    assert_eq!(
        err(&b),
        Error::UnexpectedDtype {
            tensor: scale_id(TensorKind::FcWeight, 0),
            dtype: RtDtype::I16
        }
    );
    // A 1-D tensor stored as I8 (with a matching byte count).
    let good_h = split(&good).0;
    let o = good_h["ln_f.bias"]["data_offsets"].clone();
    let b = edit_header(&good, |h| {
        h["ln_f.bias"] = json!({"dtype": "I8", "shape": [128], "data_offsets": o})
    });
    assert!(
        matches!(err(&b), Error::UnexpectedDtype { tensor, dtype: RtDtype::I8 } if tensor.kind == TensorKind::LnFBias)
            || matches!(err(&b), Error::WrongShape { .. }),
        "{:?}",
        err(&b)
    );
}

#[test]
fn wrong_shape() {
    let good = f32_file();
    let (v, c) = (SMALL.vocab_size, SMALL.n_embd);
    let cases = [
        ("wte.weight", json!([c, v]), id(TensorKind::Wte, 0)),
        ("ln_f.weight", json!([1, c]), id(TensorKind::LnFWeight, 0)),
        (
            "h.0.attn.c_attn.weight",
            json!([c, 3 * c]),
            id(TensorKind::AttnWeight, 0),
        ),
        (
            "h.0.mlp.c_proj.weight",
            json!([4 * c, c]),
            id(TensorKind::MlpProjWeight, 0),
        ),
        (
            "wpe.weight",
            json!([SMALL.block_size * c]),
            id(TensorKind::Wpe, 0),
        ),
    ];
    for (name, shape, tid) in cases {
        let b = edit_header(&good, |h| h[name]["shape"] = shape.clone());
        assert_eq!(err(&b), Error::WrongShape { tensor: tid }, "{name} {shape}");
    }
    // A q8_0 scale of the wrong shape (same byte count).
    let q8 = q8_file();
    let b = edit_header(&q8, |h| {
        h["h.0.attn.c_proj.weight_scale"]["shape"] = json!([1, c])
    });
    assert_eq!(
        err(&b),
        Error::WrongShape {
            tensor: scale_id(TensorKind::AttnProjWeight, 0)
        }
    );
}

#[test]
fn scale_without_weight_and_weight_without_scale() {
    // An F32 matrix with a stray `_scale`.
    let good = f32_file();
    let (mut h, mut data) = split(&good);
    let start = data.len();
    data.extend(std::iter::repeat_n(0u8, SMALL.n_embd * 2));
    h["h.0.attn.c_proj.weight_scale"] = json!({"dtype": "F16", "shape": [SMALL.n_embd, 1], "data_offsets": [start, start + SMALL.n_embd * 2]});
    let b = handwritten::join(&h, &data);
    assert_eq!(
        err(&b),
        Error::ScaleWithoutWeight {
            tensor: id(TensorKind::AttnProjWeight, 0)
        }
    );
    // A q8_0 weight whose scale was dropped.
    let b = edit_header(&q8_file(), |h| {
        h.as_object_mut()
            .expect("obj")
            .remove("h.0.mlp.c_fc.weight_scale");
    });
    assert_eq!(
        err(&b),
        Error::WeightWithoutScale {
            tensor: id(TensorKind::FcWeight, 0)
        }
    );
    // q4_0 too.
    let b = edit_header(&file(Plan::All(Encoding::Q4_0)), |h| {
        h.as_object_mut().expect("obj").remove("wpe.weight_scale");
    });
    assert_eq!(
        err(&b),
        Error::WeightWithoutScale {
            tensor: id(TensorKind::Wpe, 0)
        }
    );
}

// ---- runtime argument errors --------------------------------------------------------------

#[test]
fn token_position_and_text_errors() {
    let a = AlignedBytes::new(&q8_file());
    let model = Model::from_bytes(a.bytes()).expect("valid");
    let mut mem = vec![0u8; model.session_bytes()];
    let mut s = model.session(&mut mem).expect("session");
    assert_eq!(
        s.forward(11, 0).map(|_| ()).unwrap_err(),
        Error::TokenOutOfRange {
            token: 11,
            vocab_size: 11
        }
    );
    assert_eq!(
        s.forward(0, 8).map(|_| ()).unwrap_err(),
        Error::PositionOutOfRange {
            pos: 8,
            block_size: 8
        }
    );
    let mut out = [0u32; 16];
    assert_eq!(
        model.tokenizer().encode("tea!", &mut out),
        Err(Error::UnknownChar { ch: '!', pos: 3 })
    );
    let mut short = [0u32; 2];
    assert!(matches!(
        model.tokenizer().encode("tea", &mut short),
        Err(Error::BufferTooSmall { .. })
    ));
    assert_eq!(model.tokenizer().encode("tea", &mut out), Ok(3));
    assert!(model.tokenizer().decode(11).is_err());
}

// ---- cross-check with the safetensors crate -------------------------------------------------

/// On valid files from both writers, folio lists the same tensors (name, dtype, shape,
/// offsets) as the safetensors crate.
#[test]
fn same_tensors_as_safetensors_crate() {
    for plan in Plan::ALL {
        let fx = FixtureSpec::new(Config::TINY[1], plan, 2).build();
        let mut files = vec![("safetensors writer", fx.to_safetensors())];
        for (label, layout) in Layout::variants() {
            files.push((label, handwritten::write(&fx, &layout)));
        }
        for (label, bytes) in files {
            let a = AlignedBytes::new(&bytes);
            let model = Model::from_bytes(a.bytes()).unwrap_or_else(|e| panic!("{label}: {e}"));
            let (_, meta) = SafeTensors::read_metadata(&bytes).expect("safetensors reads it");
            let want = meta.tensors();
            let mut seen = 0;
            for t in model.tensors() {
                let name: String = t.name().collect();
                let info = want
                    .get(&name)
                    .unwrap_or_else(|| panic!("{label}: folio lists {name}, safetensors does not"));
                assert_eq!(
                    t.dtype.as_str(),
                    format!("{:?}", info.dtype),
                    "{label}: {name}"
                );
                let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
                assert_eq!(t.shape(), &shape[..], "{label}: {name}");
                assert_eq!(
                    (t.begin, t.end),
                    (info.data_offsets.0 as u64, info.data_offsets.1 as u64),
                    "{label}: {name}"
                );
                seen += 1;
            }
            assert_eq!(seen, want.len(), "{label}");
            assert_eq!(model.tensor_count(), want.len(), "{label}");
            // The metadata values decode to what safetensors reads.
            let m = meta.metadata().as_ref().expect("metadata");
            for key in ["folio.format", "folio.config", "folio.vocab", "folio.dtype"] {
                let raw = model
                    .metadata(key)
                    .unwrap_or_else(|| panic!("{label}: {key}"));
                let decoded: String = folio_runtime::unescape(raw).collect();
                assert_eq!(&decoded, &m[key], "{label}: {key}");
            }
        }
    }
}

/// The structural breakages safetensors defines are rejected by both; the two rules that
/// differ by design are checked as such (folio accepts gaps and trailing bytes, which
/// FORMAT.md does not forbid; safetensors requires contiguous, fully covering offsets).
#[test]
fn same_verdict_as_safetensors_on_structural_breakage() {
    let good = f32_file();
    let (h, data) = split(&good);
    let n = good.len();
    let lnf = h["ln_f.bias"]["data_offsets"].clone();
    let (b0, e0) = (lnf[0].as_u64().expect("b"), lnf[1].as_u64().expect("e"));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("length prefix only", good[..8].to_vec()),
        ("header cut", good[..n / 4].to_vec()),
        ("data cut", good[..n - 1].to_vec()),
        (
            "huge header length",
            [&u64::MAX.to_le_bytes()[..], &good[8..]].concat(),
        ),
        ("not json", raw_file("{{{", &data)),
        ("not an object", raw_file("[1]", &data)),
        (
            "bad dtype",
            edit_header(&good, |h| h["ln_f.bias"]["dtype"] = json!("Q8")),
        ),
        (
            "end past data",
            edit_header(&good, |h| {
                h["ln_f.bias"]["data_offsets"] = json!([b0, e0 + 4])
            }),
        ),
        (
            "begin after end",
            edit_header(&good, |h| h["ln_f.bias"]["data_offsets"] = json!([e0, b0])),
        ),
        (
            "shape too small",
            edit_header(&good, |h| h["ln_f.bias"]["shape"] = json!([1])),
        ),
        (
            "shape overflow",
            edit_header(&good, |h| h["ln_f.bias"]["shape"] = json!([u64::MAX, 2])),
        ),
        (
            "overlap",
            edit_header(&good, |h| h["ln_f.bias"]["data_offsets"] = json!([0, 128])),
        ),
        (
            "metadata not strings",
            edit_meta(&good, "folio.vocab", |v| *v = json!(["a"])),
        ),
    ];
    let mut utf8 = good.clone();
    let i = utf8
        .windows(9)
        .position(|w| w == b"ln_f.bias")
        .expect("name");
    utf8[i] = 0xC0;
    cases.push(("not utf-8", utf8));
    for (label, b) in &cases {
        assert!(!st_accepts(b), "{label}: safetensors accepts");
        assert!(load(b).is_err(), "{label}: folio accepts");
    }
    // Valid for both.
    assert!(st_accepts(&good) && load(&good).is_ok());
    // Differences by design.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert!(!st_accepts(&trailing));
    load(&trailing).expect("trailing bytes after the last tensor are not a folio error");
    let with_gap = {
        let (mut h, mut d) = split(&good);
        let s = d.len();
        d.extend_from_slice(&[0u8; 16]);
        h["zz.after_gap"] = json!({"dtype": "U8", "shape": [8], "data_offsets": [s + 8, s + 16]});
        handwritten::join(&h, &d)
    };
    assert!(!st_accepts(&with_gap));
    load(&with_gap).expect("a gap between tensors is not a folio error");
}

// ---- mutations ------------------------------------------------------------------------------

/// One random edit of `b`.
fn mutate(b: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    let n = u64::from_le_bytes(b[..8].try_into().expect("8")) as usize;
    // The header span (or, once the length prefix is broken, the rest of the file).
    let end = 8usize.saturating_add(n).min(b.len());
    let header = if end > 8 { 8..end } else { 8..b.len() };
    let in_header = |rng: &mut Rng| header.start + rng.below(header.len().max(1));
    match rng.below(9) {
        0 => {
            let i = rng.below(b.len());
            b[i] ^= 1 << rng.below(8);
            "bit flip anywhere"
        }
        1 | 2 => {
            let i = in_header(rng);
            b[i] = rng.next_u64() as u8;
            "random header byte"
        }
        3 => {
            // Change a digit: offsets, shapes, config numbers.
            let digits: Vec<usize> = header.clone().filter(|&i| b[i].is_ascii_digit()).collect();
            if !digits.is_empty() {
                let i = digits[rng.below(digits.len())];
                b[i] = b'0' + rng.below(10) as u8;
            }
            "header digit"
        }
        4 => {
            let cut = rng.below(b.len());
            b.truncate(cut);
            "truncation"
        }
        5 => {
            let i = in_header(rng);
            b.remove(i);
            if rng.below(2) == 0 {
                b[..8].copy_from_slice(&(n as u64).wrapping_sub(1).to_le_bytes());
            }
            "header byte deleted"
        }
        6 => {
            let i = in_header(rng);
            let c = [
                b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'-', b'e', b'9', 0xFF, 0x80,
            ][rng.below(13)];
            b.insert(i, c);
            if rng.below(2) == 0 {
                b[..8].copy_from_slice(&(n as u64).wrapping_add(1).to_le_bytes());
            }
            "header byte inserted"
        }
        7 => {
            let v = match rng.below(3) {
                0 => rng.next_u64(),
                1 => (n as u64)
                    .wrapping_add(rng.below(16) as u64)
                    .wrapping_sub(8),
                _ => rng.below(b.len() + 8) as u64,
            };
            b[..8].copy_from_slice(&v.to_le_bytes());
            "length prefix"
        }
        _ => {
            // Copy a header span over another (duplicates keys, breaks nesting).
            let (i, j) = (in_header(rng), in_header(rng));
            let len = rng.below(24).min(b.len() - i.max(j));
            let span = b[i..i + len].to_vec();
            b[j..j + len].copy_from_slice(&span);
            "header span copied"
        }
    }
}

fn mutation_run(base: &[u8], seed: u64, count: usize) -> (usize, usize) {
    let mut rng = Rng::new(seed);
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..count {
        let mut b = base.to_vec();
        let mut kinds = Vec::new();
        for _ in 0..1 + rng.below(3) {
            if b.len() > 8 {
                kinds.push(mutate(&mut b, &mut rng));
            }
        }
        let res = std::panic::catch_unwind(|| {
            let a = AlignedBytes::new(&b);
            let loaded = Model::from_bytes(a.bytes());
            let ok = match loaded {
                Ok(model) => {
                    let mut mem = vec![0u8; model.session_bytes()];
                    let mut s = model
                        .session(&mut mem)
                        .expect("session of an accepted model");
                    let v = model.config().vocab_size as u32;
                    s.forward(1 % v, 0).expect("forward");
                    if model.config().block_size > 1 {
                        s.forward(v - 1, 1).expect("forward");
                    }
                    true
                }
                Err(_) => false,
            };
            ok
        });
        match res {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("mutation {i} (seed {seed}, {kinds:?}) panicked"),
        }
    }
    (accepted, rejected)
}

#[test]
fn random_mutations_never_panic() {
    let mixed = FixtureSpec::new(SMALL, Plan::Mixed, 3).build();
    let runs = [
        ("safetensors writer, mixed", mixed.to_safetensors(), 11u64),
        (
            "handwritten writer, mixed",
            handwritten::write(&mixed, &Layout::scrambled(5)),
            12,
        ),
        (
            "safetensors writer, q4_0",
            file(Plan::All(Encoding::Q4_0)),
            13,
        ),
    ];
    let mut total = 0;
    for (label, base, seed) in runs {
        let (acc, rej) = mutation_run(&base, seed, 2000);
        eprintln!("mutations of {label}: {acc} accepted, {rej} rejected");
        assert!(
            rej > 1000,
            "{label}: most mutations should be rejected ({rej})"
        );
        assert!(
            acc > 10,
            "{label}: some mutations (data bytes, ignored spans) should load ({acc})"
        );
        total += acc + rej;
    }
    assert!(total >= 6000);
}
