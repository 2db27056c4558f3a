//! Loader attack tests: one malformed-file class per test, each asserting the specific
//! `folio_runtime::Error` (format 2, docs/FORMAT.md); a cross-check against the
//! `safetensors` crate (same tensors on valid files, same verdict on safetensors-level
//! breakages, and the rules where folio is stricter by design); and a seeded mutation test
//! (random byte edits and truncations never panic).
use folio_runtime::names::tensor_id;
use folio_runtime::{Dtype, Error, MetaKey, Model, TensorId, TensorKind, TensorProblem};
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan, StoredTensor};
use folio_tests::handwritten::{self, edit_header, raw_file, Layout, RawFile};
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

/// Load from a copy whose data section is aligned.
fn load(bytes: &[u8]) -> Result<(), Error> {
    let a = AlignedBytes::new(bytes);
    Model::from_bytes(a.bytes()).map(|_| ())
}

/// What is wrong with the tensor the load fails on, if it fails on one.
fn problem(bytes: &[u8]) -> Option<TensorProblem> {
    match err(bytes) {
        Error::Tensor { problem, .. } => Some(problem),
        _ => None,
    }
}

fn err(bytes: &[u8]) -> Error {
    load(bytes).expect_err("the loader accepted a malformed file")
}

fn st_accepts(bytes: &[u8]) -> bool {
    SafeTensors::deserialize(bytes).is_ok()
}

fn id(kind: TensorKind, layer: u8) -> TensorId {
    TensorId::new(kind, layer as usize)
}

fn scale_id(kind: TensorKind, layer: u8) -> TensorId {
    TensorId {
        scale: true,
        ..id(kind, layer)
    }
}

fn tensor(tensor: TensorId, problem: TensorProblem) -> Error {
    Error::Tensor { tensor, problem }
}

/// Set (`Some`) or remove (`None`) one `__metadata__` value.
fn set_meta(bytes: &[u8], key: &str, value: Option<Value>) -> Vec<u8> {
    edit_header(bytes, |h| {
        let m = h["__metadata__"].as_object_mut().expect("metadata");
        match value {
            Some(v) => m.insert(key.into(), v),
            None => m.remove(key),
        };
    })
}

fn meta(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    set_meta(bytes, key, Some(json!(value)))
}

/// The header member that comes last in data order, and its id.
fn last_tensor(bytes: &[u8]) -> (String, TensorId) {
    let h = RawFile::parse(bytes);
    let name = h.members.last().expect("a tensor").0.clone();
    let tid = tensor_id(&name).expect("a folio tensor");
    (name, tid)
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
        let want = Error::HeaderTooLong {
            header_len: n,
            file_len: good.len(),
        };
        assert_eq!(err(&b), want, "{n}");
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
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"b\":5}",
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
    let n = RawFile::parse(&good).data.len() as u64;
    // The last tensor in data order: it begins where the one before ends, so only its end
    // can be wrong.
    let (name, last) = last_tensor(&good);
    let begin = RawFile::parse(&good)[name.as_str()]["data_offsets"][0]
        .as_u64()
        .expect("u64");
    for end in [n + 4, n + (1 << 20), u64::MAX, begin - 1] {
        let b = edit_header(&good, |h| {
            h[name.as_str()]["data_offsets"] = json!([begin, end])
        });
        assert_eq!(err(&b), tensor(last, TensorProblem::OutOfRange), "{end}");
        assert!(!st_accepts(&b), "{end}");
    }
}

#[test]
fn offsets_length_mismatch() {
    let good = f32_file();
    let ln_f_bias = id(TensorKind::LnFBias, 0);
    // ln_f.bias is F32 [32] = 128 bytes; claim a shape of 31 or 33 elements.
    for shape in [
        json!([31]),
        json!([33]),
        json!([4, 8, 2]),
        json!([1u64 << 40, 1u64 << 40]),
    ] {
        let b = edit_header(&good, |h| h["ln_f.bias"]["shape"] = shape.clone());
        assert_eq!(err(&b), tensor(ln_f_bias, TensorProblem::Length), "{shape}");
        assert!(!st_accepts(&b));
    }
}

