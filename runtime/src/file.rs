//! Opening a model file (std only): memory-mapped and read in place, or copied when the
//! map would leave the tensor data misaligned.
use crate::{Error, Model};
use std::fs::File;
use std::path::Path;
use std::vec;
use std::vec::Vec;

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

/// A model file mapped into memory, or copied when its data section would be misaligned.
#[derive(Debug)]
pub struct MappedModel {
    map: memmap2::Mmap,
    copy: Option<AlignedCopy>,
}

impl MappedModel {
    /// Map `path` read-only; a file whose header length leaves the data section
    /// misaligned in the (page aligned) map is copied into an [`AlignedCopy`].
    ///
    /// The file must not be modified or truncated while it is mapped (the usual mmap
    /// contract); folio only reads it.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private to this process; the documented contract
        // is that the file is not changed while mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let skew = (map.as_ptr() as u64).wrapping_add(data_start(&map)) % 8;
        let copy = (skew != 0).then(|| AlignedCopy::new(&map));
        Ok(MappedModel { map, copy })
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        self.copy.as_ref().map_or(&self.map, AlignedCopy::bytes)
    }

    /// Validate and view the model.
    pub fn model(&self) -> Result<Model<'_>, Error> {
        Model::from_bytes(self.bytes())
    }
}
