//! The fuzz corpus on stable: every committed input of `fuzz/corpus/<target>/` through the
//! same harness function the cargo-fuzz target calls (`folio_tests::fuzz`), so CI replays
//! what fuzzing found without nightly. A panic or a broken harness property fails the
//! test; seeds named `ok-*` must be accepted and `err-*` rejected, which shows the harness
//! reaches the code it is meant to fuzz.
use folio_tests::fuzz::{seeds, Outcome, Target, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// What a seed's name promises about its outcome.
fn check(target: &str, name: &str, outcome: Outcome) -> Result<(), String> {
    let ok = match outcome {
        Outcome::Accepted => !name.starts_with("err-"),
        Outcome::Rejected(_) => !name.starts_with("ok-"),
        Outcome::Skipped => !name.starts_with("ok-") && !name.starts_with("err-"),
    };
    ok.then_some(())
        .ok_or_else(|| format!("{target}/{name}: {outcome:?}"))
}

/// Run `input` through `f`, a panic becoming an error naming the input.
fn replay(target: &str, name: &str, f: Target, input: &[u8]) -> Result<Outcome, String> {
    catch_unwind(AssertUnwindSafe(|| f(input))).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| e.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        format!("{target}/{name}: panicked: {msg}")
    })
}

#[test]
fn committed_corpus_replays_without_panics() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut failures = Vec::new();
    for (target, f) in TARGETS {
        let mut files: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        let (mut accepted, mut rejected) = (0, 0);
        for path in &files {
            let name = path.file_name().expect("file name").to_string_lossy();
            let input = std::fs::read(path).expect("read corpus file");
            match replay(target, &name, f, &input).and_then(|o| {
                check(target, &name, o)?;
                Ok(o)
            }) {
                Ok(Outcome::Accepted) => accepted += 1,
                Ok(Outcome::Rejected(_)) => rejected += 1,
                Ok(Outcome::Skipped) => {}
                Err(e) => failures.push(e),
            }
        }
        assert!(
            accepted > 0 && rejected > 0,
            "fuzz/corpus/{target}: {accepted} accepted, {rejected} rejected of {}",
            files.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The seed generator (`cargo run -p folio-tests --example fuzz_seeds`) still writes seeds
/// that keep their promise, so a regenerated corpus is as good as the committed one.
#[test]
fn generated_seeds_keep_their_names_promise() {
    let failures: Vec<String> = seeds()
        .into_iter()
        .filter_map(|(target, name, input)| {
            let (_, f) = TARGETS.iter().find(|(t, _)| *t == target)?;
            replay(target, &name, *f, &input)
                .and_then(|o| check(target, &name, o))
                .err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
