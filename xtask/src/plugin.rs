//! `cargo xtask plugin new NAME`: a new probe plugin crate in `plugins/NAME`, from the template
//! below (the hello plugin's shape), added to the workspace's members.

use std::path::Path;

use anyhow::{Context as _, bail};

pub fn new(root: &Path, name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "\"{name}\" is not a plugin name: lowercase letters, digits and '-', starting with a letter"
        );
    }
    let dir = root.join("plugins").join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let crate_name = format!("duet-plugin-{name}");
    std::fs::write(
        dir.join("Cargo.toml"),
        TEMPLATE_TOML
            .replace("{crate}", &crate_name)
            .replace("{name}", name),
    )?;
    std::fs::write(
        dir.join("src/lib.rs"),
        TEMPLATE_LIB.replace("{name}", name).replace("{Type}", &ty),
    )?;
    // Add it to the workspace's members (not default-members: it is built for wasm32-wasip2).
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let anchor = "    \"plugins/hello\",\n";
    if let Some(at) = text.find(anchor) {
        let mut out = text.clone();
        out.insert_str(at + anchor.len(), &format!("    \"plugins/{name}\",\n"));
        std::fs::write(&manifest, out)?;
    } else {
        println!("add \"plugins/{name}\" to [workspace] members in Cargo.toml");
    }
    let file = crate_name.replace('-', "_");
    println!(
        "created {dir}\n\nbuild it:\n  cargo build -p {crate_name} --target wasm32-wasip2 --profile wasm-release\n\
         check it:\n  duet plugin check target/wasm32-wasip2/wasm-release/{file}.wasm\n\
         deploy it: copy that file into the agent's plugins folder as {name}.wasm\n\
         lint it: add \"{crate_name}\" to WASM_CRATES in xtask/src/main.rs",
        dir = dir.display()
    );
    Ok(())
}

const TEMPLATE_TOML: &str = r#"[package]
name = "{crate}"
description = "duet probe plugin: {name}."
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
duet-probe-sdk = { workspace = true }

[lints]
workspace = true
"#;

const TEMPLATE_LIB: &str = r#"//! {name}: a duet probe plugin. Say here what it checks and which config keys it reads.

use duet_probe_sdk::{Config, Description, Outcome, Probe, export_probe};

struct {Type};

impl Probe for {Type} {
    fn describe() -> Description {
        // Declare what you need, e.g. `.needs(Capability::Outbound("*".into()))`; the operator
        // grants it in `[plugins.plugin.<name>]`.
        Description::new("{name}", env!("CARGO_PKG_VERSION"), 5_000)
    }

    fn check(config: &Config) -> Result<Outcome, String> {
        // `Err` is the probe's own fault (bad config); a failing target is `Outcome::failing`.
        let greeting = config.str("greeting")?.unwrap_or("Hello");
        Ok(Outcome::ok(greeting))
    }
}

export_probe!({Type});
"#;
