//! Who a client is and what it may do: JWT verification and room patterns.
//!
//! The algorithm comes from configuration only: a token's own `alg` header never picks the key
//! type, so `none` and HS/RS confusion cannot pass.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use thiserror::Error;

pub use crate::config::patterns::{Patterns, matches};
use crate::config::{Config, DEV_JWT_SECRET, JwtAlg, MIN_SECRET_LEN};

/// The claims Ferrocast reads from a token.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Room patterns the client may join.
    #[serde(default)]
    pub rooms: Patterns,
    /// Room patterns the client may publish to.
    #[serde(default, rename = "pub")]
    pub publish: Patterns,
    /// Event patterns the client may `send` upstream; absent, the edge's `--upstream-events`
    /// alone decide (present, both must allow the event).
    #[serde(default)]
    pub send: Option<Patterns>,
    /// Application data kept with the session and handed to workers. (Boxed, as `info`: most
    /// tokens have neither, and every connection keeps its claims for its whole life.)
    #[serde(default)]
    pub meta: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// What other members may see of this client through presence (at most 1 KiB encoded;
    /// a larger one is not shown).
    #[serde(default)]
    pub info: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

/// A token's claims as verified: those the session keeps, and those needed only while the
/// connection is set up (kept apart, so no connection holds them for its life).
#[derive(Debug, Clone, Deserialize)]
pub struct Verified {
    /// The claims the session keeps.
    #[serde(flatten)]
    pub claims: Claims,
    /// `enc` (v1.2, part E): this client must set encryption up in its first exchange, or be
    /// closed with 4004.
    #[serde(default)]
    pub enc: bool,
}

/// A token was refused. The text is safe to send to the client and to log: it never holds the
/// token.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct AuthError {
    message: &'static str,
    reason: &'static str,
}

impl AuthError {
    /// A short label for metrics (`token_expired`, `bad_signature`, ...).
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

/// Configuration could not produce a verifier.
#[derive(Debug, Error)]
pub enum AuthConfigError {
    /// The public key file could not be read.
    #[error("cannot read JWT public key {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not a PEM key of the configured algorithm.
    #[error("invalid JWT key for {alg:?}: {source}")]
    BadKey {
        /// The configured algorithm.
        alg: JwtAlg,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
    /// An asymmetric algorithm without a key, or HS256 with a key file.
    #[error("{0}")]
    Mismatch(&'static str),
    /// A configured HS256 secret too short to resist guessing (an empty one included).
    #[error(
        "--jwt-secret is {0} bytes; at least {MIN_SECRET_LEN} are required (e.g. `openssl rand -base64 48`). \
         Leave it unset, not empty, for development mode"
    )]
    WeakSecret(usize),
    /// A configured HS256 secret long enough but made of a handful of distinct bytes (32
    /// spaces, a repeated letter): as guessable as a short one.
    #[error(
        "--jwt-secret has only {0} distinct bytes; at least {MIN_DISTINCT_SECRET_BYTES} are required \
         (e.g. `openssl rand -base64 48`)"
    )]
    RepetitiveSecret(usize),
}

/// Fewest distinct bytes an HS256 secret must hold. A random 32-byte secret has about 30; a
/// passphrase a dozen or more.
pub const MIN_DISTINCT_SECRET_BYTES: usize = 8;

/// How many different byte values `bytes` holds.
fn distinct_bytes(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|&&s| s).count()
}

/// Verifies tokens with the configured key and rules.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Whether the well-known development secret is in use.
    pub is_dev_secret: bool,
}

impl Verifier {
    /// Builds the verifier for `config`.
    pub fn from_config(config: &Config) -> Result<Verifier, AuthConfigError> {
        let (algorithm, key, is_dev_secret) = match (config.jwt_alg, &config.jwt_public_key_file) {
            (JwtAlg::Hs256, Some(_)) => {
                return Err(AuthConfigError::Mismatch(
                    "--jwt-public-key-file needs --jwt-alg RS256, ES256 or EdDSA",
                ));
            }
            (JwtAlg::Hs256, None) => {
                let secret = config.jwt_secret.as_deref();
                if let Some(secret) = secret {
                    if secret.len() < MIN_SECRET_LEN {
                        return Err(AuthConfigError::WeakSecret(secret.len()));
                    }
                    let distinct = distinct_bytes(secret.as_bytes());
                    if distinct < MIN_DISTINCT_SECRET_BYTES {
                        return Err(AuthConfigError::RepetitiveSecret(distinct));
                    }
                }
                let key = DecodingKey::from_secret(secret.unwrap_or(DEV_JWT_SECRET).as_bytes());
                // With a connect hook, tokens never reach the verifier: no development mode.
                let dev = secret.is_none() && config.hooks.connect_hook.is_none();
                (Algorithm::HS256, key, dev)
            }
            (_, None) => {
                return Err(AuthConfigError::Mismatch(
                    "--jwt-alg RS256, ES256 and EdDSA need --jwt-public-key-file",
                ));
            }
            (alg, Some(path)) => {
                let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKey {
                    path: path.display().to_string(),
                    source,
                })?;
                let (algorithm, key) = match alg {
                    JwtAlg::Rs256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)),
                    JwtAlg::Es256 => (Algorithm::ES256, DecodingKey::from_ec_pem(&pem)),
                    JwtAlg::EdDsa | JwtAlg::Hs256 => {
                        (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem))
                    }
                };
                (
                    algorithm,
                    key.map_err(|source| AuthConfigError::BadKey { alg, source })?,
                    false,
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them: a configured one
        // must also be required, or a token without it would pass.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            key,
            validation,
            is_dev_secret,
        })
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let error = |message, reason| AuthError { message, reason };
        // RFC 7515 §4.1.11: a token whose `crit` names extensions the recipient does not
        // understand must be refused, and this edge understands none.
        match jsonwebtoken::decode_header(token) {
            Ok(header) if header.crit.is_some() => {
                return Err(error("unsupported critical header", "malformed"));
            }
            Ok(_) => {}
            Err(_) => return Err(error("invalid token", "malformed")),
        }
        match jsonwebtoken::decode::<Verified>(token, &self.key, &self.validation) {
            Ok(data) if data.claims.claims.sub.is_empty() => {
                Err(error("empty sub", "invalid_claims"))
            }
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => error("token expired", "token_expired"),
                ErrorKind::ImmatureSignature => error("token not yet valid", "token_not_yet_valid"),
                ErrorKind::InvalidSignature => error("bad signature", "bad_signature"),
                ErrorKind::InvalidAlgorithm => error("wrong algorithm", "wrong_algorithm"),
                ErrorKind::InvalidIssuer => error("wrong issuer", "invalid_claims"),
                ErrorKind::InvalidAudience => error("wrong audience", "invalid_claims"),
                ErrorKind::MissingRequiredClaim(_) => {
                    error("missing required claim", "invalid_claims")
                }
                _ => error("invalid token", "malformed"),
            }),
        }
    }
}
