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
//! --no-mmap`); later changes to the file then have no effect. A map whose data section
//! would be misaligned is copied into an [`AlignedCopy`].

use crate::{Error, Model};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::vec::Vec;
use std::{format, vec};

/// File bytes copied so that the data section (at `8 + header length`) is 8-byte aligned.
///
/// A valid safetensors file need not pad its header to a multiple of 8; [`Model::from_bytes`]
/// views tensors in place and refuses misaligned data ([`Error::DataMisaligned`]), so std
/// callers copy such files with this.
#[derive(Clone, Debug)]
pub struct AlignedCopy {
    words: Vec<u64>,
    offset: usize,
    len: usize,
}

impl AlignedCopy {
    /// Copy `bytes` (the file start is 8-byte aligned when the length prefix is unreadable).
    pub fn new(bytes: &[u8]) -> Self {
        let offset = ((8 - data_start(bytes) % 8) % 8) as usize;
        let mut words = vec![0u64; (bytes.len() + offset).div_ceil(8)];
        let all: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        if let Some(dst) = all.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        AlignedCopy {
            words,
            offset,
            len: bytes.len(),
        }
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        let all: &[u8] = bytemuck::cast_slice(&self.words);
        all.get(self.offset..self.offset + self.len).unwrap_or(&[])
    }
}

/// `8 + header length` (wrapping), 0 when there is no length prefix.
fn data_start(bytes: &[u8]) -> u64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |n| u64::from_le_bytes(*n).wrapping_add(8))
}

/// A model file's bytes: a read-only memory map, or an aligned copy.
#[derive(Debug)]
pub struct MappedModel {
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    /// The file in place (its data section 8-byte aligned).
    Map(memmap2::Mmap),
    /// A copy whose data section is 8-byte aligned.
    Copy(AlignedCopy),
}

impl MappedModel {
    /// Map the regular file at `path` read-only (see the module docs for the contract).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let (file, _) = open_regular(path.as_ref())?;
        // SAFETY: the map is read-only and private to this process; the documented contract
        // (module docs, README) is that the file is not changed while mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let skew = (map.as_ptr() as u64).wrapping_add(data_start(&map)) % 8;
        let bytes = match skew {
            0 => Bytes::Map(map),
            _ => Bytes::Copy(AlignedCopy::new(&map)),
        };
        Ok(MappedModel { bytes })
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
        let copy = AlignedCopy {
            words,
            offset: 0,
            len,
        };
        let copy = match data_start(copy.bytes()) % 8 {
            0 => copy,
            _ => AlignedCopy::new(copy.bytes()),
        };
        Ok(MappedModel {
            bytes: Bytes::Copy(copy),
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
            Bytes::Copy(copy) => copy.bytes(),
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
    #[cfg(unix)]
    use std::os::unix::fs::FileTypeExt;
    #[cfg(unix)]
    let special: [(bool, &str); 4] = [
        (ft.is_fifo(), "a FIFO (named pipe)"),
        (ft.is_socket(), "a socket"),
        (ft.is_char_device(), "a character device"),
        (ft.is_block_device(), "a block device"),
    ];
    #[cfg(not(unix))]
    let special: [(bool, &str); 0] = [];
    let kinds = [
        (ft.is_file(), "a regular file"),
        (ft.is_dir(), "a directory"),
    ];
    let found = kinds.into_iter().chain(special).find(|k| k.0);
    found.map_or("a special file", |k| k.1)
}
