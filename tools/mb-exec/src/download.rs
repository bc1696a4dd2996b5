//! ADD of URLs: each URL downloaded once into a temporary directory of the store, hashed with
//! SHA-256 as it is written, and checked against `--checksum` when one was given.
//!
//! Without a checksum, the downloads' digests are what the step's key is made of (see
//! [`mb_core::key::step_inputs`]), so the step is keyed only after downloading.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use mb_core::Store;
use sha2::{Digest as _, Sha256};

use crate::error::ExecError;

/// How long a download may stall before it fails.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One downloaded file.
#[derive(Debug)]
pub struct Downloaded {
    /// The URL.
    pub url: String,
    /// The name it gets: the URL's last path segment.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of its content.
    pub digest: String,
}

/// The files of one ADD, kept on disk until dropped.
pub struct Downloads {
    /// In the order of the sources.
    pub files: Vec<Downloaded>,
    _scratch: tempfile::TempDir,
}

impl Downloads {
    /// The digest the step's key takes: SHA-256 over each file's name and digest.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for file in &self.files {
            hasher.update(format!("{} {}\n", file.name, file.digest));
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// The last non-empty path segment of `url`, without query or fragment.
pub fn file_name(url: &str) -> Option<String> {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = without_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split_once('/')
        .map_or("", |(_, path)| path);
    path.rsplit('/')
        .find(|segment| !segment.is_empty() && *segment != "." && *segment != "..")
        .map(str::to_string)
}

/// Downloads every URL of `urls`, checking each against `checksum` when given.
pub fn download_all(
    store: &Store,
    urls: &[String],
    checksum: Option<&str>,
) -> Result<Downloads, ExecError> {
    let scratch = store.temp_dir("download-")?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(TIMEOUT)
        .timeout_read(TIMEOUT)
        .build();
    let mut files = Vec::new();
    for (url_idx, url) in urls.iter().enumerate() {
        let failed = |reason: String| ExecError::Download {
            url: url.clone(),
            reason,
        };
        let name = file_name(url)
            .ok_or_else(|| failed("the URL has no file name to give the download".into()))?;
        let response = agent
            .get(url)
            .call()
            .map_err(|error| failed(error.to_string()))?;
        let path = scratch.path().join(format!("{url_idx}"));
        let mut file = File::create(&path).map_err(ExecError::io(&path))?;
        let mut hasher = Sha256::new();
        let mut reader = response.into_reader();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n_read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => n_read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(failed(error.to_string())),
            };
            hasher.update(&buffer[..n_read]);
            file.write_all(&buffer[..n_read])
                .map_err(ExecError::io(&path))?;
            size += n_read as u64;
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(expected) = checksum {
            if expected != digest {
                return Err(ExecError::ChecksumMismatch {
                    url: url.clone(),
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        files.push(Downloaded {
            url: url.clone(),
            name,
            path,
            size,
            digest,
        });
    }
    Ok(Downloads {
        files,
        _scratch: scratch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_named_after_the_last_path_segment() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz?x=1").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(file_name("http://example.com/dir/").as_deref(), Some("dir"));
        assert_eq!(file_name("http://example.com").as_deref(), None);
    }
}
