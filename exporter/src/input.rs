//! The files the exporter reads (the dataset, checkpoints, masters): regular files only,
//! opened without blocking (a FIFO or `/dev/zero` fails at once), and no longer than a cap.
//! A leaf: `data` reads the dataset through it and `validate` the checkpoints.
use anyhow::{bail, Result};
use folio_runtime::cli::printable;
use folio_runtime::file::open_regular;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest `--data` file read: the dataset is sha-pinned at 1,115,394 bytes.
pub const MAX_DATA_BYTES: u64 = 64 << 20;

/// `path` as shown in messages (control characters escaped).
pub fn shown(path: &Path) -> String {
    printable(path.display().to_string().chars())
}

/// Open the regular file `path` and check its length is at most `max` bytes. Returns the
/// open file and its length. Messages do not repeat the path (callers add it as context).
pub fn input_file(path: &Path, max: u64) -> Result<(File, u64)> {
    let (file, len) = open_regular(path)?;
    if len > max {
        bail!("it is {len} bytes, more than the {max} bytes accepted");
    }
    Ok((file, len))
}

/// Read the regular file `path` whole, at most `max` bytes (see [`input_file`]).
pub fn read_input(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (file, len) = input_file(path, max)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // Bounded even if the file grows while it is read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        bail!("it grew past {max} bytes while being read");
    }
    Ok(bytes)
}