#[test]
fn offsets_must_tile_the_data_section() {
    let good = f32_file();
    let h = RawFile::parse(&good);
    let offsets = |name: &str| {
        let o = &h[name]["data_offsets"];
        (o[0].as_u64().expect("b"), o[1].as_u64().expect("e"))
    };
    let not_contiguous = |kind| tensor(id(kind, 0), TensorProblem::NotContiguous);
    // ln_f.bias (128 bytes) moved onto the first 128 bytes of wpe.weight: an overlap.
    let (w0, _) = offsets("wpe.weight");
    let b = edit_header(&good, |h| {
        h["ln_f.bias"]["data_offsets"] = json!([w0, w0 + 128])
    });
    assert_eq!(err(&b), not_contiguous(TensorKind::LnFBias));
    assert!(!st_accepts(&b));
    // An unknown tensor overlapping a used one is just as wrong.
    let b =
        edit_header(
            &good,
            |h| {
                h["zz.extra"] =
                    json!({"dtype": "U8", "shape": [2], "data_offsets": [w0 + 1, w0 + 3]})
            },
        );
    assert_eq!(err(&b), not_contiguous(TensorKind::Other));
    assert!(!st_accepts(&b));
    // A gap: 8 unused bytes before the last tensor.
    let (name, last) = last_tensor(&good);
    let b = edit_header(&good, |h| {
        let (b0, e0) = offsets(&name);
        h[name.as_str()]["data_offsets"] = json!([b0 + 8, e0 + 8]);
        let at = b0 as usize;
        h.data.splice(at..at, [0u8; 8]);
    });
    assert_eq!(err(&b), tensor(last, TensorProblem::NotContiguous));
    assert!(!st_accepts(&b));
    // Bytes after the last tensor.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert_eq!(err(&trailing), Error::TrailingData { bytes: 8 });
    assert!(!st_accepts(&trailing));
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
    entries.push("\"__metadata__\":{\"folio.format\":\"2\"}".into());
    let b = raw_file(&format!("{{{}}}", entries.join(",")), &[7u8; 513]);
    assert_eq!(err(&b), Error::TooManyTensors { max: 512 });
    assert!(
        st_accepts(&b),
        "a safetensors-valid file; the limit is folio's own"
    );
}

#[test]
fn key_capacities() {
    // A tensor name over 256 bytes, and 65 metadata keys: valid safetensors, folio's limits.
    let name = "n".repeat(257);
    let h = format!("{{\"{name}\":{{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}}}");
    let b = raw_file(&h, &[0]);
    assert!(
        matches!(err(&b), Error::KeyTooLong { max: 256, .. }),
        "{:?}",
        err(&b)
    );
    assert!(st_accepts(&b));
    let b = edit_header(&f32_file(), |h| {
        for i in 0..60 {
            h["__metadata__"][format!("other.{i}")] = json!("x");
        }
    });
    assert_eq!(err(&b), Error::TooManyMetadata { max: 64 });
    assert!(st_accepts(&b));
}

// ---- alignment ---------------------------------------------------------------------------

#[test]
fn misaligned_tensor() {
    // A 2-byte unknown tensor first and every other tensor 2 bytes later: F16 stays
    // aligned, F32 does not.
    let good = f32_file();
    let mut h = RawFile::parse(&good);
    for (_, t) in h.members.iter_mut() {
        if let Some(o) = t.get_mut("data_offsets") {
            let (a, b) = (o[0].as_u64().expect("a"), o[1].as_u64().expect("b"));
            *o = json!([a + 2, b + 2]);
        }
    }
    let pad = json!({"dtype": "U8", "shape": [2], "data_offsets": [0, 2]});
    h.members.insert(0, ("aa.pad".into(), pad));
    h.data.splice(0..0, [0u8, 0]);
    let b = h.to_bytes();
    assert_eq!(problem(&b), Some(TensorProblem::Misaligned));
    assert!(
        st_accepts(&b),
        "safetensors has no alignment rule; folio does (FORMAT.md)"
    );
}

