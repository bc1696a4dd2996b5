//! The context section: what mb-hash found in the build context for each COPY/ADD.
//!
//! A selection lists every entry a COPY or ADD picks from the context, with the name it gets
//! under the destination, so mb-exec copies exactly what was fingerprinted and mb-plan can say
//! which files changed between two builds.

use serde::{Deserialize, Serialize};

/// Fingerprints of the build context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSection {
    /// The context directory, absolute (not part of any key: moving a checkout keeps digests).
    pub root: String,
    /// The ignore file used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_file: Option<String>,
    /// Files in the context after exclusions.
    pub n_files: u64,
    /// Their total size in bytes.
    pub n_bytes: u64,
    /// Files whose content was read and hashed in this run.
    pub n_read: u64,
    /// Files whose hash came from the stat cache.
    pub n_cached: u64,
    /// One selection per COPY/ADD from the context.
    pub selections: Vec<Selection>,
}

impl ContextSection {
    /// The selection of the COPY/ADD `instruction` of stage `stage`.
    pub fn selection(&self, stage: usize, instruction: usize) -> Option<&Selection> {
        self.mount_selection(stage, instruction, None)
    }

    /// The selection of bind mount `mount` of a RUN, or with None of a COPY/ADD.
    pub fn mount_selection(
        &self,
        stage: usize,
        instruction: usize,
        mount: Option<usize>,
    ) -> Option<&Selection> {
        self.selections.iter().find(|selection| {
            selection.stage == stage
                && selection.instruction == instruction
                && selection.mount == mount
        })
    }
}

/// What one COPY/ADD selects from the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The stage index of the instruction.
    pub stage: usize,
    /// The instruction's index within its stage.
    pub instruction: usize,
    /// For a `RUN --mount=type=bind` from the context: the mount's index among the RUN's
    /// mounts. None for COPY and ADD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<usize>,
    /// The BLAKE3 digest over the entries (names, types, modes, contents, link targets).
    pub digest: String,
    /// Regular files selected.
    pub n_files: u64,
    /// Their total size in bytes.
    pub n_bytes: u64,
    /// Every selected entry, sorted by `name`.
    pub entries: Vec<Entry>,
}

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, copied as a link.
    Symlink,
}

/// One entry of a selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path relative to the context root, `/`-separated.
    pub source: String,
    /// The path it gets relative to the COPY destination: the part below a source directory,
    /// or the file name for a file source. Empty when the destination is the file itself.
    pub name: String,
    /// File, directory or symlink.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` part of st_mode).
    pub mode: u32,
    /// Size in bytes (0 for directories and links).
    #[serde(default)]
    pub size: u64,
    /// BLAKE3 of the content, for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The link target, for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
