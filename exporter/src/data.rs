//! The data step, as nanoGPT's `shakespeare_char/prepare.py` and `get_batch`: find (or
//! download) Tiny Shakespeare, check its sha256, build the character vocabulary, split
//! 90/10 and draw random training windows from a seeded generator.
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// sha256 of karpathy/char-rnn's `data/tinyshakespeare/input.txt` (1,115,394 bytes).
pub const SHA256: &str = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";
/// Where the text comes from when there is no local copy.
pub const URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
/// The file name looked for under `shared/data/`.
pub const FILE_NAME: &str = "tinyshakespeare.txt";

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The text and where it was read from.
pub struct Text {
    /// The whole file, checked against [`SHA256`].
    pub text: String,
    /// The path it was read from.
    pub path: PathBuf,
}

/// Finds the text: `explicit` (`--data`), then `$FOLIO_DATA`, then `shared/data/` beside any
/// ancestor of the current directory (the project checkout's `../shared/data/`), else
/// downloads it with `curl` into the user cache. Every candidate is sha256-checked.
pub fn load_text(explicit: Option<&Path>) -> Result<Text> {
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        // An explicit path is the only place looked: a typo must not fall back silently.
        return read_checked(p).with_context(|| format!("--data {}", p.display()));
    }
    if let Some(p) = std::env::var_os("FOLIO_DATA") {
        let p = PathBuf::from(p);
        return read_checked(&p).with_context(|| format!("FOLIO_DATA={}", p.display()));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join("shared").join("data").join(FILE_NAME));
        }
    }
    let cache = cache_path();
    candidates.extend(cache.clone());
    for c in &candidates {
        if c.is_file() {
            return read_checked(c);
        }
        looked.push(c.display().to_string());
    }
    let Some(cache) = cache else {
        bail!(
            "Tiny Shakespeare not found (looked in: {}), and no cache directory ($XDG_CACHE_HOME or $HOME) to download it into; pass --data PATH or set FOLIO_DATA",
            looked.join(", ")
        );
    };
    download(&cache).with_context(|| {
        format!(
            "Tiny Shakespeare not found locally (looked in: {}) and the download from {URL} failed; pass --data PATH or set FOLIO_DATA",
            looked.join(", ")
        )
    })?;
    read_checked(&cache)
}

/// `$XDG_CACHE_HOME/folio/tinyshakespeare.txt`, else `$HOME/.cache/folio/...`.
fn cache_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("folio").join(FILE_NAME))
}

/// Downloads [`URL`] to `dest` through a temporary file, so a failed download leaves nothing.
fn download(dest: &Path) -> Result<()> {
    let dir = dest.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.part", std::process::id()));
    folio_runtime::note!("downloading {URL} -> {}", dest.display());
    let status = std::process::Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--max-time",
            "60",
            "-o",
        ])
        .arg(&tmp)
        .arg(URL)
        .status();
    let ok = matches!(status, Ok(s) if s.success());
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        match status {
            Ok(s) => bail!("curl exited with {s}"),
            Err(e) => bail!("could not run curl: {e}"),
        }
    }
    let bytes = std::fs::read(&tmp)?;
    let got = sha256_hex(&bytes);
    if got != SHA256 {
        let _ = std::fs::remove_file(&tmp);
        bail!("downloaded file has sha256 {got}, expected {SHA256}");
    }
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

fn read_checked(path: &Path) -> Result<Text> {
    let bytes = crate::input::read_input(path, crate::input::MAX_DATA_BYTES)
        .with_context(|| format!("reading {}", path.display()))?;
    let got = sha256_hex(&bytes);
    if got != SHA256 {
        bail!(
            "{} has sha256 {got}, expected {SHA256} (not the Tiny Shakespeare text)",
            path.display()
        );
    }
    let text =
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(Text {
        text,
        path: path.to_path_buf(),
    })
}

/// Character vocabulary: the sorted distinct characters of the text; token id = index.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    /// One character per token id, sorted.
    pub chars: Vec<char>,
}

impl Vocab {
    /// The sorted distinct characters of `text`.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// True when there is no token.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Token ids of `text`; a character outside the vocabulary is an error.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| match self.chars.binary_search(&c) {
                Ok(i) => Ok(i as u32),
                Err(_) => bail!("character {c:?} is not in the vocabulary"),
            })
            .collect()
    }

    /// Parses format 1's `folio.vocab` (a JSON array of one-character strings); format 2's
    /// is the characters themselves.
    pub fn from_json(s: &str) -> Result<Self> {
        let v: Vec<String> =
            serde_json::from_str(s).context("folio.vocab is not a JSON array of strings")?;
        let mut chars = Vec::with_capacity(v.len());
        for s in v {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => bail!("folio.vocab entry {s:?} is not one character"),
            }
        }
        Ok(Self { chars })
    }
}

