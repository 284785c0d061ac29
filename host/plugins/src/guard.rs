//! What the sandbox checks before WASI touches anything: a file opened by a plugin must be a
//! regular file or a directory (a FIFO or a device could block a thread forever, or never end),
//! and the sockets and files one instance holds open are capped. Refusals are named in the
//! row and logged at a bounded rate.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode as FsErrorCode, HostDescriptor as _, OpenFlags,
    PathFlags,
};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode as NetErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::{
    tcp_create_socket::Host as _, udp_create_socket::Host as _,
};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::WasiSocketsView as _;

use crate::sandbox::PluginState;

/// The WASI version whose functions are guarded (the one wasmtime-wasi links).
const WASI: &str = "0.2.12";

/// At most one refusal line per plugin in this time; the ones between are counted.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Refusals named in one call's row, at most.
const ROW_REFUSALS: usize = 16;

/// A plugin's refusal log lines: one per [`LOG_EVERY`], with how many were not logged.
#[derive(Default)]
pub struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// Where an instance's refusals go: the running call's row, and the rate-limited log.
#[derive(Clone)]
pub struct Refusals {
    pub plugin: String,
    pub this_call: Arc<Mutex<Vec<String>>>,
    pub log: Arc<Mutex<RefusalLog>>,
}

impl Refusals {
    /// Records one refusal, `what` naming the target ("connect to 10.0.0.9:80 is not granted").
    pub fn refuse(&self, what: String) {
        {
            let mut log = duet_base::lock(&self.log);
            let due = log.last.is_none_or(|t| t.elapsed() >= LOG_EVERY);
            if due {
                let unlogged = std::mem::take(&mut log.unlogged);
                log.last = Some(Instant::now());
                tracing::warn!(plugin = %self.plugin, refused = %what, unlogged, "the sandbox refused a plugin (further refusals of this plugin are logged at most every 10 s)");
            } else {
                log.unlogged += 1;
            }
        }
        let mut row = duet_base::lock(&self.this_call);
        if row.len() < ROW_REFUSALS && !row.contains(&what) {
            row.push(what);
        }
    }
}

/// The sockets and files an instance holds (by their handle in its resource table), against
/// its caps.
pub struct Handles {
    tcp: BTreeSet<u32>,
    udp: BTreeSet<u32>,
    files: BTreeSet<u32>,
    max_sockets: usize,
    max_files: usize,
    /// The cap that stopped the running call: what, and the cap.
    pub exceeded: Option<(&'static str, usize)>,
}

impl Handles {
    pub fn new(max_sockets: usize, max_files: usize) -> Self {
        Handles {
            tcp: BTreeSet::new(),
            udp: BTreeSet::new(),
            files: BTreeSet::new(),
            max_sockets,
            max_files,
            exceeded: None,
        }
    }
}

/// Drops from `set` the handles the guest has closed (a handle reused by another kind of
/// resource is gone too; reused by the same kind, it is one entry).
fn live<T: 'static>(set: &mut BTreeSet<u32>, table: &wasmtime::component::ResourceTable) {
    set.retain(|rep| table.get(&Resource::<T>::new_borrow(*rep)).is_ok());
}

