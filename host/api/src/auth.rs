//! Named API tokens. `duet token new NAME` makes a random token and prints its SHA-256 for the
//! configuration; the host keeps only hashes and checks each state-changing call against them,
//! so the log can say who did what.

use sha2::{Digest as _, Sha256};

use crate::config::{Right, TokenConfig};

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A token that matches no configured one (401).
    Unknown,
    /// A valid token without the right (403).
    Lacks { name: String, right: Right },
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Missing => {
                f.write_str("this call needs a token: Authorization: Bearer <token>")
            }
            Denied::Unknown => f.write_str("the token is not one of this agent's tokens"),
            Denied::Lacks { name, right } => write!(f, "token {name:?} lacks the right {right:?}"),
        }
    }
}

/// A new random token and the hex SHA-256 to put in the configuration.
pub fn new_token() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("failed to read random bytes: {e}"))?;
    let token = format!("duet_{}", hex(&bytes));
    let hash = hex(&Sha256::digest(token.as_bytes()));
    Ok((token, hash))
}

/// Checks an `Authorization` header value for `right`; returns the token's name.
pub fn authorize(
    tokens: &[TokenConfig],
    header: Option<&str>,
    right: Right,
) -> Result<String, Denied> {
    let token = identify(tokens, header)?;
    if token.rights.contains(&right) {
        Ok(token.name.clone())
    } else {
        Err(Denied::Lacks {
            name: token.name.clone(),
            right,
        })
    }
}

/// The configured token an `Authorization` header value presents, whatever its rights.
pub fn identify<'a>(
    tokens: &'a [TokenConfig],
    header: Option<&str>,
) -> Result<&'a TokenConfig, Denied> {
    let presented = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(Denied::Missing)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Compare against every token, in constant time per comparison.
    let found = tokens.iter().fold(None, |found, t| {
        if equal(&t.sha256, &digest) {
            Some(t)
        } else {
            found
        }
    });
    found.ok_or(Denied::Unknown)
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hash: &str, rights: Vec<Right>) -> TokenConfig {
        let mut sha256 = [0u8; 32];
        for (i, chunk) in hash.as_bytes().chunks(2).enumerate() {
            sha256[i] = u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 16).unwrap();
        }
        TokenConfig {
            name: "alice".into(),
            sha256,
            rights,
        }
    }

    #[test]
    fn a_new_token_authorizes_its_rights_only() {
        let (token, hash) = new_token().unwrap();
        let tokens = [config(&hash, vec![Right::Mode])];
        let header = format!("Bearer {token}");
        assert_eq!(
            authorize(&tokens, Some(&header), Right::Mode),
            Ok("alice".to_string())
        );
        assert_eq!(
            authorize(&tokens, Some(&header), Right::Switch),
            Err(Denied::Lacks {
                name: "alice".into(),
                right: Right::Switch
            })
        );
        assert_eq!(
            authorize(&tokens, Some("Bearer duet_wrong"), Right::Mode),
            Err(Denied::Unknown)
        );
        assert_eq!(authorize(&tokens, None, Right::Mode), Err(Denied::Missing));
        assert_ne!(new_token().unwrap().0, token, "tokens are random");
    }
}
