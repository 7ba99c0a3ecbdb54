//! `edge token`: a token for trying an edge out or scripting against it, signed with the secret
//! the edge is configured with, so no one needs openssl or a script to make one.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ferrocast_redis::settings::parse_duration;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use crate::config::{DEV_JWT_SECRET, MIN_SECRET_LEN};

/// What goes into the token, and the secret to sign it with.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user the token is for (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Room patterns the user may join (`rooms`), comma-separated: names, or prefixes ending in `*`.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Vec<String>,
    /// Room patterns the user may publish to (`pub`), comma-separated.
    #[arg(long = "pub", value_delimiter = ',')]
    pub publish: Vec<String>,
    /// Events the user may send upstream (`send`), comma-separated patterns.
    #[arg(long, value_delimiter = ',')]
    pub send: Vec<String>,
    /// What other members see of the user in presence (`info`): a JSON object.
    #[arg(long, value_parser = parse_info)]
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
    /// How long the token is valid (e.g. 30m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The edge's HS256 secret. Unset: the development secret, which only an edge in
    /// development mode accepts.
    #[arg(long, env = "FERROCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The `iss` the edge requires, if it requires one.
    #[arg(long, env = "FERROCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` the edge requires, if it requires one.
    #[arg(long, env = "FERROCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// An edge that verifies with a public key: refused here, since only the private key, in
    /// your identity provider, can sign its tokens.
    #[arg(long, env = "FERROCAST_JWT_PUBLIC_KEY_FILE", hide = true)]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The edge's config file (`FERROCAST_CONFIG`), for the secret and the claims it requires.
    #[arg(long = "config", env = "FERROCAST_CONFIG", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

fn parse_info(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(info)) => Ok(info),
        Ok(_) => Err("--info must be a JSON object, like {\"name\":\"Ann\"}".to_owned()),
        Err(error) => Err(format!("--info is not JSON: {error}")),
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    rooms: &'a [String],
    #[serde(rename = "pub", skip_serializing_if = "<[_]>::is_empty")]
    publish: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    send: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// The token, and a note for the person when it is signed with the development secret.
pub fn mint(args: &TokenArgs, now: u64) -> anyhow::Result<(String, Option<&'static str>)> {
    anyhow::ensure!(
        args.jwt_public_key_file.is_none(),
        "this edge verifies tokens with a public key (--jwt-public-key-file): sign them with the \
         private key, in your identity provider"
    );
    let (secret, note) = match &args.jwt_secret {
        Some(secret) => {
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_LEN,
                "--jwt-secret is {} bytes; the edge refuses one under {MIN_SECRET_LEN}",
                secret.len()
            );
            (secret.as_str(), None)
        }
        None => (
            DEV_JWT_SECRET,
            Some(
                "no --jwt-secret: signed with the published development secret, which only an \
                 edge in development mode accepts",
            ),
        ),
    };
    let claims = Claims {
        sub: &args.sub,
        iat: now,
        exp: now.saturating_add(args.ttl.as_secs()),
        rooms: &args.rooms,
        publish: &args.publish,
        send: &args.send,
        info: args.info.as_ref(),
        iss: args.jwt_issuer.as_deref(),
        aud: args.jwt_audience.as_deref(),
    };
    let token = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    Ok((token, note))
}
