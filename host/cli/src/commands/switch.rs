//! `duet switch`: asks an agent for a planned switch.

use anyhow::Context as _;

use super::Target;

/// Planned switch: the Online agent hands over to its buddy (or the backup takes over).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// A named token with the right "switch".
    #[arg(long, env = "DUET_TOKEN", hide_env_values = true)]
    token: String,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let api = self.target.endpoint()?;
        let client = api.client(std::time::Duration::from_secs(5))?;
        let response = client
            .post(api.url("/api/v1/commands/switch"))
            .bearer_auth(self.token)
            .send()
            .await
            .with_context(|| format!("agent at {api} is unreachable"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            println!("switch queued at {api}; follow it with `duet status --watch`");
            Ok(0)
        } else {
            eprintln!(
                "duet switch: {api} refused ({status}): {}",
                duet_base::text::printable(&body)
            );
            Ok(1)
        }
    }
}
