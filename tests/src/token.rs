//! Minting JWTs for tests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The edge's development secret (used when an edge has no JWT flags).
pub const DEV_SECRET: &str = "ferrocast-dev-secret";

/// A token under construction: claims as JSON, signed at the end.
#[derive(Debug, Clone)]
pub struct Token {
    /// The claims.
    pub claims: Value,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Token {
    /// A token for `sub`, valid for an hour, allowed into `rooms`.
    pub fn user(sub: &str, rooms: &[&str]) -> Token {
        Token {
            claims: json!({"sub": sub, "exp": now() + 3600, "rooms": rooms}),
        }
    }

    /// Sets or replaces a claim.
    pub fn claim(mut self, name: &str, value: Value) -> Token {
        self.claims[name] = value;
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Token {
        if let Some(map) = self.claims.as_object_mut() {
            map.remove(name);
        }
        self
    }

    /// Expired `secs` seconds ago.
    pub fn expired(self, secs: i64) -> Token {
        self.claim("exp", json!(now() - secs))
    }

    /// Signed with HS256 and `secret`.
    pub fn hs256(&self, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &self.claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    /// Signed with HS256 and `secret`, its header's `crit` naming `extensions` (RFC 7515
    /// §4.1.11: a recipient that does not understand them must refuse the token).
    pub fn hs256_critical(&self, secret: &str, extensions: &[&str]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(extensions.iter().map(|e| (*e).to_owned()).collect());
        jsonwebtoken::encode(
            &header,
            &self.claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    /// Signed with HS256 and the development secret.
    pub fn dev(&self) -> String {
        self.hs256(DEV_SECRET)
    }

    /// Signed with RS256 and the PEM private key `pem`.
    pub fn rs256(&self, pem: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &self.claims,
            &EncodingKey::from_rsa_pem(pem).expect("rsa key"),
        )
        .expect("sign")
    }

    /// Unsigned, with `alg: none`.
    pub fn unsigned(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(self.claims.to_string())
        )
    }
}
