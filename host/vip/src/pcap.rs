//! Finds the packet-capture library (libpcap) at run time with `dlopen`: `duet` has no
//! link-time dependency on it, so it starts and says what is wrong where the library is missing
//! ("have been found") or present but unusable ("could not be detected").

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use duet_core::api::PacketCapture;

/// The sonames tried, in order: upstream's, Debian's, then the development symlink.
pub const CANDIDATES: [&str; 3] = ["libpcap.so.1", "libpcap.so.0.8", "libpcap.so"];

/// The message when no candidate exists (the reference's wording).
pub const NOT_FOUND: &str = "No Pcap libraries have been found on this agent";
/// The message when a candidate exists but cannot be loaded or does not answer.
pub const NOT_DETECTED: &str = "No Pcap libraries could be detected on this agent";

/// What [`detect`] found the first time it ran in this process (the same load as
/// [`library`]); later changes to the installed libraries show after a restart.
pub fn detected() -> PacketCapture {
    match library() {
        Ok(lib) => PacketCapture {
            found: true,
            library: Some(lib.name.to_string()),
            version: Some(lib.version.clone()),
            message: None,
            detail: None,
        },
        Err(missing) => missing,
    }
}

/// Tries each candidate: the first that loads and answers `pcap_lib_version` wins.
pub fn detect() -> PacketCapture {
    match load() {
        Ok(lib) => PacketCapture {
            found: true,
            library: Some(lib.name.to_string()),
            version: Some(lib.version.clone()),
            message: None,
            detail: None,
        },
        Err(missing) => missing,
    }
}

/// The library loaded once for this process (the same search as [`detect`]), for sending and
/// capturing frames; the error is what [`detect`] reports.
pub fn library() -> Result<&'static Pcap, PacketCapture> {
    static LIB: OnceLock<Result<Pcap, PacketCapture>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// libpcap, loaded, with the few calls duet makes.
pub struct Pcap {
    /// The file that was loaded.
    pub name: &'static str,
    /// What `pcap_lib_version` answered.
    pub version: String,
    create: unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut c_void,
    set_int: [unsafe extern "C" fn(*mut c_void, c_int) -> c_int; 4],
    activate: unsafe extern "C" fn(*mut c_void) -> c_int,
    geterr: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    sendpacket: unsafe extern "C" fn(*mut c_void, *const u8, c_int) -> c_int,
    next_ex: unsafe extern "C" fn(*mut c_void, *mut *mut PktHdr, *mut *const u8) -> c_int,
    close: unsafe extern "C" fn(*mut c_void),
    // Keeps the functions above valid.
    _library: libloading::Library,
}

/// `struct pcap_pkthdr` (Linux, 64-bit `struct timeval`).
#[repr(C)]
struct PktHdr {
    ts: [libc::c_long; 2],
    caplen: u32,
    len: u32,
}

/// An open capture on one interface: sends frames and reads the frames it sees.
pub struct Capture {
    lib: &'static Pcap,
    handle: *mut c_void,
}

// SAFETY: a pcap handle may move between threads; `Capture` is used by one thread at a time
// (`&mut self` for every call).
unsafe impl Send for Capture {}

