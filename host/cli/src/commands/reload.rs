//! `duet reload`: asks a running agent to reload its configuration file, and says what
//! changed, what waits for a restart, or why the file was refused.

use anyhow::Context as _;
use duet_base::text::printable;
use duet_core::api::Reload;

use super::Target;

/// Reload the agent's configuration file (as SIGHUP does) and print the outcome.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// A named token with the right "reload".
    #[arg(long, env = "DUET_TOKEN", hide_env_values = true)]
    token: String,
}

impl Args {
    pub async fn execute(self) -> anyhow::Result<u8> {
        let api = self.target.endpoint()?;
        let client = api.client(std::time::Duration::from_secs(30))?;
        let response = client
            .post(api.url("/api/v1/reload"))
            .bearer_auth(self.token)
            .send()
            .await
            .with_context(|| format!("agent at {api} is unreachable"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let Ok(outcome) = serde_json::from_str::<Reload>(&body) else {
            eprintln!(
                "duet reload: {api} refused ({status}): {}",
                printable(&body)
            );
            return Ok(1);
        };
        print!("{}", describe(&outcome));
        Ok(u8::from(outcome.error.is_some()))
    }
}

/// The outcome in words, a line each.
fn describe(outcome: &Reload) -> String {
    if let Some(error) = &outcome.error {
        let lines: String = error
            .lines()
            .map(|l| format!("{}\n", printable(l)))
            .collect();
        return format!("refused: the running configuration is kept\n{lines}");
    }
    let list = |keys: &[String]| {
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    };
    format!(
        "reloaded\napplied: {}\nwaiting for a restart: {}\n",
        list(&outcome.applied),
        list(&outcome.restart)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_names_the_keys_or_the_error() {
        let taken = Reload {
            applied: vec!["heartbeat[0].interval".into()],
            restart: vec!["core.tick".into()],
            ..Reload::default()
        };
        assert_eq!(
            describe(&taken),
            "reloaded\napplied: heartbeat[0].interval\nwaiting for a restart: core.tick\n"
        );
        let refused = Reload {
            error: Some("heartbeat[0].interval: \"fast\" is not a duration".into()),
            ..Reload::default()
        };
        assert_eq!(
            describe(&refused),
            "refused: the running configuration is kept\nheartbeat[0].interval: \"fast\" is not a duration\n"
        );
    }
}
