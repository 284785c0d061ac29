//! libpcap detection as `GET /api/v1/pair` reports it, with the library hidden from one agent in
//! a mount namespace of its own: no file at all ("have been found", naming the files tried), a
//! file the loader rejects and a file without libpcap's calls ("could not be detected", naming
//! the file and the loader's own reason). Needs root (`unshare -m`, `mount --bind`): elsewhere
//! the tests say so and skip; CI runs as root.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use duet_core::api::{PacketCapture, PairInfo};
use duet_host::pcap;

use crate::support::{AgentSpec, Agents, duet_bin, eventually, free_port, is_root};

/// The libpcap files this machine has under the names the loader tries, resolved, and the
/// names themselves (symbolic links included).
fn pcap_files() -> Vec<PathBuf> {
    let arch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    let mut files: Vec<PathBuf> = [arch.as_str(), "/usr/lib", "/usr/local/lib"]
        .iter()
        .flat_map(|d| pcap::CANDIDATES.iter().map(move |c| Path::new(d).join(c)))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Whether this test can hide files from one process; says why not when it cannot.
fn can_hide() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root for unshare -m and mount --bind (CI runs as root)");
        return false;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: no unshare on this machine");
        return false;
    }
    true
}

/// Starts `duet run --config <config>` in a mount namespace of its own after running `mounts`
/// (shell commands) there.
fn spawn_hidden(config: &Path, mounts: &str) -> std::process::Child {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{mounts} && exec \"$0\" run --config \"$1\""))
        .arg(duet_bin())
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn duet in a mount namespace")
}

/// `GET /api/v1/pair` of the agent on `port`: its packet capture; `None` while it does not
/// answer.
fn packet_capture(port: u16) -> Option<PacketCapture> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /api/v1/pair HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str::<PairInfo>(body)
        .ok()
        .map(|p| p.packet_capture)
}

/// Runs one agent with `mounts` applied in its mount namespace and returns what it detected.
fn detected_with(mounts: &str) -> PacketCapture {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = AgentSpec::new("agent-a", "agent-b", 100, port, free_port()).write(dir.path());
    let _agents = Agents(vec![spawn_hidden(&config, mounts)]);
    let found = eventually(Duration::from_secs(20), "GET /api/v1/pair", || {
        packet_capture(port)
    });
    eprintln!("detected: {found:?}");
    found
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn without_any_libpcap_file_no_pcap_libraries_have_been_found() {
    if !can_hide() {
        return;
    }
    // Each directory holding libpcap is replaced by one holding only the libraries `duet`
    // itself links (the loader must still find those): libpcap's names lead nowhere.
    let files = pcap_files();
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    let spare = tempfile::tempdir().expect("tempdir");
    let ldd = Command::new("ldd")
        .arg(duet_bin())
        .output()
        .expect("run ldd");
    assert!(ldd.status.success(), "ldd: {ldd:?}");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "\t/lib64/ld-linux... (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let Some(path) = path else { continue };
        let real = std::fs::canonicalize(&path).expect("a library ldd lists");
        // Under the name the program asks for and the file's own name (the interpreter is
        // reached through /lib64 links into the library directory).
        for name in [path.file_name(), real.file_name()].into_iter().flatten() {
            std::fs::copy(&real, spare.path().join(name)).expect("copy a library");
        }
    }
    let mut mounts = vec!["true".to_string()];
    for dir in &dirs {
        mounts.push(format!(
            "mount --bind {} {}",
            quoted(spare.path()),
            quoted(dir)
        ));
    }
    let found = detected_with(&mounts.join(" && "));
    assert!(!found.found, "{found:?}");
    assert_eq!(found.message.as_deref(), Some(pcap::NOT_FOUND), "{found:?}");
    let detail = found.detail.unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "Tried {}: no such file",
            pcap::CANDIDATES.join(", ")
        )),
        "the detail names every file tried: {detail}"
    );
}

#[test]
fn a_libpcap_file_the_loader_rejects_could_not_be_detected_and_says_why() {
    if !can_hide() {
        return;
    }
    let files = pcap_files();
    if files.is_empty() {
        eprintln!("skipped: no libpcap on this machine to break");
        return;
    }
    let mounts: Vec<String> = files
        .iter()
        .map(|f| format!("mount --bind /dev/null {}", quoted(f)))
        .collect();
    let found = detected_with(&mounts.join(" && "));
    assert!(!found.found, "{found:?}");
    assert_eq!(
        found.message.as_deref(),
        Some(pcap::NOT_DETECTED),
        "{found:?}"
    );
    let detail = found.detail.unwrap_or_default();
    // A soname that is present, then libloading's words, then the loader's own (glibc's
    // "file too short" for an empty file).
    let present = pcap::CANDIDATES
        .iter()
        .find(|c| detail.contains(&format!("{c}: dlopen failed: ")))
        .unwrap_or_else(|| panic!("the detail names the file that failed to load: {detail}"));
    assert!(
        detail.contains("file too short"),
        "the detail has the loader's reason for {present}: {detail}"
    );
    assert!(!detail.contains("dlopen failed;"), "{detail}");
}

#[test]
fn a_file_without_libpcaps_calls_could_not_be_detected_and_names_the_missing_symbol() {
    if !can_hide() {
        return;
    }
    let files = pcap_files();
    let other = Path::new("/usr/lib")
        .join(format!("{}-linux-gnu", std::env::consts::ARCH))
        .join("libz.so.1");
    if files.is_empty() || !other.exists() {
        eprintln!(
            "skipped: needs libpcap and {} on this machine",
            other.display()
        );
        return;
    }
    // A real shared library that loads fine, but is not libpcap.
    let mounts: Vec<String> = files
        .iter()
        .map(|f| format!("mount --bind {} {}", quoted(&other), quoted(f)))
        .collect();
    let found = detected_with(&mounts.join(" && "));
    assert_eq!(
        found.message.as_deref(),
        Some(pcap::NOT_DETECTED),
        "{found:?}"
    );
    let detail = found.detail.unwrap_or_default();
    assert!(
        detail.contains("dlsym failed: ") && detail.contains("undefined symbol: pcap_lib_version"),
        "the detail names the call that is missing: {detail}"
    );
}
