//! `duet completions SHELL` and `duet man DIR`: shell completions and the man pages, generated from
//! the command line's own definition (the package ships both).

/// Print the shell completion script for SHELL.
#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let mut command = <crate::Cli as clap::CommandFactory>::command();
        clap_complete::generate(self.shell, &mut command, "duet", &mut std::io::stdout());
        Ok(0)
    }
}

/// Write the man pages (duet(1) and one per command, duet-run(1)...) into a folder.
#[derive(clap::Args)]
pub struct ManArgs {
    /// The folder to write them into.
    out: std::path::PathBuf,
}

impl ManArgs {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let command = <crate::Cli as clap::CommandFactory>::command();
        std::fs::create_dir_all(&self.out)?;
        clap_mangen::generate_to(command, &self.out)?;
        Ok(0)
    }
}