/// Which part of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The first 90%.
    Train,
    /// The last 10%.
    Val,
}

/// The tokenised text, split 90/10.
pub struct Dataset {
    /// The vocabulary of the whole text.
    pub vocab: Vocab,
    /// (n_train,) token ids.
    pub train: Vec<u32>,
    /// (n_val,) token ids.
    pub val: Vec<u32>,
    /// sha256 of the source text.
    pub sha256: String,
}

impl Dataset {
    /// Tokenises `text` and splits it: first 90% (`floor(0.9 n)`) train, the rest val.
    pub fn new(text: &str) -> Result<Self> {
        let vocab = Vocab::from_text(text);
        let ids = vocab.encode(text)?;
        let n = ids.len() * 9 / 10;
        Ok(Self {
            sha256: sha256_hex(text.as_bytes()),
            vocab,
            train: ids[..n].to_vec(),
            val: ids[n..].to_vec(),
        })
    }

    /// The token ids of one split.
    pub fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// nanoGPT's `get_batch`: `batch` random windows of `block + 1` tokens; returns
    /// `x` (batch, block) and `y` (batch, block), `y` shifted by one, both int64 on `device`.
    pub fn get_batch(
        &self,
        split: Split,
        rng: &mut Rng,
        batch: usize,
        block: usize,
        device: Device,
    ) -> Result<(Tensor, Tensor)> {
        let data = self.split(split);
        if data.len() <= block + 1 {
            bail!(
                "{split:?} split has {} tokens, fewer than block_size + 1 = {}",
                data.len(),
                block + 1
            );
        }
        let range = (data.len() - block) as u64;
        let mut xs = Vec::with_capacity(batch * block); // (batch, block)
        let mut ys = Vec::with_capacity(batch * block); // (batch, block)
        for _ in 0..batch {
            let i = rng.below(range) as usize;
            xs.extend(data[i..i + block].iter().map(|&t| t as i64));
            ys.extend(data[i + 1..i + block + 1].iter().map(|&t| t as i64));
        }
        let shape = [batch as i64, block as i64];
        let x = Tensor::from_slice(&xs).view(shape).to_device(device);
        let y = Tensor::from_slice(&ys).view(shape).to_device(device);
        debug_assert_eq!(x.kind(), Kind::Int64);
        Ok((x, y))
    }

    /// A fixed, seeded set of `n` val windows of `block + 1` tokens (start offsets): the
    /// windows the quantisation report evaluates every encoding on.
    pub fn fixed_windows(&self, split: Split, n: usize, block: usize, seed: u64) -> Vec<usize> {
        let data = self.split(split);
        let range = data.len().saturating_sub(block).max(1) as u64;
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.below(range) as usize).collect()
    }
}

/// A small seeded generator (SplitMix64) whose whole state is one `u64`, so checkpoints
/// can store it and `--resume` draws the same batches as an uninterrupted run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rng {
    /// The generator state.
    pub state: u64,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let r = self.next_u64();
            if r < zone {
                return r % n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_is_sorted_distinct_and_round_trips() {
        let v = Vocab::from_text("hello, world\n");
        assert_eq!(
            v.chars,
            vec!['\n', ' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
        );
        assert_eq!(v.encode("hold").unwrap(), vec![5, 7, 6, 3]);
        assert!(v.encode("z").is_err());
        assert_eq!(
            Vocab::from_json(r#"[" ", ",", "\n"]"#).unwrap().chars,
            [' ', ',', '\n']
        );
        assert!(Vocab::from_json(r#"["ab"]"#).is_err());
    }

    #[test]
    fn split_is_90_10_and_batches_are_shifted_windows() {
        let text: String = (0..1000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let d = Dataset::new(&text).unwrap();
        assert_eq!((d.train.len(), d.val.len()), (900, 100));
        let mut rng = Rng::new(7);
        let (x, y) = d
            .get_batch(Split::Train, &mut rng, 4, 8, Device::Cpu)
            .unwrap();
        assert_eq!(x.size(), vec![4, 8]);
        // The alphabet repeats, so each target is the next letter of its input.
        let x: Vec<i64> = Vec::try_from(&x.view(-1)).unwrap();
        let y: Vec<i64> = Vec::try_from(&y.view(-1)).unwrap();
        for (a, b) in x.iter().zip(&y) {
            assert_eq!((a + 1) % 26, *b);
        }
    }

    #[test]
    fn rng_is_reproducible_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            let v = a.below(10);
            assert!(v < 10);
            assert_eq!(v, b.below(10));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn wrong_file_is_rejected_with_its_path() {
        let dir = std::env::temp_dir().join(format!("folio-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("not-shakespeare.txt");
        std::fs::write(&p, "to be or not to be").unwrap();
        let err = format!("{:#}", load_text(Some(&p)).err().unwrap());
        assert!(
            err.contains("not-shakespeare.txt") && err.contains("sha256"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
