//! The host's crate layout enforces itself: `cargo metadata` lists what each crate under
//! `host/` depends on, and these tests fail when one depends on a crate it must not (the table
//! in docs/architecture.md). The decision kernel in particular depends on no plugin, event-log,
//! API, NATS or web crate: nothing those do can reach into the decision path's state.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::output;

/// Each host crate's normal (not dev, not build) dependencies, by package name.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let stdout = output(
        std::process::Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    let metadata: serde_json::Value = serde_json::from_slice(&stdout).expect("metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let in_host = |p: &&serde_json::Value| {
        p["manifest_path"]
            .as_str()
            .is_some_and(|m| m.contains("/host/"))
    };
    packages
        .iter()
        .filter(in_host)
        .map(|p| {
            let deps = p["dependencies"].as_array().expect("dependencies");
            let name = p["name"].as_str().expect("name").to_string();
            (
                name,
                deps.iter().filter_map(normal).map(str::to_string).collect(),
            )
        })
        .collect()
}

/// A normal dependency's name (`kind` is null; "dev" and "build" are the others).
fn normal(d: &serde_json::Value) -> Option<&str> {
    d["kind"].is_null().then(|| d["name"].as_str()).flatten()
}

/// The capability crates, lowest first: each may use only the ones listed with it (besides
/// duet-core and small outside crates), and the heavy outside crates it owns.
const LAYERS: &[(&str, &[&str])] = &[
    ("duet-frame", &[]),
    ("duet-base", &[]),
    ("duet-runtime", &["duet-base", "wasmtime", "wasmtime-wasi"]),
    ("duet-vip", &["duet-base", "libloading"]),
    (
        "duet-kernel",
        &["duet-base", "duet-frame", "duet-runtime", "duet-vip"],
    ),
    (
        "duet-plugins",
        &["duet-base", "duet-runtime", "wasmtime", "wasmtime-wasi"],
    ),
    ("duet-events", &["duet-base", "duet-kernel", "sqlx"]),
    ("duet-nats", &["duet-base", "async-nats"]),
    ("duet-probes", &["duet-base", "duet-nats", "async-nats"]),
    ("duet-witness", &["duet-base", "duet-nats", "async-nats"]),
    (
        "duet-api",
        &[
            "duet-base",
            "duet-kernel",
            "duet-vip",
            "duet-events",
            "axum",
        ],
    ),
];

/// The outside crates whose use is one capability's own.
const HEAVY: &[&str] = &[
    "wasmtime",
    "wasmtime-wasi",
    "libloading",
    "sqlx",
    "async-nats",
    "axum",
];

/// The crates whose use the layout rules on: every capability crate and the heavy ones.
fn guarded(name: &str) -> bool {
    HEAVY.contains(&name) || LAYERS.iter().any(|(n, _)| *n == name) || name == "duet-host"
}

#[test]
fn each_capability_crate_depends_only_on_the_crates_below_it_that_it_may_use() {
    let all = dependencies();
    let mut wrong = Vec::new();
    for (name, may) in LAYERS {
        let deps = all
            .get(*name)
            .unwrap_or_else(|| panic!("{name} is not a host crate any more"));
        for dep in deps
            .iter()
            .filter(|d| guarded(d) && !may.contains(&d.as_str()))
        {
            wrong.push(format!("{name} depends on {dep}"));
        }
    }
    let known =
        |n: &str| LAYERS.iter().any(|(l, _)| *l == n) || ["duet-host", "duet-cli"].contains(&n);
    for name in all.keys().filter(|n| !known(n)) {
        wrong.push(format!(
            "{name}: a new host crate, not in the layout (tests/src/layout.rs)"
        ));
    }
    assert!(
        wrong.is_empty(),
        "the host's layout is broken:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_kernel_depends_on_no_plugin_event_log_api_nats_or_web_crate() {
    let kernel = &dependencies()["duet-kernel"];
    let forbidden = [
        "duet-plugins",
        "duet-events",
        "duet-api",
        "duet-probes",
        "duet-nats",
        "duet-witness",
        "duet-host",
    ];
    for crate_name in forbidden.iter().chain(HEAVY) {
        assert!(
            !kernel.contains(*crate_name),
            "duet-kernel depends on {crate_name}"
        );
    }
}

#[test]
fn only_the_composer_knows_every_capability_and_only_the_binary_uses_the_composer() {
    let all = dependencies();
    for (name, deps) in &all {
        if deps.contains("duet-host") {
            assert_eq!(name, "duet-cli", "{name} depends on the composing crate");
        }
        if deps.contains("duet-api") {
            assert!(
                ["duet-host", "duet-cli"].contains(&name.as_str()),
                "{name} depends on the API crate"
            );
        }
    }
    let host = &all["duet-host"];
    for (capability, _) in LAYERS {
        assert!(
            host.contains(*capability),
            "duet-host does not wire {capability}"
        );
    }
}
