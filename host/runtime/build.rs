//! Builds the core `duet` embeds as its fallback: `core/component` → core.wasm
//! (wasm32-wasip2), from this workspace.

#[allow(dead_code)]
#[path = "../../xtask/src/guest.rs"]
mod guest;

fn main() {
    let env = guest::build_env(&[
        "wit",
        "core/src",
        "core/Cargo.toml",
        "core/component",
        "Cargo.lock",
    ]);
    let wasm = guest::build(
        &env.workspace,
        &env.target,
        "wasm32-wasip2",
        &["duet-core-component"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let core = env.out_dir.join("core.wasm");
    std::fs::copy(wasm.join("duet_core_component.wasm"), &core)
        .expect("copy core.wasm into OUT_DIR");
    println!("cargo:rustc-env=DUET_EMBEDDED_CORE={}", core.display());
}
