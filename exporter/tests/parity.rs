//! The runtime runs an exported model with the same numbers as tch: a tiny model trained
//! for a few steps, exported f32 and q8_0, scored position by position on the same tokens.
use folio_exporter::checkpoint::to_f32;
use folio_exporter::data::{self, Dataset, Split};
use folio_exporter::export::Master;
use folio_exporter::hyper::Hyper;
use folio_exporter::model::Mode;
use folio_exporter::quantize::Encoding;
use folio_exporter::train::{self, RunOpts};
use folio_tests::AlignedBytes;
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

fn dataset() -> Dataset {
    let text = data::load_text(None)
        .expect("Tiny Shakespeare (shared/data/ above the checkout, or FOLIO_DATA)");
    Dataset::new(&text.text).unwrap()
}

/// Trains `h` for its few steps in a temp dir and returns (model, f32 master).
fn trained(data: &Dataset, h: Hyper, tag: &str) -> (folio_exporter::model::Gpt, Master) {
    // torch's RNG is global: tests in this binary run on parallel threads, so training
    // (initialisation draws) is serialised to keep every model the same from run to run.
    static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let dir = std::env::temp_dir().join(format!("folio-parity-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ck, log) = (dir.join("ck.safetensors"), dir.join("log.jsonl"));
    let opts = RunOpts {
        hyper: h,
        device: Device::Cpu,
        checkpoint: &ck,
        log: &log,
        resume: false,
        stop_after: None,
        probe: false,
    };
    let done = train::train(data, &opts).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut tensors = BTreeMap::new();
    for (name, t) in done.vs.variables() {
        tensors.insert(
            name,
            (
                t.size().iter().map(|&d| d as usize).collect(),
                to_f32(&t).unwrap(),
            ),
        );
    }
    let master = Master {
        cfg: done.model.cfg,
        vocab: data.vocab.clone(),
        tensors,
        train: serde_json::Value::Null,
    };
    (done.model, master)
}

fn tiny(tied: bool) -> Hyper {
    Hyper {
        batch_size: 8,
        block_size: 32,
        n_embd: 64,
        n_head: 4,
        n_layer: 2,
        tied_embeddings: tied,
        max_iters: 30,
        lr_decay_iters: 30,
        warmup_iters: 5,
        lr: 1e-2,
        eval_interval: 30,
        eval_iters: 2,
        ..Hyper::preset("edge").unwrap()
    }
}

/// Max |runtime - tch| / max |tch| over every position of `tokens`.
fn rel_err(bytes: &[u8], tch_logits: &[Vec<f32>], tokens: &[u32]) -> f64 {
    let bytes = AlignedBytes::new(bytes);
    let model = folio_runtime::Model::from_bytes(bytes.bytes()).unwrap();
    let mut scratch = vec![0u64; model.session_bytes().div_ceil(8)];
    let mut s = model
        .session(bytemuck::cast_slice_mut(&mut scratch))
        .unwrap();
    let (mut diff, mut scale) = (0f64, 0f64);
    for (pos, (&tok, want)) in tokens.iter().zip(tch_logits).enumerate() {
        let got = s.forward(tok, pos).unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            diff = diff.max((a - b).abs() as f64);
            scale = scale.max(b.abs() as f64);
        }
    }
    diff / scale
}

fn check(tied: bool) {
    let data = dataset();
    let (model, master) = trained(&data, tiny(tied), if tied { "tied" } else { "untied" });
    let t = master.cfg.block_size;
    let start = data.fixed_windows(Split::Val, 1, t, 99)[0];
    let tokens: Vec<u32> = data.val[start..start + t].to_vec();
    let x = Tensor::from_slice(&tokens.iter().map(|&v| v as i64).collect::<Vec<_>>())
        .view([1, t as i64]);
    let logits_of = |kv_f16| -> Vec<Vec<f32>> {
        let l = tch::no_grad(|| {
            model.forward(
                &x,
                Mode {
                    dropout: 0.0,
                    kv_f16,
                },
            )
        })
        .to_kind(Kind::Float);
        (0..t as i64)
            .map(|p| Vec::<f32>::try_from(&l.get(0).get(p)).unwrap())
            .collect()
    };
    let (tch_f16kv, tch_exact) = (logits_of(true), logits_of(false));
    let file = |enc: Encoding| {
        let plan = master.default_plan(enc);
        master
            .to_bytes(&plan, enc.as_str(), &serde_json::Value::Null)
            .unwrap()
    };
    let f32_file = file(Encoding::F32);
    let e_f32 = rel_err(&f32_file, &tch_f16kv, &tokens);
    let e_f32_exact = rel_err(&f32_file, &tch_exact, &tokens);
    let q8_file = file(Encoding::Q8_0);
    let e_q8 = rel_err(&q8_file, &tch_exact, &tokens);
    eprintln!("tied={tied}: f32 vs tch(f16 KV) {e_f32:.2e}, vs tch(f32 KV) {e_f32_exact:.2e}; q8_0 vs tch {e_q8:.2e}");
    assert!(
        e_f32 <= 1e-4,
        "f32 file: runtime vs tch (KV rounded to f16) rel err {e_f32:.3e} > 1e-4"
    );
    assert!(
        e_q8 <= 3e-2,
        "q8_0 file: runtime vs tch rel err {e_q8:.3e} > 3e-2"
    );
    // The f16 rounding of K/V is real: the test would notice a tch side that skipped it
    // only if it mattered, so it is reported above; a trained model must not be all-zero.
    assert!(tch_exact.iter().flatten().any(|v| v.abs() > 1.0));
}

#[test]
fn runtime_matches_tch_tied() {
    check(true);
}

#[test]
fn runtime_matches_tch_untied() {
    check(false);
}

#[test]
fn a_missed_target_promotes_matrices_into_a_mixed_file() {
    use folio_exporter::report::{choose_plan, runtime_loss, EvalSet};
    let data = dataset();
    // Trained long enough that its weights carry structure 4-bit rounding can hurt.
    let h = Hyper {
        max_iters: 300,
        lr_decay_iters: 300,
        eval_interval: 300,
        ..tiny(true)
    };
    let (_, master) = trained(&data, h, "mixed");
    let set = EvalSet::new(&data, 32, master.cfg.block_size);
    let f32_bytes = master
        .to_bytes(
            &master.default_plan(Encoding::F32),
            "f32",
            &serde_json::Value::Null,
        )
        .unwrap();
    let f32_loss = runtime_loss(&f32_bytes, &set).unwrap();
    // A target q4_0 cannot meet (half the f32 loss) forces a promotion of every matrix.
    let (plan, rep) = choose_plan(&master, Encoding::Q4_0, &set, f32_loss, -0.5).unwrap();
    assert_eq!(rep.dtype, "mixed");
    assert!(!rep.within_target);
    let n_q4 = master
        .default_plan(Encoding::Q4_0)
        .values()
        .filter(|&&e| e == Encoding::Q4_0)
        .count();
    assert_eq!(rep.promoted.len(), n_q4);
    assert!(
        rep.promoted.values().all(|&e| e == Encoding::Q8_0),
        "{:?}",
        rep.promoted
    );
    assert!(
        rep.uniform_val_loss > f32_loss,
        "q4_0 should cost something: {rep:?}"
    );
    // The written file scores what the report says.
    let bytes = master
        .to_bytes(&plan, &rep.dtype, &serde_json::Value::Null)
        .unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        st.tensor("wte.weight").unwrap().dtype(),
        safetensors::Dtype::I8
    );
    assert_eq!(runtime_loss(&bytes, &set).unwrap(), rep.val_loss);
    // A target halfway between q4_0 and f32: promotions stop once it holds.
    let mid = (rep.uniform_val_loss / f32_loss - 1.0) / 2.0;
    let (_, half) = choose_plan(&master, Encoding::Q4_0, &set, f32_loss, mid).unwrap();
    assert!(half.within_target && !half.promoted.is_empty(), "{half:?}");
    assert!(half.val_loss <= f32_loss * (1.0 + mid) + 1e-12);
    eprintln!("halfway target: promoted {} of {n_q4}", half.promoted.len());
    // A reachable target stops at the plain encoding.
    let (_, easy) = choose_plan(&master, Encoding::Q4_0, &set, f32_loss, 1.0).unwrap();
    assert_eq!(easy.dtype, "q4_0");
    assert!(easy.within_target && easy.promoted.is_empty());
}
