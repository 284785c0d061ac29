//! Probe plugins: per-call overhead of a trivial pre-instantiated plugin, instantiation time,
//! then (outside criterion) memory per loaded plugin and the CPU of 100 plugins at 1 Hz,
//! written to `target/criterion/plugin-load.json` for `cargo xtask bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use duet_plugins::config::{PluginSettings, PluginsConfig};
use duet_plugins::{PluginEngine, PluginTable, load_file};

/// The hello plugin (built by `cargo xtask bench` and by the tests' build script).
fn hello() -> PathBuf {
    std::env::var_os("DUET_BENCH_PLUGIN").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm-guests/wasm32-wasip2/wasm-release/duet_plugin_hello.wasm")
        },
        PathBuf::from,
    )
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let engine = PluginEngine::standalone(None).expect("plugin engine");
    let settings = PluginSettings::default();
    let compiled = rt
        .block_on(load_file(&engine, "hello", &hello(), &settings))
        .expect("hello loads: run `cargo xtask bench`, which builds it");
    let mut instance = rt
        .block_on(compiled.instantiate(&engine, &settings))
        .expect("instantiate");
    let mut g = c.benchmark_group("plugin");
    g.bench_function("call", |b| {
        b.iter(|| rt.block_on(instance.check(&settings)).expect("check"))
    });
    g.bench_function("instantiate", |b| {
        b.iter(|| {
            rt.block_on(compiled.instantiate(&engine, &settings))
                .expect("instantiate")
        })
    });
    g.finish();
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of this process.
fn cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes only into the struct we pass.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: getrusage returned 0, so it filled the struct.
    let u = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

const PLUGINS: usize = 100;
const WINDOW: Duration = Duration::from_secs(10);

/// Memory per loaded plugin and the CPU of 100 plugins checking at 1 Hz, through the real
/// loader (folder scan, one task per plugin, deadlines, rows).
fn load_figures(rt: &tokio::runtime::Runtime) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(hello()).expect("read hello");
    let mut config = PluginsConfig {
        dir: Some(dir.path().to_path_buf()),
        scan_interval: Duration::from_secs(3600),
        ..PluginsConfig::default()
    };
    for i in 0..PLUGINS {
        let name = format!("p{i:03}");
        std::fs::write(dir.path().join(format!("{name}.wasm")), &bytes).expect("write plugin");
        config.plugins.insert(
            name,
            PluginSettings {
                interval: Some(Duration::from_secs(1)),
                ..PluginSettings::default()
            },
        );
    }
    let engine = Arc::new(PluginEngine::standalone(None).expect("plugin engine"));
    // Idle: no guest call, so the epoch ticker sleeps.
    std::thread::sleep(Duration::from_secs(1));
    let (c0, idle_start) = (cpu(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle = (cpu() - c0).as_secs_f64() / idle_start.elapsed().as_secs_f64();

    let rss_before = rss_kib();
    let table = PluginTable::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let task = rt.spawn(duet_plugins::run(
        engine,
        duet_base::Clock::system(),
        config,
        table.clone(),
        Arc::new(|| {}),
        stop.clone(),
    ));
    let started = std::time::Instant::now();
    while table.snapshot().iter().filter(|p| p.checks > 0).count() < PLUGINS {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "plugins did not load"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_loaded = rss_kib();
    let checks0: u64 = table.snapshot().iter().map(|p| p.checks).sum();
    let (c0, t0) = (cpu(), std::time::Instant::now());
    std::thread::sleep(WINDOW);
    let busy = (cpu() - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let checks: u64 = table.snapshot().iter().map(|p| p.checks).sum::<u64>() - checks0;
    stop.cancel();
    rt.block_on(task).expect("loader task").expect("loader");
    serde_json::json!({
        "plugins": PLUGINS,
        "memory_per_plugin_kib": (rss_loaded.saturating_sub(rss_before)) as f64 / PLUGINS as f64,
        "checks_per_second": checks as f64 / WINDOW.as_secs_f64(),
        "cpu_core_fraction": busy,
        "cpu_core_fraction_idle_engine": idle,
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &rt);
    c.final_summary();
    // `cargo bench -- <filter>` and `cargo test --benches` skip the slow part.
    if std::env::args().skip(1).any(|a| !a.starts_with('-'))
        || std::env::args().any(|a| a == "--test")
    {
        return;
    }
    let figures = load_figures(&rt);
    let out =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion/plugin-load.json");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("criterion folder");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&figures).expect("json"))
        .expect("write figures");
    println!("plugin load figures: {figures}");
}
