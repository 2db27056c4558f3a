//! Opening a model file (std only): memory-mapped and read in place, or read into memory.
//!
//! Only regular files are opened: the type is checked on the path before opening and again
//! on the opened handle, and the open itself does not block (`O_NONBLOCK`), so a FIFO, a
//! device or a directory is a clear error instead of a hang or an `ENODEV` from `mmap`.
//!
//! # The mmap contract
//!
//! [`MappedModel::open`] maps the file: nothing is copied and the pages are shared with the
//! page cache. The file must not be modified or truncated while it is mapped: a write shows
//! through into the weights, and a truncation makes the next read of a vanished page a
//! `SIGBUS` that kills the process. For a file that may change (being rewritten, on a network
//! share), [`MappedModel::read`] copies it into an 8-byte aligned buffer instead (`folio
//! --no-mmap`); later changes to the file then have no effect.
use crate::{Error, Model};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::{format, vec::Vec};

/// A model file's bytes: a read-only memory map, or an aligned copy.
#[derive(Debug)]
pub struct MappedModel {
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    /// Page aligned, so the 4-byte rule always holds.
    Map(memmap2::Mmap),
    /// `len` bytes at the start of `words` (8-byte aligned).
    Owned { words: Vec<u64>, len: usize },
}

impl MappedModel {
    /// Map the regular file at `path` read-only (see the module docs for the contract).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let (file, _) = open_regular(path.as_ref())?;
        // SAFETY: the map is read-only and private to this process; the documented contract
        // (module docs, README) is that the file is not changed while mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MappedModel {
            bytes: Bytes::Map(map),
        })
    }

    /// Read the regular file at `path` into an aligned buffer of its own. A file longer than
    /// `max_bytes` is refused before anything is allocated (`ErrorKind::OutOfMemory`), and a
    /// file whose length changes while it is read is an error.
    pub fn read(path: impl AsRef<Path>, max_bytes: u64) -> io::Result<Self> {
        let (mut file, len) = open_regular(path.as_ref())?;
        if len > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("the file is {len} bytes, more than the {max_bytes} bytes allowed"),
            ));
        }
        let too_big = || io::Error::new(io::ErrorKind::OutOfMemory, "the file does not fit memory");
        let len = usize::try_from(len).map_err(|_| too_big())?;
        let mut words: Vec<u64> = Vec::new();
        words
            .try_reserve_exact(len.div_ceil(8))
            .map_err(|_| too_big())?;
        words.resize(len.div_ceil(8), 0);
        let changed = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the file changed while it was read",
            )
        };
        let buf = bytemuck::cast_slice_mut::<u64, u8>(&mut words)
            .get_mut(..len)
            .ok_or_else(too_big)?;
        file.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => changed(),
            _ => e,
        })?;
        if file.read(&mut [0u8; 1])? != 0 {
            return Err(changed());
        }
        Ok(MappedModel {
            bytes: Bytes::Owned { words, len },
        })
    }

    /// True when the bytes are a memory map of the file (not a copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Map(_))
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Map(map) => map,
            Bytes::Owned { words, len } => bytemuck::cast_slice::<u64, u8>(words)
                .get(..*len)
                .unwrap_or(&[]),
        }
    }

    /// Validate and view the model.
    pub fn model(&self) -> Result<Model<'_>, Error> {
        Model::from_bytes(self.bytes())
    }
}

/// Open `path` for reading if it is a regular file (checked on the path, then on the handle,
/// with a non-blocking open in between), and return it with its length. Every std reader of
/// the project's input files (models, the dataset, checkpoints) opens through here.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    require_regular(&std::fs::metadata(path)?)?;
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Swapped for a FIFO after the check above, the open still returns at once.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    require_regular(&meta)?;
    Ok((file, meta.len()))
}

/// `Ok` for a regular file, else an `InvalidInput` error naming what the path is.
pub fn require_regular(meta: &Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = file_kind(meta);
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {kind}, not a regular file"),
    ))
}

/// What a non-regular file is, in words ("a directory", "a FIFO", ...).
pub fn file_kind(meta: &Metadata) -> &'static str {
    let ft = meta.file_type();
    if ft.is_file() {
        return "a regular file";
    }
    if ft.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build, SMALL};
    use std::path::PathBuf;

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
        let bytes = build(&SMALL);
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
}
