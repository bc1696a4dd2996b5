//! sha256 content digests (`sha256:<hex>`) as the OCI specs use them, and a writer that computes
//! one while bytes pass through it, so that a blob is hashed in the same pass that writes it.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::CoreError;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 hex digits without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl FromStr for Digest {
    type Err = CoreError;

    fn from_str(text: &str) -> Result<Digest, CoreError> {
        let hex_part = text
            .strip_prefix("sha256:")
            .ok_or_else(|| CoreError::BadDigest(text.to_string()))?;
        let valid = hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(CoreError::BadDigest(text.to_string()));
        }
        Ok(Digest(text.to_string()))
    }
}

impl TryFrom<String> for Digest {
    type Error = CoreError;
    fn try_from(text: String) -> Result<Digest, CoreError> {
        text.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Passes writes through to an inner writer while hashing them with sha256 and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    n_bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            n_bytes: 0,
        }
    }

    /// Returns the inner writer, the digest of everything written, and its length.
    pub fn finish(self) -> (W, Digest, u64) {
        let digest = Digest(format!("sha256:{}", hex::encode(self.hasher.finalize())));
        (self.inner, digest, self.n_bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n_written = self.inner.write(buf)?;
        self.hasher.update(&buf[..n_written]);
        self.n_bytes += n_written as u64;
        Ok(n_written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads from an inner reader while hashing, and fails at end of input when the bytes do not
/// match the expected digest, so a consumer never silently accepts corrupt content.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Digest,
}

impl<R: io::Read> VerifyingReader<R> {
    /// Wraps `inner`, which must produce exactly the bytes of `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            expected,
        }
    }
}

impl<R: io::Read> io::Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n_read = self.inner.read(buf)?;
        if n_read == 0 && !buf.is_empty() {
            let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if actual != self.expected.as_str() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CoreError::DigestMismatch {
                        expected: self.expected.to_string(),
                        actual,
                    },
                ));
            }
        }
        self.hasher.update(&buf[..n_read]);
        Ok(n_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parsing_rejects_malformed_digests() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Digest>()
                .is_err()
        );
        assert!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
                .parse::<Digest>()
                .is_err()
        );
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() -> io::Result<()> {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"hello ")?;
        writer.write_all(b"world")?;
        let (bytes, digest, n_bytes) = writer.finish();
        assert_eq!(digest, Digest::of(b"hello world"));
        assert_eq!(n_bytes, 11);
        assert_eq!(bytes, b"hello world");
        Ok(())
    }

    #[test]
    fn verifying_reader_rejects_wrong_content() {
        let mut reader = VerifyingReader::new(&b"tampered"[..], Digest::of(b"original"));
        let mut sink = Vec::new();
        let error = reader.read_to_end(&mut sink).err();
        assert_eq!(error.map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
        let mut reader = VerifyingReader::new(&b"original"[..], Digest::of(b"original"));
        assert!(reader.read_to_end(&mut sink).is_ok());
    }
}
