//! `duet check-config`: validates a configuration file.

use std::path::PathBuf;

/// Validate a configuration file and exit (0 valid, 1 invalid).
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    file: PathBuf,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        match duet_host::config::load(&self.file) {
            Ok(_) => {
                println!("{}: valid", self.file.display());
                Ok(0)
            }
            Err(e) => {
                super::print_error(None, &e);
                Ok(1)
            }
        }
    }
}
