//! Write the fuzz seed corpus (`folio_tests::fuzz::seeds`) to `fuzz/corpus/<target>/`:
//! `cargo run -p folio-tests --example fuzz_seeds [DIR]`.
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"),
        PathBuf::from,
    );
    for (target, name, bytes) in folio_tests::fuzz::seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&name), &bytes)?;
        println!("{target}/{name}: {} bytes", bytes.len());
    }
    Ok(())
}
