//! The join hook: the application decides a join its database knows about (a project's
//! members, a paid channel) when the client's claims do not already allow the room.

use serde::{Deserialize, Serialize};

use super::client::HookClient;

/// What the join hook is asked.
#[derive(Debug, Serialize)]
pub struct JoinRequest<'a> {
    /// The connection's client id.
    pub client: &'a str,
    /// Its user.
    pub user: &'a str,
    /// The token's `meta` claim.
    pub meta: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The room.
    pub room: &'a str,
    /// This edge's id.
    pub node: &'a str,
}

#[derive(Debug, Deserialize)]
struct JoinAnswer {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// The hook's decision.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinVerdict {
    /// Join.
    Allow,
    /// Do not, for this reason (shown to the client in `FORBIDDEN`).
    Deny(String),
    /// No usable answer: `UNAVAILABLE`, try again later.
    Unavailable(String),
}

/// Asks the hook at `url` about `request`.
pub async fn decide(client: &HookClient, url: &str, request: &JoinRequest<'_>) -> JoinVerdict {
    let body = match serde_json::to_vec(request) {
        Ok(body) => body,
        Err(e) => return JoinVerdict::Unavailable(e.to_string()),
    };
    match client.post("join", url, body).await {
        Ok(answer) if answer.status == 200 => {
            match serde_json::from_slice::<JoinAnswer>(&answer.body) {
                Ok(JoinAnswer { allow: true, .. }) => JoinVerdict::Allow,
                Ok(JoinAnswer { reason, .. }) => JoinVerdict::Deny(
                    reason.unwrap_or_else(|| "the application does not allow this room".into()),
                ),
                Err(e) => JoinVerdict::Unavailable(format!("the join hook's answer: {e}")),
            }
        }
        Ok(answer) => JoinVerdict::Unavailable(format!("the join hook answered {}", answer.status)),
        Err(e) => JoinVerdict::Unavailable(e.to_string()),
    }
}