/// Replaces `open-at` and the socket constructors with guarded versions that call the
/// originals once the checks pass.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut fs = linker.instance(&format!("wasi:filesystem/types@{WASI}"))?;
    fs.func_wrap_async("[method]descriptor.open-at", |store, args| {
        Box::new(open_at(store, args))
    })?;
    let mut tcp = linker.instance(&format!("wasi:sockets/tcp-create-socket@{WASI}"))?;
    tcp.func_wrap(
        "create-tcp-socket",
        |mut store: StoreContextMut<'_, PluginState>, (family,): (IpAddressFamily,)| {
            let state = store.data_mut();
            if let Some(refused) = socket_allowed(state, "TCP")? {
                return Ok((Err(refused),));
            }
            let created = state.sockets().create_tcp_socket(family);
            let created = match created {
                Ok(s) => s,
                Err(e) => return Ok((Err(e.downcast()?),)),
            };
            state.handles.tcp.insert(created.rep());
            Ok((Ok(created),))
        },
    )?;
    let mut udp = linker.instance(&format!("wasi:sockets/udp-create-socket@{WASI}"))?;
    udp.func_wrap_async(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, PluginState>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(refused) = socket_allowed(state, "UDP")? {
                    return Ok((Err(refused),));
                }
                let created = state.sockets().create_udp_socket(family).await;
                let created = match created {
                    Ok(s) => s,
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                state.handles.udp.insert(created.rep());
                Ok((Ok(created),))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether the instance may create one more socket: `Some(error)` refuses it (no address is
/// granted); an `Err` stops the plugin (over its cap).
fn socket_allowed(state: &mut PluginState, kind: &str) -> wasmtime::Result<Option<NetErrorCode>> {
    if state.grants.connect.is_empty() {
        let plugin = state.refusals.plugin.clone();
        state.refusals.refuse(format!(
            "create a {kind} socket: no address is granted (plugins.plugin.{plugin}.connect)"
        ));
        return Ok(Some(NetErrorCode::AccessDenied));
    }
    let table = &state.table;
    let h = &mut state.handles;
    live::<TcpSocket>(&mut h.tcp, table);
    live::<UdpSocket>(&mut h.udp, table);
    if h.tcp.len() + h.udp.len() >= h.max_sockets {
        h.exceeded = Some(("sockets", h.max_sockets));
        return Err(wasmtime::format_err!("socket cap reached"));
    }
    Ok(None)
}

type OpenAt = (
    Resource<Descriptor>,
    PathFlags,
    String,
    OpenFlags,
    DescriptorFlags,
);

/// `open-at`, refusing what is neither a regular file nor a directory before it is opened, and
/// capping the files held open.
async fn open_at(
    mut store: StoreContextMut<'_, PluginState>,
    (dir, path_flags, path, oflags, flags): OpenAt,
) -> wasmtime::Result<(Result<Resource<Descriptor>, FsErrorCode>,)> {
    let state = store.data_mut();
    {
        let table = &state.table;
        let h = &mut state.handles;
        live::<Descriptor>(&mut h.files, table);
        if h.files.len() >= h.max_files {
            h.exceeded = Some(("files", h.max_files));
            return Err(wasmtime::format_err!("file cap reached"));
        }
    }
    // stat never blocks on what it looks at; a path that does not exist is left to open-at
    // (which then answers as it would).
    let stat = state
        .filesystem()
        .stat_at(Resource::new_borrow(dir.rep()), path_flags, path.clone())
        .await;
    if let Ok(stat) = stat {
        let kind = match stat.type_ {
            DescriptorType::RegularFile
            | DescriptorType::Directory
            | DescriptorType::SymbolicLink => None,
            DescriptorType::CharacterDevice => Some("a character device"),
            DescriptorType::BlockDevice => Some("a block device"),
            // wasmtime-wasi reports FIFOs and sockets as of unknown type.
            DescriptorType::Fifo | DescriptorType::Socket | DescriptorType::Unknown => {
                Some("a FIFO, a socket or another special file")
            }
        };
        if let Some(kind) = kind {
            // The path as the plugin gave it, relative to the directory it opens it in.
            state.refusals.refuse(format!(
                "open {path} (in a granted directory): {kind}, not a regular file: refused before opening"
            ));
            return Ok((Err(FsErrorCode::Access),));
        }
    }
    let opened = state
        .filesystem()
        .open_at(dir, path_flags, path, oflags, flags)
        .await;
    match opened {
        Ok(fd) => {
            state.handles.files.insert(fd.rep());
            Ok((Ok(fd),))
        }
        Err(e) => Ok((Err(e.downcast()?),)),
    }
}
