//! Finds the packet-capture library (libpcap) at run time with `dlopen`: `duet` has no
//! link-time dependency on it, so it starts and says what is wrong where the library is missing
//! ("have been found") or present but unusable ("could not be detected").

use std::ffi::{CStr, c_char};
use std::sync::OnceLock;

use duet_core::api::PacketCapture;

/// The sonames tried, in order: upstream's, Debian's, then the development symlink.
pub const CANDIDATES: [&str; 3] = ["libpcap.so.1", "libpcap.so.0.8", "libpcap.so"];

/// The message when no candidate exists (the reference's wording).
pub const NOT_FOUND: &str = "No Pcap libraries have been found on this agent";
/// The message when a candidate exists but cannot be loaded or does not answer.
pub const NOT_DETECTED: &str = "No Pcap libraries could be detected on this agent";

/// What [`detect`] found the first time it ran in this process; later changes to the
/// installed libraries show after a restart.
pub fn detected() -> PacketCapture {
    static FOUND: OnceLock<PacketCapture> = OnceLock::new();
    FOUND.get_or_init(detect).clone()
}

/// Tries each candidate: the first that loads and answers `pcap_lib_version` wins.
pub fn detect() -> PacketCapture {
    let mut errors = Vec::new();
    let mut present = false;
    for name in CANDIDATES {
        // SAFETY: loading libpcap runs its initialisers, which have no preconditions; the
        // library is not otherwise used by this process while it is loaded here.
        let library = match unsafe { libloading::Library::new(name) } {
            Ok(library) => library,
            Err(e) => {
                let text = e.to_string();
                present |= !text.contains("No such file or directory");
                errors.push(text);
                continue;
            }
        };
        present = true;
        // SAFETY: `pcap_lib_version` is `const char *pcap_lib_version(void)` in every libpcap.
        let version = unsafe {
            library
                .get::<unsafe extern "C" fn() -> *const c_char>(b"pcap_lib_version\0")
                .map(|f| f())
        };
        match version {
            Ok(ptr) if !ptr.is_null() => {
                // SAFETY: libpcap returns a static NUL-terminated string.
                let version = unsafe { CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned();
                return PacketCapture {
                    found: true,
                    library: Some(name.to_string()),
                    version: Some(version),
                    message: None,
                    detail: None,
                };
            }
            Ok(_) => errors.push(format!("{name}: pcap_lib_version returned nothing")),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    let (message, advice) = if present {
        (
            NOT_DETECTED,
            "a libpcap file is present but could not be loaded or did not answer; check the \
             installation before using this agent in a pair with a virtual IP",
        )
    } else {
        (
            NOT_FOUND,
            "libpcap is not installed (Debian: libpcap0.8); do not use this agent in a pair \
             with a virtual IP",
        )
    };
    PacketCapture {
        found: false,
        library: None,
        version: None,
        message: Some(message.to_string()),
        detail: Some(format!("{advice}. Tried: {}", errors.join("; "))),
    }
}
