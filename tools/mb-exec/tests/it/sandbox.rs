//! The sandbox a RUN gets: hostname, no new privileges, Docker's default capabilities, the usual
//! devices, a private network under `--network=none`, and the name-lookup files bound in from
//! outside the layer.

use mb_core::plan::Action;

use crate::harness::*;

/// CapEff of a process with Docker's default capabilities (chown, dac_override, fowner, fsetid,
/// kill, setgid, setuid, setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write,
/// setfcap), as /proc/self/status shows it.
const DOCKER_DEFAULT_CAP_EFF: &str = "CapEff:\t00000000a80425fb";

/// Prints what the sandbox looks like from inside, one fact a line.
const INSPECT: &str = r#"
echo "hostname=$(busybox hostname)"
busybox grep -E '^(NoNewPrivs|CapEff):' /proc/self/status
for device in null zero urandom tty; do test -c /dev/$device && echo "device=$device"; done
echo "interfaces=$(busybox awk -F: 'NR > 2 { gsub(/ /, "", $1); printf "%s,", $1 }' /proc/net/dev)"
busybox ping -c 1 -W 2 localhost > /dev/null && echo "localhost resolves"
cat /etc/hosts
test -e /etc/resolv.conf && echo "resolv.conf present"
true
"#;

fn inspect_on(network: &str) -> Action {
    let mut action = shell(INSPECT);
    if let Action::Run {
        network: run_network,
        ..
    } = &mut action
    {
        *run_network = network.to_string();
    }
    action
}

#[test]
fn run_sees_docker_s_sandbox_and_leaves_no_lookup_files_in_the_layer() -> TestResult {
    if !can_run_containers() {
        return Ok(());
    }
    let fixture = Fixture::new()?;
    let document = document(
        graph(&[(0, None)]),
        vec![plan_stage(0, fixture.busybox_base(), vec![0, 1], vec![])],
        vec![
            pending(0, 0, 2, "RUN --network=none inspect", inspect_on("none")),
            pending(1, 0, 3, "RUN inspect", inspect_on("default")),
        ],
    );
    let assert = fixture.exec(&document).success();
    let stderr = String::from_utf8(assert.get_output().stderr.clone())?;
    for step in ["[0 1/2] ", "[0 2/2] "] {
        for fact in [
            "hostname=memobuild",
            "NoNewPrivs:\t1",
            DOCKER_DEFAULT_CAP_EFF,
            "device=null",
            "device=zero",
            "device=urandom",
            "device=tty",
            "localhost resolves",
            "127.0.0.1\tlocalhost memobuild",
            "::1\tlocalhost ip6-localhost ip6-loopback",
        ] {
            assert!(
                stderr.contains(&format!("{step}{fact}")),
                "no `{step}{fact}` in:\n{stderr}"
            );
        }
    }
    assert!(stderr.contains("[0 1/2] interfaces=lo,\n"), "{stderr}");
    assert!(!stderr.contains("[0 1/2] resolv.conf present"), "{stderr}");
    if std::path::Path::new("/etc/resolv.conf").is_file() {
        assert!(stderr.contains("[0 2/2] resolv.conf present"), "{stderr}");
    }
    let result = result_of(&assert)?.result.ok_or("no result")?;
    for step in &result.steps {
        let entries = fixture.layer_entries(&step.layer)?;
        for lookup_file in ["etc/hosts", "etc/resolv.conf"] {
            assert!(
                !entries.contains_key(lookup_file),
                "{lookup_file} in the layer of step {}: {entries:?}",
                step.step
            );
        }
    }
    Ok(())
}
