//! Stopping while a layer is written, for a large COPY and for a RUN's large change: SIGTERM
//! ends the writing within a read of the file being written (not at the end of the file or the
//! step), exits 143 and leaves no result, blob, temporary file or mount behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mb_core::context::Entry;
use mb_core::plan::{Action, CopyInput};
use mb_core::Document;

use crate::harness::*;

/// One file that takes far longer than [`STOP_WITHIN`] to write into a layer on any machine
/// (minutes at several GB/s), made sparse so that it costs no disk space or time to create.
const HUGE_FILE_SIZE: u64 = 1 << 40;

/// How long a stop may take once signalled. A stop checked at every read takes milliseconds;
/// one checked only after the file or the layer would take minutes here.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Whether a regular file directly in `dir` has content: a layer's blob being written, past the
/// first bytes of the files it copies.
fn blob_growing_in(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.metadata().ok())
            .any(|metadata| metadata.is_file() && metadata.len() > 0)
    })
}

fn n_blobs(store: &Path) -> usize {
    fs::read_dir(store.join("blobs/sha256")).map_or(0, |entries| entries.count())
}

#[test]
fn sigterm_during_a_large_copy_stops_inside_the_file_and_stores_nothing() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(&context)?;
    fs::File::create(context.join("huge.bin"))?.set_len(HUGE_FILE_SIZE)?;
    let mut document = fixture.one_step(
        "COPY huge.bin /huge.bin",
        Action::Copy {
            input: CopyInput::Context {
                digest: "huge".into(),
            },
            sources: vec!["huge.bin".to_string()],
            destination: "/huge.bin".to_string(),
            chown: None,
            chmod: None,
            link: false,
            unpack_archives: false,
            heredocs: vec![],
        },
    );
    document.context = Some(one_file_context(
        &context,
        (0, 2, None),
        "huge",
        Entry {
            // Digesting 1 TiB here would take longer than the copy is meant to run.
            digest: None,
            size: HUGE_FILE_SIZE,
            ..context_file("huge.bin", "", 0o644, b"")
        },
    ));
    sigterm_once_the_blob_grows(&fixture, &document)
}

#[test]
fn sigterm_while_a_run_s_change_is_written_stops_inside_the_file_and_stores_nothing() -> TestResult
{
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = fixture.one_step(
        "RUN busybox truncate -s 16G /huge.bin",
        shell(&format!("busybox truncate -s {HUGE_FILE_SIZE} /huge.bin")),
    );
    sigterm_once_the_blob_grows(&fixture, &document)
}

/// Runs mb-exec on `document`, sends SIGTERM once the layer blob it writes has content, and
/// checks that it stopped there and left nothing behind.
fn sigterm_once_the_blob_grows(fixture: &Fixture, document: &Document) -> TestResult {
    let store = fixture.store.root().to_path_buf();
    let n_blobs_before = n_blobs(&store);
    let mut child = fixture.spawn_exec(document)?;
    // mb-exec prints no line when a step starts unless stderr is a terminal; compressed bytes
    // in the blob it writes in tmp/ are the sign that the copy is inside the file. A stop then
    // must end it there: checked only between files, the copy would run to its end and store
    // its result.
    let waiting_since = Instant::now();
    while !blob_growing_in(&store.join("tmp")) {
        if child.try_wait()?.is_some() || waiting_since.elapsed() > Duration::from_secs(120) {
            let output = child.wait_with_output()?;
            return Err(format!("no layer was being written: {output:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let signalled = Instant::now();
    while child.try_wait()?.is_none() {
        if signalled.elapsed() > STOP_WITHIN {
            child.kill()?;
            let output = child.wait_with_output()?;
            return Err(format!(
                "still writing the layer {STOP_WITHIN:?} after SIGTERM: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert_eq!(
        fixture.n_results(),
        0,
        "the layer was written to its end: {stderr}"
    );
    assert!(stderr.contains("interrupted by signal 15"), "{stderr}");
    assert_eq!(n_blobs(&store), n_blobs_before);
    let leftovers: Vec<_> = fs::read_dir(store.join("tmp"))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .collect();
    assert_eq!(leftovers, Vec::<PathBuf>::new());
    assert_eq!(mounts_under(&store), Vec::<String>::new());
    Ok(())
}
