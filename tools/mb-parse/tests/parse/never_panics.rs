//! The parser never panics: it runs over the fuzz corpus (`fuzz/corpus/parse/`) and over
//! inputs made by mutating the Dockerfile corpus with a small deterministic generator, so every
//! `cargo test` does a bounded bit of what `cargo fuzz run parse` does at length.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use mb_core::graph::Platform;
use mb_parse::{build_graph, NoBaseImages, Options};

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Parses `bytes` as a Dockerfile (when UTF-8) with every stage expanded; returns whether it
/// panicked.
fn panics(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut options = Options::new("Dockerfile", Platform::host());
    options.all_stages = true;
    catch_unwind(AssertUnwindSafe(|| {
        let _ = build_graph(text, &options, &mut NoBaseImages);
    }))
    .is_err()
}

/// xorshift64*: deterministic, so a failure is reproducible from the seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % (bound.max(1) as u64)).unwrap_or_default()
    }
}

/// Pieces that matter to the lexer, flags, heredocs and expansion.
const PIECES: &[&str] = &[
    "\\",
    "`",
    "\n",
    "\r\n",
    " ",
    "\t",
    "$",
    "${",
    "}",
    ":-",
    "#",
    "%",
    "/",
    "<<",
    "<<-",
    "\"",
    "'",
    "[",
    "]",
    ",",
    "=",
    "--",
    "--mount=",
    "type=cache",
    "from=0",
    "AS ",
    "FROM ",
    "RUN ",
    "COPY ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "ARG ",
    "ENV ",
    "EOF",
    "\u{feff}",
    "é",
    "\0",
    "0",
    "# escape=`\n",
];

fn mutate(input: &[u8], random: &mut Random) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + random.below(4) {
        let at = random.below(bytes.len() + 1);
        match random.below(5) {
            0 => {
                let piece = PIECES[random.below(PIECES.len())].as_bytes();
                bytes.splice(at..at, piece.iter().copied());
            }
            1 => {
                let end = (at + random.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + random.below(64)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = random.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            3 => bytes.truncate(at),
            _ => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = u8::try_from(random.below(128)).unwrap_or(b'x');
                }
            }
        }
    }
    bytes
}

#[test]
fn the_fuzz_corpus_never_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let files = files_in(&dir);
    assert!(!files.is_empty(), "no fuzz corpus in {}", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!panics(&bytes), "{} panics", file.display());
    }
}

#[test]
fn mutated_dockerfiles_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Vec<Vec<u8>> = files_in(&root.join("tests/fixtures/corpus"))
        .into_iter()
        .chain(files_in(&root.join("fuzz/corpus/parse")))
        .filter_map(|path| std::fs::read(path).ok())
        .collect();
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut tried = 0;
    for seed in &seeds {
        let mut input = seed.clone();
        for round in 0..300 {
            // Mostly fresh mutations of the seed, sometimes mutations of mutations.
            if round % 4 != 0 {
                input = seed.clone();
            }
            input = mutate(&input, &mut random);
            assert!(
                !panics(&input),
                "panic on input {:?}",
                String::from_utf8_lossy(&input)
            );
            tried += 1;
        }
    }
    assert!(tried > 5_000, "only {tried} inputs tried");
}

#[test]
fn random_pieces_never_panic() {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for _ in 0..5_000 {
        let mut input = String::new();
        for _ in 0..1 + random.below(40) {
            input.push_str(PIECES[random.below(PIECES.len())]);
        }
        assert!(!panics(input.as_bytes()), "panic on input {input:?}");
    }
}