#[test]
fn misaligned_data_address() {
    let good = f32_file();
    let data_offset = good.len() - RawFile::parse(&good).data.len();
    for off in 1..4 {
        let a = AlignedBytes::with_offset(&good, off);
        let e = Model::from_bytes(a.bytes()).map(|_| ()).unwrap_err();
        assert_eq!(
            e,
            Error::DataMisaligned {
                offset: data_offset
            },
            "offset {off}"
        );
        assert!(
            e.to_string().contains("not at a 4-byte aligned address"),
            "{e}"
        );
    }
    let a = AlignedBytes::with_offset(&good, 4);
    assert!(
        Model::from_bytes(a.bytes()).is_ok(),
        "4-byte aligned is enough"
    );
}

#[test]
fn header_length_need_not_be_a_multiple_of_8() {
    // safetensors does not require padding: data at 1, 2, 3 mod 4 is a valid file. Placed
    // so its data is aligned (as AlignedBytes::new and the folio CLI do), it loads; at a
    // 4-byte aligned file start it cannot be viewed in place, and the error says why.
    let h = RawFile::parse(&f32_file());
    for mod8 in [1, 2, 3, 5] {
        let b = h.to_bytes_with_data_at(mod8);
        assert!(st_accepts(&b));
        load(&b).unwrap_or_else(|e| panic!("data at {mod8} mod 8: {e}"));
        let at_start = AlignedBytes::with_offset(&b, 0);
        let e = Model::from_bytes(at_start.bytes()).map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::DataMisaligned { .. }), "{mod8}: {e:?}");
    }
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

/// The keys a format 2 file must have.
const REQUIRED: [MetaKey; 10] = [
    MetaKey::Format,
    MetaKey::VocabSize,
    MetaKey::BlockSize,
    MetaKey::NEmbd,
    MetaKey::NHead,
    MetaKey::NLayer,
    MetaKey::LayerNormEps,
    MetaKey::Activation,
    MetaKey::TiedEmbeddings,
    MetaKey::Vocab,
];

#[test]
fn missing_metadata() {
    let good = f32_file();
    let b = edit_header(&good, |h| {
        h.remove("__metadata__");
    });
    assert_eq!(
        err(&b),
        Error::MissingMetadata {
            key: MetaKey::Format
        }
    );
    for key in REQUIRED {
        let b = set_meta(&good, key.as_str(), None);
        assert_eq!(err(&b), Error::MissingMetadata { key }, "{key:?}");
        // Misnamed: the right value under a near-miss key.
        let b = edit_header(&good, |h| {
            let m = h["__metadata__"].as_object_mut().expect("obj");
            let v = m.remove(key.as_str()).expect("present");
            m.insert(format!("{}s", key.as_str()), v.clone());
            m.insert(key.as_str().to_uppercase(), v);
        });
        assert_eq!(err(&b), Error::MissingMetadata { key }, "{key:?} misnamed");
    }
    // folio.dtype and folio.train are informational; unknown keys are ignored.
    let b = set_meta(&good, "folio.dtype", None);
    load(&b).expect("folio.dtype is informational");
    let b = meta(&meta(&good, "folio.notes", "hi"), "other.tool", "{}");
    load(&b).expect("unknown metadata keys are ignored");
}

#[test]
fn metadata_values_must_be_strings() {
    let b = set_meta(&f32_file(), "folio.format", Some(json!(2)));
    assert!(matches!(err(&b), Error::BadJson { .. }), "{:?}", err(&b));
    assert!(!st_accepts(&b));
}

