//! ADD and the COPY forms without a container: archives unpacked, URLs downloaded and checked,
//! heredocs, `--from` an image, `--link`, zstd layers, and WORKDIR owned by the user.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;

use mb_core::graph::Heredoc;
use mb_core::plan::{Action, CopyInput};
use predicates::str::contains;
use sha2::Digest as _;

use crate::harness::*;

fn add(input: CopyInput, sources: &[&str], destination: &str) -> Action {
    Action::Copy {
        input,
        sources: sources.iter().map(|source| source.to_string()).collect(),
        destination: destination.to_string(),
        chown: None,
        chmod: None,
        link: false,
        unpack_archives: true,
        heredocs: vec![],
    }
}

/// Serves `body` to every request on 127.0.0.1 from a thread; returns the port.
fn serve(body: &'static [u8]) -> Result<u16, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    Ok(port)
}

#[test]
fn add_unpacks_archives_by_content_and_downloads_urls_with_checksums() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(&context)?;
    // A gzip tar archive with a name that does not say so.
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    builder.append_data(&mut header, "tool/run.sh", &b"echo!\n"[..])?;
    let archive = builder.into_inner()?.finish()?;
    fs::write(context.join("bundle.bin"), &archive)?;

    static BODY: &[u8] = b"downloaded content\n";
    let port = serve(BODY)?;
    let url = format!("http://127.0.0.1:{port}/files/notes.txt?version=2");
    let checksum = format!("sha256:{}", hex::encode(sha2::Sha256::digest(BODY)));
    let steps = vec![
        pending(
            0,
            0,
            2,
            "ADD bundle.bin /opt/",
            add(
                CopyInput::Context {
                    digest: "archive".into(),
                },
                &["bundle.bin"],
                "/opt/",
            ),
        ),
        pending(
            1,
            0,
            3,
            "ADD --checksum=... URL /downloads/",
            add(
                CopyInput::Url {
                    checksum: Some(checksum),
                },
                &[url.as_str()],
                "/downloads/",
            ),
        ),
        pending(
            2,
            0,
            4,
            "ADD URL /unchecked.txt",
            add(
                CopyInput::Url { checksum: None },
                &[url.as_str()],
                "/unchecked.txt",
            ),
        ),
    ];
    let mut document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1, 2], vec![])],
        steps,
    );
    document.context = Some(one_file_context(
        &context,
        (0, 2, None),
        "archive",
        context_file("bundle.bin", "bundle.bin", 0o644, &archive),
    ));
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    let unpacked = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(
        unpacked.get("opt/tool/run.sh").map(String::as_str),
        Some("echo!\n")
    );
    assert!(!unpacked.contains_key("opt/bundle.bin"), "{unpacked:?}");
    let downloaded = fixture.layer_entries(&result.steps[1].layer)?;
    assert_eq!(
        downloaded.get("downloads/notes.txt").map(String::as_str),
        Some("downloaded content\n")
    );
    let unchecked = fixture.layer_entries(&result.steps[2].layer)?;
    assert!(unchecked.contains_key("unchecked.txt"), "{unchecked:?}");

    // A checksum that does not match names the URL and both digests.
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let mut bad = document.clone();
    if let Some(plan) = &mut bad.plan {
        plan.steps.truncate(2);
        plan.stages[0].steps.truncate(2);
        plan.steps[1].action = add(
            CopyInput::Url {
                checksum: Some(wrong.to_string()),
            },
            &[url.as_str()],
            "/downloads/",
        );
    }
    fixture
        .exec(&bad)
        .code(1)
        .stderr(contains("checksum mismatch"))
        .stderr(contains(url.as_str()))
        .stderr(contains(wrong));
    Ok(())
}

/// A tar archive of one file, `<name>/hello.txt`, saying which archive it came from.
fn tar_of_one_file(name: &str) -> std::io::Result<Vec<u8>> {
    let content = format!("unpacked from {name}\n");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    builder.append_data(&mut header, format!("{name}/hello.txt"), content.as_bytes())?;
    builder.into_inner()
}

fn uncompressed(tar: Vec<u8>) -> std::io::Result<Vec<u8>> {
    Ok(tar)
}

fn bzip2_compressed(tar: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    encoder.write_all(&tar)?;
    encoder.finish()
}

fn xz_compressed(tar: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut encoder = xz2::write::XzEncoder::new(Vec::new(), 6);
    encoder.write_all(&tar)?;
    encoder.finish()
}

/// Makes an archive of one format from a tar.
type Compress = fn(Vec<u8>) -> std::io::Result<Vec<u8>>;

/// The archive formats besides gzip that ADD unpacks, and how to make each from a tar.
const OTHER_ARCHIVES: [(&str, Compress); 3] = [
    ("plain", uncompressed),
    ("bzip2", bzip2_compressed),
    ("xz", xz_compressed),
];

