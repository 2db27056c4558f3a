//! `MappedModel` on real files: mapping and reading give the same model, and special files
//! (directories, FIFOs, devices) are refused before anything can block.
use folio_runtime::file::MappedModel;
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use std::io;
use std::path::PathBuf;

fn small_file() -> Vec<u8> {
    FixtureSpec::new(
        Config::new(8, 32, 4, 2).vocab(29),
        Plan::All(Encoding::F32),
        4,
    )
    .to_bytes()
}

/// A fresh directory for one test.
fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("folio-file-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn read_and_map_give_the_same_model() {
    let dir = tmp("read");
    let path = dir.join("small.safetensors");
    let bytes = small_file();
    std::fs::write(&path, &bytes).unwrap();
    let mapped = MappedModel::open(&path).unwrap();
    let read = MappedModel::read(&path, u64::MAX).unwrap();
    assert!(mapped.is_mapped() && !read.is_mapped());
    assert_eq!(mapped.bytes(), &bytes[..]);
    assert_eq!(read.bytes(), &bytes[..]);
    assert_eq!(read.bytes().as_ptr().align_offset(8), 0);
    assert_eq!(
        read.model().unwrap().config(),
        mapped.model().unwrap().config()
    );
    let e = MappedModel::read(&path, bytes.len() as u64 - 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::OutOfMemory, "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn special_files_are_refused_before_blocking() {
    let dir = tmp("special");
    let mut cases = vec![(dir.clone(), "a directory")];
    #[cfg(unix)]
    {
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            cases.push((fifo, "a FIFO"));
        }
        cases.push((PathBuf::from("/dev/zero"), "a character device"));
    }
    for (path, what) in cases {
        for e in [
            MappedModel::open(&path).unwrap_err(),
            MappedModel::read(&path, u64::MAX).unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{}", path.display());
            assert!(e.to_string().contains(what), "{e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