#[test]
fn duplicate_names() {
    let good = f32_file();
    let h = RawFile::parse(&good);
    // Repeat the ln_f.bias entry (same offsets) verbatim: a duplicate key.
    let mut dup = h.clone();
    let entry = h["ln_f.bias"].clone();
    dup.members.insert(0, ("ln_f.bias".into(), entry.clone()));
    assert!(matches!(err(&dup.to_bytes()), Error::DuplicateName { .. }));
    // The same name spelled with an escape is the same name.
    let text = h
        .header_text()
        .replacen("\"ln_f.bias\"", "\"ln_f.bia\\u0073\"", 1);
    let mut b = raw_file(&text, &h.data);
    b = raw_file(
        &String::from_utf8_lossy(&b[8..b.len() - h.data.len()])
            .trim_end()
            .replacen('{', &format!("{{\"ln_f.bias\":{entry},"), 1),
        &h.data,
    );
    assert!(
        matches!(err(&b), Error::DuplicateName { .. }),
        "{:?}",
        err(&b)
    );
    // Two __metadata__ objects.
    let mut two = h.clone();
    two.members
        .push(("__metadata__".into(), h["__metadata__"].clone()));
    assert!(matches!(err(&two.to_bytes()), Error::DuplicateName { .. }));
    // One metadata key twice (JSON tools disagree on which one wins).
    let text = h.header_text().replacen(
        "\"folio.n_layer\":\"1\"",
        "\"folio.n_layer\":\"1\",\"folio.n_layer\":\"2\"",
        1,
    );
    assert_ne!(text, h.header_text());
    let b = raw_file(&text, &h.data);
    assert!(
        matches!(err(&b), Error::DuplicateName { .. }),
        "{:?}",
        err(&b)
    );
}

#[test]
fn format_version() {
    for v in ["3", "", "2.0", " 2", "v2"] {
        let b = meta(&f32_file(), "folio.format", v);
        assert_eq!(
            err(&b),
            Error::BadMetadata {
                key: MetaKey::Format
            },
            "{v:?}"
        );
    }
    // An escaped "2" is still "2".
    let h = RawFile::parse(&f32_file());
    let text = h
        .header_text()
        .replace("\"folio.format\":\"2\"", "\"folio.format\":\"\\u0032\"");
    load(&raw_file(&text, &h.data)).expect("\\u0032 is \"2\"");
}

#[test]
fn format_1_files_are_named_as_such() {
    // A format 1 file: folio.config and folio.vocab JSON inside strings.
    let good = f32_file();
    let b = edit_header(&good, |h| {
        let m = h["__metadata__"].as_object_mut().expect("obj");
        m.retain(|k, _| k == "folio.dtype");
        m.insert("folio.format".into(), json!("1"));
        m.insert("folio.config".into(), json!("{\"vocab_size\": 11}"));
        m.insert("folio.vocab".into(), json!("[\"a\"]"));
    });
    assert_eq!(err(&b), Error::Format1);
    assert!(err(&b).to_string().contains("exporter convert"));
}

#[test]
fn bad_metadata_values() {
    let good = f32_file();
    let sizes = [
        MetaKey::VocabSize,
        MetaKey::BlockSize,
        MetaKey::NEmbd,
        MetaKey::NHead,
        MetaKey::NLayer,
    ];
    for key in sizes {
        for bad in ["0", "-4", "4.5", "8 ", "", "08", "0x8", "eight", "+8"] {
            let b = meta(&good, key.as_str(), bad);
            assert_eq!(err(&b), Error::BadMetadata { key }, "{key:?} = {bad:?}");
        }
    }
    let cases = [
        (
            MetaKey::LayerNormEps,
            &["-1e-5", "", "1e-5x", "nan", "inf", "1e99", ".1"][..],
        ),
        (MetaKey::TiedEmbeddings, &["yes", "1", "True", ""][..]),
        (MetaKey::Activation, &["gelu", "relu", "GELU_TANH", ""][..]),
    ];
    for (key, values) in cases {
        for bad in values {
            let b = meta(&good, key.as_str(), bad);
            assert_eq!(err(&b), Error::BadMetadata { key }, "{key:?} = {bad:?}");
        }
    }
    let e = err(&meta(&good, "folio.activation", "relu"));
    assert_eq!(
        e.to_string(),
        "metadata folio.activation must be \"gelu_tanh\""
    );
    // Other spellings of valid values.
    load(&meta(&good, "folio.layer_norm_eps", "1E-5")).expect("1E-5");
    load(&meta(&good, "folio.layer_norm_eps", "0.00001")).expect("0.00001");
}