#[test]
fn add_unpacks_plain_bzip2_and_xz_archives() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let context = fixture.dir.path().join("context");
    fs::create_dir_all(&context)?;
    let mut steps = Vec::new();
    let mut context_section: Option<mb_core::context::ContextSection> = None;
    for (step_idx, (name, compress)) in OTHER_ARCHIVES.into_iter().enumerate() {
        let archive = compress(tar_of_one_file(name)?)?;
        // Named without an extension: ADD goes by content.
        let file_name = format!("{name}-archive");
        fs::write(context.join(&file_name), &archive)?;
        let line = 2 + step_idx as u32;
        steps.push(pending(
            step_idx,
            0,
            line,
            &format!("ADD {file_name} /opt/"),
            add(
                CopyInput::Context {
                    digest: name.to_string(),
                },
                &[file_name.as_str()],
                "/opt/",
            ),
        ));
        let file = context_file(&file_name, &file_name, 0o644, &archive);
        let section = one_file_context(&context, (0, line as usize, None), name, file);
        match &mut context_section {
            Some(existing) => existing.selections.extend(section.selections),
            None => context_section = Some(section),
        }
    }
    let mut document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1, 2], vec![])],
        steps,
    );
    document.context = context_section;
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    for (step_idx, (name, _)) in OTHER_ARCHIVES.into_iter().enumerate() {
        let unpacked = fixture.layer_entries(&result.steps[step_idx].layer)?;
        assert_eq!(
            unpacked
                .get(&format!("opt/{name}/hello.txt"))
                .map(String::as_str),
            Some(format!("unpacked from {name}\n").as_str()),
            "{name}: {unpacked:?}"
        );
        assert!(
            !unpacked.contains_key(&format!("opt/{name}-archive")),
            "{name} was copied, not unpacked: {unpacked:?}"
        );
    }
    Ok(())
}

#[test]
fn heredocs_images_link_zstd_and_workdir_owner() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let copy = |input: CopyInput, sources: &[&str], destination: &str, link: bool| Action::Copy {
        input,
        sources: sources.iter().map(|source| source.to_string()).collect(),
        destination: destination.to_string(),
        chown: Some("app".to_string()),
        chmod: None,
        link,
        unpack_archives: false,
        heredocs: vec![],
    };
    let mut inline = copy(CopyInput::Inline, &[], "/etc/app/", false);
    if let Action::Copy { heredocs, .. } = &mut inline {
        heredocs.push(Heredoc {
            name: "config.ini".to_string(),
            body: "[main]\nx = 1\n".to_string(),
            expand: false,
        });
    }
    let steps = vec![
        pending(0, 0, 2, "COPY <<config.ini /etc/app/", inline),
        pending(
            1,
            0,
            3,
            "COPY --link --from=busybox:test /etc/motd /etc/motd.copy",
            copy(
                CopyInput::Image {
                    reference: "busybox:test".to_string(),
                    manifest: fixture.base_manifest.clone(),
                },
                &["/etc/motd"],
                "/etc/motd.copy",
                true,
            ),
        ),
        pending(
            2,
            0,
            4,
            "WORKDIR /home/app/work",
            Action::Workdir {
                path: "/home/app/work".to_string(),
                user: "app".to_string(),
            },
        ),
    ];
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1, 2], vec![])],
        steps,
    );
    let result = result_of(&fixture.exec(&document).success())?
        .result
        .ok_or("no result")?;
    let heredoc = fixture.layer_owners(&result.steps[0].layer)?;
    assert_eq!(
        heredoc.get("etc/app/config.ini"),
        Some(&(1000, 1000, 0o644))
    );
    assert!(
        !heredoc.contains_key("etc/"),
        "/etc exists below: {heredoc:?}"
    );
    let content = fixture.layer_entries(&result.steps[0].layer)?;
    assert_eq!(
        content.get("etc/app/config.ini").map(String::as_str),
        Some("[main]\nx = 1\n")
    );
    // --link: the parent directory is in the layer although /etc exists below it.
    let linked = fixture.layer_entries(&result.steps[1].layer)?;
    assert!(linked.contains_key("etc/"), "{linked:?}");
    assert_eq!(
        linked.get("etc/motd.copy").map(String::as_str),
        Some("welcome\n")
    );
    let workdir = fixture.layer_owners(&result.steps[2].layer)?;
    assert_eq!(workdir.get("home/app/work/"), Some(&(1000, 1000, 0o755)));

    // zstd on request, with its media type.
    let other = Fixture::new()?;
    let zstd_plan = document_for_zstd(&other);
    let zstd = result_of(
        &other
            .exec_with(&zstd_plan, &["--compression", "zstd"])
            .success(),
    )?
    .result
    .ok_or("no result")?;
    assert_eq!(
        zstd.steps[0].layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let blob = other.store.read_blob(&zstd.steps[0].layer.digest)?;
    let tar_bytes = zstd::decode_all(blob.as_slice())?;
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let names: Vec<String> = archive
        .entries()?
        .filter_map(|entry| Some(entry.ok()?.path().ok()?.to_string_lossy().into_owned()))
        .collect();
    assert!(names.contains(&"made".to_string()), "{names:?}");
    Ok(())
}

fn document_for_zstd(fixture: &Fixture) -> mb_core::Document {
    fixture.one_step("RUN touch /made", shell("touch /made"))
}
