//! redis-rs clients made from a URL (or Cluster nodes) and the configured TLS, so every pool and
//! every Cluster connection of either side is made the same way.

use redis::IntoConnectionInfo;
use redis::cluster::ClusterClientBuilder;

use crate::tls::Tls;

/// Why a `rediss://…#insecure` URL is refused.
pub const INSECURE: &str = "a rediss:// URL with #insecure turns certificate checks off, which \
     Ferrocast does not do: give --redis-ca-file, with a certificate naming the host (or IP \
     address) the URL uses";

/// Why settings cannot make a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not a Redis URL redis-rs can read.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Certificates were given for a URL that does not use TLS.
    #[error("--redis-ca-file, --redis-cert-file and --redis-key-file need rediss:// URLs, not {0}")]
    NotTls(String),
    /// `#insecure`: certificate checks would be off.
    #[error("{INSECURE}")]
    Insecure,
}

/// Whether `url` uses TLS; refuses one whose certificate checks are turned off.
pub fn uses_tls(url: &str) -> Result<bool, ClientError> {
    let info = url
        .into_connection_info()
        .map_err(|e| ClientError::Url(e.to_string()))?;
    match info.addr() {
        redis::ConnectionAddr::TcpTls { insecure: true, .. } => Err(ClientError::Insecure),
        redis::ConnectionAddr::TcpTls { .. } => Ok(true),
        _ => Ok(false),
    }
}

/// A client for the Redis at `url` (`redis://`, `rediss://`, `unix://`), with the certificates of
/// `tls` for `rediss://`.
pub fn client(url: &str, tls: &Tls) -> Result<redis::Client, ClientError> {
    let secure = uses_tls(url)?;
    if tls.is_default() {
        return redis::Client::open(url).map_err(|e| ClientError::Url(e.to_string()));
    }
    if !secure {
        return Err(ClientError::NotTls(redacted(url)));
    }
    redis::Client::build_with_tls(url, tls.certificates())
        .map_err(|e| ClientError::Url(e.to_string()))
}

/// A Cluster client builder for `nodes`, with the certificates of `tls` when the nodes use
/// `rediss://` (the nodes the Cluster redirects to are then reached over TLS too).
pub fn cluster_builder(nodes: &[String], tls: &Tls) -> Result<ClusterClientBuilder, ClientError> {
    let mut secure = Vec::with_capacity(nodes.len());
    for node in nodes {
        secure.push(uses_tls(node)?);
    }
    let builder = ClusterClientBuilder::new(nodes.to_vec());
    if tls.is_default() {
        return Ok(builder);
    }
    if let Some(plain) = nodes.iter().zip(&secure).find(|(_, s)| !**s) {
        return Err(ClientError::NotTls(redacted(plain.0)));
    }
    Ok(builder.certs(tls.certificates()))
}

/// `url` without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_rediss_and_insecure_is_refused() {
        assert!(!uses_tls("redis://127.0.0.1:6379").expect("plain"));
        assert!(uses_tls("rediss://redis.example:6380").expect("tls"));
        assert!(matches!(
            uses_tls("rediss://redis.example:6380/#insecure"),
            Err(ClientError::Insecure)
        ));
        assert!(client("redis://127.0.0.1:6379", &Tls::default()).is_ok());
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(
            redacted("rediss://user:s3cret@redis.example:6380"),
            "rediss://***@redis.example:6380"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
