//! The stat cache: unchanged files are not read again, and nothing it skips changes a digest.

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::{graph, selection_digest, Sandbox, TestResult};

fn set_mtime(path: &Path, mtime: SystemTime) -> Result<(), Box<dyn Error>> {
    fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(mtime)?;
    Ok(())
}

/// A context whose files were last written an hour ago, so that none is racily clean.
fn settled_fixture() -> Result<Sandbox, Box<dyn Error>> {
    let sandbox = Sandbox::new()?;
    sandbox
        .write("app/main.sh", "#!/bin/sh\necho hi\n", 0o755)?
        .write("app/lib/util.sh", "util\n", 0o644)?
        .write("README.md", "readme\n", 0o644)?;
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for file in ["app/main.sh", "app/lib/util.sh", "README.md"] {
        set_mtime(&sandbox.context().join(file), an_hour_ago)?;
    }
    Ok(sandbox)
}

fn counts(context: &serde_json::Value) -> (u64, u64) {
    (
        context["n_read"].as_u64().unwrap_or(u64::MAX),
        context["n_cached"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn the_second_run_takes_unchanged_files_from_the_cache() -> TestResult {
    let sandbox = settled_fixture()?;
    let document = graph(&[(&["."], "/srv/"), (&["app"], "/app/")])?;
    let first = sandbox.hash(&document)?;
    assert_eq!(counts(&first), (3, 0));
    let second = sandbox.hash(&document)?;
    assert_eq!(counts(&second), (0, 3));
    assert_eq!(second["selections"], first["selections"]);
    assert_eq!(second["n_files"], 3);
    Ok(())
}

#[test]
fn a_touched_file_is_read_again_and_keeps_its_digest() -> TestResult {
    let sandbox = settled_fixture()?;
    let document = graph(&[(&["."], "/srv/")])?;
    let before = sandbox.hash(&document)?;
    set_mtime(
        &sandbox.context().join("app/lib/util.sh"),
        SystemTime::now() - Duration::from_secs(1800),
    )?;
    let after = sandbox.hash(&document)?;
    assert_eq!(counts(&after), (1, 2));
    assert_eq!(selection_digest(&after, 0)?, selection_digest(&before, 0)?);
    Ok(())
}

#[test]
fn a_same_size_rewrite_with_the_old_mtime_is_still_caught() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("data", "aaaa", 0o644)?;
    let path = sandbox.context().join("data");
    let document = graph(&[(&["data"], "/data")])?;
    let mtime = fs::metadata(&path)?.modified()?;
    let before = sandbox.hash(&document)?;
    // Same size, and the mtime the cache recorded: only the racy rule (the entry is as new as
    // the cache) or the ctime can tell.
    fs::write(&path, "bbbb")?;
    set_mtime(&path, mtime)?;
    assert_eq!(fs::metadata(&path)?.modified()?, mtime);
    let after = sandbox.hash(&document)?;
    assert_eq!(counts(&after), (1, 0));
    assert_ne!(selection_digest(&after, 0)?, selection_digest(&before, 0)?);
    assert_eq!(
        after["selections"][0]["entries"][0]["digest"],
        blake3::hash(b"bbbb").to_hex().as_str()
    );
    Ok(())
}

#[test]
fn a_moved_checkout_has_the_same_digests_and_its_own_cache() -> TestResult {
    let sandbox = settled_fixture()?;
    let document = graph(&[(&["."], "/srv/")])?;
    sandbox.hash(&document)?;
    let here = sandbox.hash(&document)?;
    assert_eq!(counts(&here), (0, 3));
    let elsewhere = sandbox.path("moved/ctx");
    fs::create_dir_all(sandbox.path("moved"))?;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(sandbox.context())
        .arg(&elsewhere)
        .status()?;
    assert!(copied.success());
    let there = sandbox.hash_context(&elsewhere, &document)?;
    assert_eq!(counts(&there), (3, 0));
    assert_eq!(selection_digest(&there, 0)?, selection_digest(&here, 0)?);
    assert_eq!(
        counts(&sandbox.hash_context(&elsewhere, &document)?),
        (0, 3)
    );
    Ok(())
}

#[test]
fn a_mode_change_changes_the_digest() -> TestResult {
    let sandbox = settled_fixture()?;
    let document = graph(&[(&["app"], "/app/")])?;
    sandbox.hash(&document)?;
    let cached = sandbox.hash(&document)?;
    assert_eq!(counts(&cached), (0, 2));
    fs::set_permissions(
        sandbox.context().join("app/main.sh"),
        fs::Permissions::from_mode(0o700),
    )?;
    let after = sandbox.hash(&document)?;
    assert_ne!(selection_digest(&after, 0)?, selection_digest(&cached, 0)?);
    assert_eq!(after["selections"][0]["entries"][2]["mode"], 0o700);
    Ok(())
}

#[test]
fn a_damaged_cache_is_ignored_and_rebuilt() -> TestResult {
    let sandbox = settled_fixture()?;
    let document = graph(&[(&["."], "/srv/")])?;
    let first = sandbox.hash(&document)?;
    let cache_dir = sandbox.store().join("stat-cache");
    let cache_files: Vec<_> = fs::read_dir(&cache_dir)?.collect::<Result<_, _>>()?;
    assert_eq!(cache_files.len(), 1);
    let cache_file = cache_files[0].path();
    let mut bytes = fs::read(&cache_file)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&cache_file, &bytes)?;
    let damaged = sandbox.hash(&document)?;
    assert_eq!(counts(&damaged), (3, 0));
    assert_eq!(selection_digest(&damaged, 0)?, selection_digest(&first, 0)?);
    fs::write(&cache_file, b"not a cache at all")?;
    assert_eq!(counts(&sandbox.hash(&document)?), (3, 0));
    assert_eq!(counts(&sandbox.hash(&document)?), (0, 3));
    Ok(())
}

#[test]
fn the_tree_manifest_counts_reads_and_cache_hits() -> TestResult {
    let sandbox = settled_fixture()?;
    let run = || -> Result<serde_json::Value, Box<dyn Error>> {
        let output = sandbox.mb_hash(&["ctx"], "");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    let first = run()?;
    let second = run()?;
    assert_eq!(counts(&first), (3, 0));
    assert_eq!(counts(&second), (0, 3));
    assert_eq!(first["digest"], second["digest"]);
    Ok(())
}

/// A file written just before a run has a stat the next run cannot trust: were it rewritten in
/// the same timestamp tick, with the same size, its stat would not change. So it is read again
/// until a run that started more than the racy window after the write has recorded it. Without
/// the rule the second run would take it from the cache.
#[test]
fn a_file_written_within_the_racy_window_is_read_again_until_it_settles() -> TestResult {
    let sandbox = Sandbox::new()?;
    sandbox.write("fresh", "fresh\n", 0o644)?;
    let document = graph(&[(&["fresh"], "/fresh")])?;
    assert_eq!(counts(&sandbox.hash(&document)?), (1, 0));
    // Immediately again: racily clean, read again.
    assert_eq!(counts(&sandbox.hash(&document)?), (1, 0));
    let window = Duration::from_nanos(mb_hash::statcache::RACY_WINDOW_NS.unsigned_abs());
    std::thread::sleep(window + Duration::from_millis(200));
    // The cache was written by a run within the window of the write: read once more, and
    // recorded by this run, which started after the window.
    assert_eq!(counts(&sandbox.hash(&document)?), (1, 0));
    assert_eq!(counts(&sandbox.hash(&document)?), (0, 1));
    assert_eq!(counts(&sandbox.hash(&document)?), (0, 1));
    Ok(())
}