#[test]
fn config_does_not_divide() {
    let b = meta(&f32_file(), "folio.n_head", "5");
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
    let too_large = |key, max| Error::ConfigTooLarge { key, max };
    assert_eq!(
        err(&meta(&good, "folio.n_layer", "17")),
        too_large(MetaKey::NLayer, 16)
    );
    let b = meta(&good, "folio.vocab_size", "257");
    assert_eq!(err(&b), too_large(MetaKey::VocabSize, 256));
    let b = meta(&good, "folio.block_size", &(1u64 << 33).to_string());
    assert_eq!(err(&b), too_large(MetaKey::BlockSize, u32::MAX));
}

#[test]
fn quantised_matrix_with_bad_column_count() {
    // n_embd 24: wte stored as I8 [V, 24] with a [V, 1] scale, written by the safetensors
    // crate (so the data still tiles).
    let mut fx = FixtureSpec::new(Config::ODD, Plan::All(Encoding::F32), 1).build();
    let v = Config::ODD.vocab_size;
    let wte = fx
        .tensors
        .iter_mut()
        .find(|t| t.name == "wte.weight")
        .expect("wte");
    *wte = StoredTensor {
        name: "wte.weight".into(),
        dtype: safetensors::Dtype::I8,
        shape: vec![v, 24],
        data: vec![1u8; v * 24],
    };
    fx.tensors.push(StoredTensor {
        name: "wte.weight_scale".into(),
        dtype: safetensors::Dtype::F16,
        shape: vec![v, 1],
        data: vec![0u8; v * 2],
    });
    let e = err(&fx.to_safetensors());
    assert_eq!(
        e,
        tensor(
            id(TensorKind::Wte, 0),
            TensorProblem::QuantCols { cols: 24 }
        )
    );
}

// ---- vocabulary ---------------------------------------------------------------------------

#[test]
fn vocab_errors() {
    let good = f32_file();
    let vocab: String = folio_tests::fixture::vocab_for(SMALL.vocab_size)
        .into_iter()
        .collect();
    let length = |found| Error::VocabLength {
        expected: 11,
        found,
    };
    assert_eq!(err(&meta(&good, "folio.vocab", &vocab[..10])), length(10));
    assert_eq!(
        err(&meta(&good, "folio.vocab", &format!("{vocab}Z"))),
        length(12)
    );
    assert_eq!(err(&meta(&good, "folio.vocab", "")), length(0));
    let mut dup: Vec<char> = vocab.chars().collect();
    dup[7] = dup[2];
    let dup: String = dup.into_iter().collect();
    let e = err(&meta(&good, "folio.vocab", &dup));
    assert_eq!(
        e,
        Error::DuplicateVocab {
            index: 7,
            ch: dup.chars().nth(2).expect("2")
        }
    );
}

#[test]
fn any_character_is_a_token_nul_included() {
    // NUL as token 0, a control character and a character outside the BMP.
    let good = f32_file();
    let vocab = "\0\u{1b}😀abcdefgh";
    let a = AlignedBytes::new(&meta(&good, "folio.vocab", vocab));
    let model = Model::from_bytes(a.bytes()).expect("NUL is a token like any other");
    assert_eq!(model.tokenizer().chars().iter().collect::<String>(), vocab);
    let mut out = [0u32; 4];
    assert_eq!(model.tokenizer().encode("\0😀", &mut out), Ok(2));
    assert_eq!(out[..2], [0, 2]);
}

// ---- tensors ------------------------------------------------------------------------------

/// `bytes` with the tensor `name` renamed to a name folio ignores (the data still tiles).
fn rename(bytes: &[u8], name: &str) -> Vec<u8> {
    edit_header(bytes, |h| {
        let i = h
            .members
            .iter()
            .position(|(k, _)| k == name)
            .expect("present");
        h.members[i].0 = format!("{name}.old");
    })
}

