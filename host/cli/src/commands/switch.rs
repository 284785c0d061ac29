//! `duet switch` and `duet force-online`: an operator's command to an agent.

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
        post(&self.target, self.token, "switch", "switch", None).await
    }
}

/// Bring this agent online; its buddy is asked to yield. With a witness, the agent waits for
/// the witness lease like every claim, unless --without-witness.
#[derive(clap::Args)]
pub struct ForceOnlineArgs {
    #[command(flatten)]
    target: Target,
    /// A named token with the right "force_online".
    #[arg(long, env = "DUET_TOKEN", hide_env_values = true)]
    token: String,
    /// Go online without the witness lease: you vouch that the buddy is not Online (the pair
    /// has two Online if it is). Logged and raised with the token's name; in force until the
    /// agent holds the lease or is Offline again.
    #[arg(long)]
    without_witness: bool,
}

impl ForceOnlineArgs {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let body = self
            .without_witness
            .then(|| serde_json::json!({ "without_witness": true }));
        let what = if self.without_witness {
            "force online without the witness"
        } else {
            "force online"
        };
        post(&self.target, self.token, "force-online", what, body).await
    }
}

/// Posts `/api/v1/commands/<path>`: 0 when queued, 1 when refused.
async fn post(
    target: &Target,
    token: String,
    path: &str,
    what: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<u8> {
    let api = target.endpoint()?;
    let client = api.client(std::time::Duration::from_secs(5))?;
    let mut request = client
        .post(api.url(&format!("/api/v1/commands/{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("agent at {api} is unreachable"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{what} queued at {api}; follow it with `duet status --watch`");
        Ok(0)
    } else {
        eprintln!(
            "duet {path}: {api} refused ({status}): {}",
            duet_base::text::printable(&text)
        );
        Ok(1)
    }
}
