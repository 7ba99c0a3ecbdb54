//! The connect hook: the application authenticates a token of its own (an opaque session token,
//! an API key, a JWT it checks itself) and answers with the claims a JWT would carry.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::client::HookClient;

/// What the connect hook is asked.
#[derive(Debug, Serialize)]
pub struct ConnectRequest<'a> {
    /// The token the client presented.
    pub token: &'a str,
    /// The connection's client id.
    pub client: &'a str,
    /// This edge's id.
    pub node: &'a str,
    /// The client's IP address, as the edge sees it.
    pub remote: IpAddr,
    /// The upgrade request's `Origin`, from browsers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a str>,
}

/// What an accepting hook answers: the claims, by the JWT claims' names (`user` for `sub`).
#[derive(Debug, Clone, Deserialize)]
pub struct HookClaims {
    /// The user id.
    pub user: String,
    /// Room patterns the client may join.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Room patterns the client may publish to.
    #[serde(default, rename = "pub")]
    pub publish: Vec<String>,
    /// Event patterns the client may `send`.
    #[serde(default)]
    pub send: Option<Vec<String>>,
    /// Kept with the session, handed to workers.
    #[serde(default)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// Shown through presence.
    #[serde(default)]
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
    /// When the connection must refresh or be closed (4003), Unix seconds; none: never.
    #[serde(default)]
    pub exp: Option<u64>,
    /// Whether the client must set encryption up (the JWT claim `enc`).
    #[serde(default)]
    pub enc: bool,
}

/// The hook's decision.
#[derive(Debug)]
pub enum Verdict {
    /// Accepted, with these claims.
    Accept(HookClaims),
    /// Refused (401 or 403): the token is no good.
    Refuse,
    /// No usable answer (a timeout, a failure, any other status, a body that is not claims):
    /// the back end's trouble, not the user's; the client should try again later.
    Unavailable(String),
}

/// Asks the hook at `url` about `request`, within the share of the hook's slots that the
/// client's address may take.
pub async fn decide(client: &HookClient, url: &str, request: &ConnectRequest<'_>) -> Verdict {
    let body = match serde_json::to_vec(request) {
        Ok(body) => body,
        Err(e) => return Verdict::Unavailable(e.to_string()),
    };
    match client.post_from(request.remote, "connect", url, body).await {
        Ok(answer) => match answer.status {
            200 => match serde_json::from_slice::<HookClaims>(&answer.body) {
                Ok(claims) if !claims.user.is_empty() => Verdict::Accept(claims),
                Ok(_) => Verdict::Unavailable("the connect hook answered an empty user".into()),
                Err(e) => Verdict::Unavailable(format!("the connect hook's answer: {e}")),
            },
            401 | 403 => Verdict::Refuse,
            status => Verdict::Unavailable(format!("the connect hook answered {status}")),
        },
        Err(e) => Verdict::Unavailable(e.to_string()),
    }
}