#[test]
fn missing_tensor() {
    let good = q8_file();
    for kind in [TensorKind::Ln2Bias, TensorKind::LnFWeight] {
        let tid = id(kind, 0);
        let e = err(&rename(&good, &tid.to_string()));
        assert_eq!(e, tensor(tid, TensorProblem::Missing), "{tid}");
        assert_eq!(e.to_string(), format!("tensor {tid} is missing"));
    }
    // wte's `_scale` is still there: a scale whose weight is missing.
    let e = err(&rename(&good, "wte.weight"));
    assert_eq!(
        e,
        tensor(id(TensorKind::Wte, 0), TensorProblem::ScaleWithoutWeight)
    );
    // A layer beyond the stored ones.
    let e = err(&meta(&good, "folio.n_layer", "2"));
    assert!(
        matches!(e, Error::Tensor { tensor, problem: TensorProblem::Missing } if tensor.layer == 1),
        "{e:?}"
    );
    // Untied config without lm_head.weight.
    let e = err(&meta(&good, "folio.tied_embeddings", "false"));
    assert_eq!(e, tensor(id(TensorKind::LmHead, 0), TensorProblem::Missing));
}

#[test]
fn wrong_dtype() {
    let good = f32_file();
    let dtype = |kind, d| tensor(id(kind, 0), TensorProblem::Dtype { dtype: d });
    let b = edit_header(&good, |h| h["h.0.ln_1.weight"]["dtype"] = json!("I32"));
    assert_eq!(err(&b), dtype(TensorKind::Ln1Weight, Dtype::I32));
    let b = edit_header(&good, |h| {
        h["h.0.attn.c_proj.weight"]["dtype"] = json!("U32")
    });
    assert_eq!(err(&b), dtype(TensorKind::AttnProjWeight, Dtype::U32));
    let f16 = file(Plan::All(Encoding::F16));
    let b = edit_header(&f16, |h| h["wpe.weight"]["dtype"] = json!("BF16"));
    assert_eq!(err(&b), dtype(TensorKind::Wpe, Dtype::BF16));
    // A q8_0 scale stored as I16 (same size as F16).
    let b = edit_header(&q8_file(), |h| {
        h["h.0.mlp.c_fc.weight_scale"]["dtype"] = json!("I16")
    });
    let e = tensor(
        scale_id(TensorKind::FcWeight, 0),
        TensorProblem::Dtype { dtype: Dtype::I16 },
    );
    assert_eq!(err(&b), e);
    // A 1-D tensor stored as I8 (with a matching byte count).
    let b = edit_header(&good, |h| {
        h["ln_f.bias"]["dtype"] = json!("I8");
        h["ln_f.bias"]["shape"] = json!([128]);
    });
    assert_eq!(err(&b), dtype(TensorKind::LnFBias, Dtype::I8));
    assert!(err(&b).to_string().contains("unexpected dtype I8"));
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
        assert_eq!(err(&b), tensor(tid, TensorProblem::Shape), "{name} {shape}");
    }
    // A q8_0 scale of the wrong shape (same byte count).
    let b = edit_header(&q8_file(), |h| {
        h["h.0.attn.c_proj.weight_scale"]["shape"] = json!([1, c])
    });
    let e = tensor(
        scale_id(TensorKind::AttnProjWeight, 0),
        TensorProblem::Shape,
    );
    assert_eq!(err(&b), e);
}

