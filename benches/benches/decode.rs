//! Per-token decode latency: `Session::forward(token, pos)` on the lab's three shapes and
//! the CPU `edge` preset (64/128/4/4) in each encoding, random weights (fixtures built in
//! memory by folio-tests).
//!
//! Each iteration decodes one token at the next position, cycling through the whole
//! context window (`pos = 0, 1, …, block_size - 1, 0, …`), so the figure is the mean
//! over a window: attention costs grow with `pos`, the matvecs do not.
//! `Throughput::Elements(1)`: criterion reports tokens/s beside the time per token.
//!
//! `cargo bench -p folio-benches --bench decode` (add `-- 'q8_0'` to filter).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use folio_benches::{decode_cases, DecodeCase};
use folio_runtime::Model;
use folio_tests::fixture::{Config, Encoding};
use std::hint::black_box;
use std::time::Duration;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    // The `edge` preset the demo trains: block 64, embd 128, 4 heads, 4 layers.
    let edge = Encoding::ALL
        .into_iter()
        .map(|e| DecodeCase::new(Config::new(64, 128, 4, 4), e));
    for case in decode_cases().chain(edge) {
        let model = Model::from_bytes(case.file.bytes()).expect("fixture loads");
        let mut mem = vec![0u8; model.session_bytes()];
        let mut session = model.session(&mut mem).expect("session");
        let (t, v) = (case.config.block_size, case.config.vocab_size as u32);
        let mut pos = 0usize;
        let id = BenchmarkId::new(case.encoding.as_str(), case.shape());
        group.bench_function(id, |b| {
            b.iter(|| {
                let token = (pos as u32 * 7 + 1) % v;
                let logits = session.forward(black_box(token), pos).expect("forward");
                black_box(logits[0]);
                pos = (pos + 1) % t;
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: 16 cases, a couple of seconds each.
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = decode
}
criterion_main!(benches);
