//! `duet token new`: a new named API token.

/// Named API tokens.
#[derive(clap::Subcommand)]
pub enum Args {
    /// Make a new random token; prints it once, and the configuration lines with its SHA-256.
    New {
        /// Who the token is for: the failover log names them.
        name: String,
        /// Rights, comma-separated: switch, force_online, mode, events, reload.
        #[arg(long, default_value = "switch,force_online,mode")]
        rights: String,
    },
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let Args::New { name, rights } = self;
        let (token, hash) = duet_api::auth::new_token()?;
        let rights: Vec<String> = rights
            .split(',')
            .map(|r| format!("\"{}\"", r.trim()))
            .collect();
        let name = duet_base::text::printable(&name);
        println!("token (shown once; give it to {name}): {token}\n");
        println!("# add to the [api] section's tokens of both agents' configuration:");
        println!(
            "[[api.token]]\nname = \"{name}\"\nsha256 = \"{hash}\"\nrights = [{}]",
            rights.join(", ")
        );
        Ok(0)
    }
}