impl Pcap {
    /// Opens `interface` for capture (not promiscuous, immediate delivery, reads wake at least
    /// every `timeout_ms`) and for sending.
    pub fn open(&'static self, interface: &str, timeout_ms: i32) -> Result<Capture, String> {
        let name =
            CString::new(interface).map_err(|_| format!("bad interface name {interface:?}"))?;
        let mut errbuf = [0 as c_char; 512];
        // SAFETY: a NUL-terminated name and an error buffer of PCAP_ERRBUF_SIZE (256) or more.
        let handle = unsafe { (self.create)(name.as_ptr(), errbuf.as_mut_ptr()) };
        if handle.is_null() {
            // SAFETY: libpcap wrote a NUL-terminated message into the buffer.
            let why = unsafe { CStr::from_ptr(errbuf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            return Err(format!("pcap_create({interface}): {why}"));
        }
        let capture = Capture { lib: self, handle };
        let [snaplen, promisc, timeout, immediate] = self.set_int;
        // SAFETY: a created, not yet activated handle; these setters only store the value.
        unsafe {
            snaplen(handle, 256);
            promisc(handle, 0);
            timeout(handle, timeout_ms);
            immediate(handle, 1);
        }
        // SAFETY: the handle was created above.
        let rc = unsafe { (self.activate)(handle) };
        if rc < 0 {
            return Err(format!("pcap_activate({interface}): {}", capture.error()));
        }
        Ok(capture)
    }
}

impl Capture {
    fn error(&self) -> String {
        // SAFETY: a live handle; pcap_geterr returns its NUL-terminated error buffer.
        let ptr = unsafe { (self.lib.geterr)(self.handle) };
        if ptr.is_null() {
            return "unknown error".into();
        }
        // SAFETY: NUL-terminated, valid until the next call on the handle.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }

    /// Sends one Ethernet frame as it is.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        let len = c_int::try_from(frame.len()).map_err(|_| "frame too long".to_string())?;
        // SAFETY: a live handle and `len` readable bytes.
        let rc = unsafe { (self.lib.sendpacket)(self.handle, frame.as_ptr(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("pcap_sendpacket: {}", self.error()))
        }
    }

    /// The next frame seen (either direction), or `None` when the read timeout passed first.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut header: *mut PktHdr = std::ptr::null_mut();
        let mut data: *const u8 = std::ptr::null();
        // SAFETY: a live handle and two out-pointers.
        let rc = unsafe { (self.lib.next_ex)(self.handle, &raw mut header, &raw mut data) };
        match rc {
            1 if !header.is_null() && !data.is_null() => {
                // SAFETY: libpcap hands a header and `caplen` bytes valid until the next call.
                let frame =
                    unsafe { std::slice::from_raw_parts(data, (*header).caplen as usize).to_vec() };
                Ok(Some(frame))
            }
            0 | 1 => Ok(None),
            _ => Err(format!("pcap_next_ex: {}", self.error())),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: the handle is live and closed once.
        unsafe { (self.lib.close)(self.handle) }
    }
}

/// Why one candidate could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The loader found no such file.
    Missing,
    /// The file is there but unusable: what failed, with the loader's own message.
    Broken(String),
}

fn load() -> Result<Pcap, PacketCapture> {
    let mut tried = Vec::new();
    for name in CANDIDATES {
        match load_one(name) {
            Ok(lib) => return Ok(lib),
            Err(failure) => tried.push((name, failure)),
        }
    }
    Err(missing(&tried))
}

/// Loads one candidate: `dlopen`, `pcap_lib_version`, then every call duet makes.
fn load_one(name: &'static str) -> Result<Pcap, Failure> {
    // SAFETY: loading libpcap runs its initialisers, which have no preconditions.
    let library = unsafe { libloading::Library::new(name) }.map_err(|e| {
        let why = chain(&e);
        if is_not_found(name, &why) {
            Failure::Missing
        } else {
            Failure::Broken(why)
        }
    })?;
    // SAFETY: `pcap_lib_version` is `const char *pcap_lib_version(void)` in every libpcap.
    let version = unsafe {
        library
            .get::<unsafe extern "C" fn() -> *const c_char>(b"pcap_lib_version\0")
            .map(|f| f())
    };
    let version = match version {
        // SAFETY: libpcap returns a static NUL-terminated string.
        Ok(ptr) if !ptr.is_null() => unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
        Ok(_) => {
            return Err(Failure::Broken(
                "pcap_lib_version returned nothing".to_string(),
            ));
        }
        Err(e) => return Err(Failure::Broken(chain(&e))),
    };
    symbols(library, name, version).map_err(|e| Failure::Broken(chain(&e)))
}

/// An error and its sources, outermost first: libloading's own text ("dlopen failed") says
/// nothing, the loader's message (`dlerror`) is its source.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Whether the loader's message says the file `name` does not exist (glibc's wording). A
/// library libpcap needs that is missing is named instead: libpcap is there, but broken.
fn is_not_found(name: &str, why: &str) -> bool {
    why.contains(&format!(": {name}: ")) && why.ends_with("No such file or directory")
}

/// The answer when no candidate could be used: "have been found" when none exists, "could not
/// be detected" when one exists but failed, naming the file and the loader's reason.
fn missing(tried: &[(&str, Failure)]) -> PacketCapture {
    let broken: Vec<String> = tried
        .iter()
        .filter_map(|(name, f)| match f {
            Failure::Broken(why) => Some(format!("{name}: {why}")),
            Failure::Missing => None,
        })
        .collect();
    let absent: Vec<&str> = tried
        .iter()
        .filter(|(_, f)| *f == Failure::Missing)
        .map(|(name, _)| *name)
        .collect();
    let (message, detail) = if broken.is_empty() {
        (
            NOT_FOUND,
            format!(
                "libpcap is not installed (Debian: libpcap0.8); do not use this agent in a pair \
                 with a virtual IP. Tried {}: no such file",
                absent.join(", ")
            ),
        )
    } else {
        let mut detail = format!(
            "a libpcap file is present but could not be loaded or did not answer; check the \
             installation before using this agent in a pair with a virtual IP. {}",
            broken.join("; ")
        );
        if !absent.is_empty() {
            detail.push_str(&format!(" (not found: {})", absent.join(", ")));
        }
        (NOT_DETECTED, detail)
    };
    PacketCapture {
        found: false,
        library: None,
        version: None,
        message: Some(message.to_string()),
        detail: Some(detail),
    }
}

/// Looks up the calls duet makes (all in libpcap 1.5 and later).
fn symbols(
    library: libloading::Library,
    name: &'static str,
    version: String,
) -> Result<Pcap, libloading::Error> {
    // SAFETY: each symbol has the C signature given (libpcap's pcap.h); the pointers stay
    // valid while `library` is kept in the same struct.
    unsafe {
        let set = |s: &[u8]| {
            library
                .get::<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>(s)
                .map(|f| *f)
        };
        Ok(Pcap {
            name,
            version,
            create: *library.get(b"pcap_create\0")?,
            set_int: [
                set(b"pcap_set_snaplen\0")?,
                set(b"pcap_set_promisc\0")?,
                set(b"pcap_set_timeout\0")?,
                set(b"pcap_set_immediate_mode\0")?,
            ],
            activate: *library.get(b"pcap_activate\0")?,
            geterr: *library.get(b"pcap_geterr\0")?,
            sendpacket: *library.get(b"pcap_sendpacket\0")?,
            next_ex: *library.get(b"pcap_next_ex\0")?,
            close: *library.get(b"pcap_close\0")?,
            _library: library,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISSING_1: &str =
        "libpcap.so.1: cannot open shared object file: No such file or directory";

    #[test]
    fn the_loader_message_is_in_the_error_chain() {
        // SAFETY: no such library exists, so nothing is loaded.
        let Err(e) = (unsafe { libloading::Library::new("libduet-no-such-library.so.7") }) else {
            panic!("libduet-no-such-library.so.7 loaded");
        };
        let why = chain(&e);
        assert!(
            why.starts_with("dlopen failed: libduet-no-such-library.so.7: "),
            "{why}"
        );
        assert!(is_not_found("libduet-no-such-library.so.7", &why), "{why}");
    }

    #[test]
    fn nothing_there_has_been_found_and_names_the_files_tried() {
        let tried: Vec<(&str, Failure)> =
            CANDIDATES.iter().map(|c| (*c, Failure::Missing)).collect();
        let p = missing(&tried);
        assert_eq!(p.message.as_deref(), Some(NOT_FOUND));
        let detail = p.detail.unwrap_or_default();
        assert!(
            detail.ends_with("Tried libpcap.so.1, libpcap.so.0.8, libpcap.so: no such file"),
            "{detail}"
        );
        assert!(is_not_found(
            "libpcap.so.1",
            &format!("dlopen failed: {MISSING_1}")
        ));
        // libpcap.so is no prefix of libpcap.so.1 here.
        assert!(!is_not_found(
            "libpcap.so",
            &format!("dlopen failed: {MISSING_1}")
        ));
    }

    #[test]
    fn a_missing_dependency_is_a_broken_libpcap_not_a_missing_one() {
        let why = "dlopen failed: libdbus-1.so.3: cannot open shared object file: No such file or directory";
        assert!(!is_not_found("libpcap.so.0.8", why));
    }

    #[test]
    fn a_broken_file_could_not_be_detected_with_the_loaders_reason() {
        let why = "dlopen failed: /usr/lib/x86_64-linux-gnu/libpcap.so.0.8: file too short";
        let tried = [
            ("libpcap.so.1", Failure::Missing),
            ("libpcap.so.0.8", Failure::Broken(why.to_string())),
            ("libpcap.so", Failure::Missing),
        ];
        let p = missing(&tried);
        assert_eq!(p.message.as_deref(), Some(NOT_DETECTED));
        let detail = p.detail.unwrap_or_default();
        assert!(
            detail.ends_with(&format!(
                "libpcap.so.0.8: {why} (not found: libpcap.so.1, libpcap.so)"
            )),
            "{detail}"
        );
    }
}
