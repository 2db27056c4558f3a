//! Opening a model file (std only): memory-mapped, read in place.
use crate::{Error, Model};
use std::fs::File;
use std::path::Path;

/// A model file mapped into memory (page aligned, so the 4-byte rule always holds).
#[derive(Debug)]
pub struct MappedModel {
    map: memmap2::Mmap,
}

impl MappedModel {
    /// Map `path` read-only.
    ///
    /// The file must not be modified or truncated while it is mapped (the usual mmap
    /// contract); folio only reads it.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private to this process; the documented contract
        // is that the file is not changed while mapped.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MappedModel { map })
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Validate and view the model.
    pub fn model(&self) -> Result<Model<'_>, Error> {
        Model::from_bytes(&self.map)
    }
}