#[test]
fn scale_without_weight_and_weight_without_scale() {
    // An F32 matrix with a stray `_scale` after the last tensor.
    let b = edit_header(&f32_file(), |h| {
        let (start, n) = (h.data.len(), SMALL.n_embd * 2);
        h.data.extend(std::iter::repeat_n(0u8, n));
        h["h.0.attn.c_proj.weight_scale"] =
            json!({"dtype": "F16", "shape": [SMALL.n_embd, 1], "data_offsets": [start, start + n]});
    });
    let e = tensor(
        id(TensorKind::AttnProjWeight, 0),
        TensorProblem::ScaleWithoutWeight,
    );
    assert_eq!(err(&b), e);
    // Quantised weights whose scale is gone (renamed, so the data still tiles).
    for (bytes, kind) in [
        (q8_file(), TensorKind::FcWeight),
        (file(Plan::All(Encoding::Q4_0)), TensorKind::Wpe),
    ] {
        let tid = id(kind, 0);
        let b = rename(&bytes, &format!("{tid}_scale"));
        assert_eq!(
            err(&b),
            tensor(tid, TensorProblem::WeightWithoutScale),
            "{tid}"
        );
    }
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
/// offsets) and metadata as the safetensors crate.
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
            // The data order is the header order.
            let names: Vec<String> = model
                .header()
                .tensors()
                .map(|t| t.name().collect())
                .collect();
            assert_eq!(names, meta.offset_keys(), "{label}");
            for t in model.header().tensors() {
                let name: String = t.name().collect();
                let info = &want[&name];
                assert_eq!(
                    t.dtype.as_str(),
                    format!("{:?}", info.dtype),
                    "{label}: {name}"
                );
                let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
                assert_eq!(t.shape(), &shape[..], "{label}: {name}");
                let offsets = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
                assert_eq!((t.begin, t.end), offsets, "{label}: {name}");
            }
            assert_eq!(model.header().tensor_count, want.len(), "{label}");
            // The metadata values decode to what safetensors reads.
            let m = meta.metadata().as_ref().expect("metadata");
            for (key, value) in m {
                let raw = model
                    .header()
                    .metadata(key)
                    .unwrap_or_else(|| panic!("{label}: {key}"));
                let decoded: String = folio_runtime::unescape(raw).collect();
                assert_eq!(&decoded, value, "{label}: {key}");
            }
        }
    }
}

/// The structural breakages safetensors defines are rejected by both; the rules where
/// folio is stricter by design are checked as such.
#[test]
fn same_verdict_as_safetensors_on_structural_breakage() {
    let good = f32_file();
    let h = RawFile::parse(&good);
    let n = good.len();
    let lnf = &h["ln_f.bias"]["data_offsets"];
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
        ("not json", raw_file("{{{", &h.data)),
        ("not an object", raw_file("[1]", &h.data)),
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
            set_meta(&good, "folio.vocab", Some(json!(["a"]))),
        ),
        ("trailing bytes", [&good[..], &[0u8; 8]].concat()),
        (
            "gap",
            edit_header(&good, |h| {
                let s = h.data.len();
                h.data.extend_from_slice(&[0u8; 16]);
                h["zz.after_gap"] =
                    json!({"dtype": "U8", "shape": [8], "data_offsets": [s + 8, s + 16]});
            }),
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
    // Stricter by design (docs/FORMAT.md): header entries in data order, and exactly
    // `dtype`, `shape` and `data_offsets` in each entry.
    let mut swapped = h.clone();
    let (i, j) = (swapped.members.len() - 1, swapped.members.len() - 2);
    swapped.members.swap(i, j);
    let b = swapped.to_bytes();
    assert!(st_accepts(&b));
    assert_eq!(problem(&b), Some(TensorProblem::NotContiguous));
    let b = edit_header(&good, |h| h["ln_f.bias"]["notes"] = json!("x"));
    assert!(st_accepts(&b));
    assert!(matches!(err(&b), Error::BadJson { .. }), "{:?}", err(&b));
}

// ---- mutations ------------------------------------------------------------------------------

#[test]
fn every_truncation_and_header_byte_corruption_is_handled() {
    // Every prefix up to 64 bytes into the data, and single-byte corruptions across the
    // header: an error or a model, never a panic.
    let f = FixtureSpec::new(Config::new(8, 32, 4, 1).vocab(11), Plan::Mixed, 5).to_bytes();
    let header_end = 8 + u64::from_le_bytes(f[..8].try_into().expect("8")) as usize;
    for n in (0..header_end + 64).chain([f.len() - 1]) {
        assert!(load(&f[..n]).is_err(), "prefix {n}");
    }
    let mut g = f.clone();
    for i in (8..header_end).step_by(3) {
        for b in [b'"', b'\\', b'{', b'9', 0xff, b' '] {
            let old = g[i];
            g[i] = b;
            let _ = load(&g);
            g[i] = old;
        }
    }
}

// ---- seeded mutations -----------------------------------------------------------------------

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
