//! TLS to Redis (`rediss://`): one set of certificates for every connection either side opens,
//! the pools', the Cluster's (the nodes it is redirected to included) and the edge's own pub/sub
//! reader. Server certificates are checked against the system's roots, or only against a CA
//! file when one is given, and so is the host name; a client certificate and key give mutual
//! TLS. rustls, never OpenSSL. There is no switch that turns the checks off: a Redis reached by
//! IP address needs a certificate naming that address.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificates are: the same three flags for the edge and the `emitter` command
/// (global there: they may follow the subcommand).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsFiles {
    /// For rediss:// URLs: PEM CA certificate(s) that Redis's certificate must chain to, instead
    /// of the system's roots. The host name the URL uses is always checked against the
    /// certificate (an IP address too: the certificate must name it).
    #[arg(
        long = "redis-ca-file",
        value_name = "FILE",
        env = "FERROCAST_REDIS_CA_FILE",
        global = true
    )]
    pub ca_file: Option<PathBuf>,
    /// For rediss:// URLs: PEM client certificate (chain) for a Redis that requires one (mutual
    /// TLS). Needs --redis-key-file.
    #[arg(
        long = "redis-cert-file",
        value_name = "FILE",
        env = "FERROCAST_REDIS_CERT_FILE",
        global = true
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of --redis-cert-file.
    #[arg(
        long = "redis-key-file",
        value_name = "FILE",
        env = "FERROCAST_REDIS_KEY_FILE",
        global = true
    )]
    pub key_file: Option<PathBuf>,
}

/// The certificates, read and checked.
#[derive(Clone, Default)]
pub struct Tls {
    ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// Certificates that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of what it should.
    #[error("{flag} {path}: {why}")]
    Invalid {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error("--redis-cert-file and --redis-key-file go together")]
    Unpaired,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

fn invalid(flag: &'static str, path: &Path, why: impl ToString) -> TlsError {
    TlsError::Invalid {
        flag,
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

impl TlsFiles {
    /// Reads the files and checks that each holds what it should, so a wrong file stops a
    /// process at start rather than failing every connection later.
    pub fn load(&self) -> Result<Tls, TlsError> {
        let ca = match &self.ca_file {
            Some(path) => {
                let pem = read("--redis-ca-file", path)?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("--redis-ca-file", path, e))?;
                if certs.is_empty() {
                    return Err(invalid("--redis-ca-file", path, "no PEM certificate in it"));
                }
                Some(pem)
            }
            None => None,
        };
        let client = match (&self.cert_file, &self.key_file) {
            (Some(cert_path), Some(key_path)) => {
                let cert = read("--redis-cert-file", cert_path)?;
                let key = read("--redis-key-file", key_path)?;
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("--redis-cert-file", cert_path, e))?;
                if chain.is_empty() {
                    return Err(invalid(
                        "--redis-cert-file",
                        cert_path,
                        "no PEM certificate in it",
                    ));
                }
                PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
                    invalid("--redis-key-file", key_path, "no PEM private key in it")
                })?;
                Some((cert, key))
            }
            (None, None) => None,
            _ => return Err(TlsError::Unpaired),
        };
        Ok(Tls { ca, client })
    }
}

impl Tls {
    /// Whether nothing is configured: `rediss://` then uses the system's roots and no client
    /// certificate.
    pub fn is_default(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }

    /// The certificates as redis-rs takes them.
    pub fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        }
    }

    /// A rustls configuration for a connection of our own (the pub/sub reader): the same roots
    /// and client certificate redis-rs uses.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let roots = root_store(self.ca.as_deref(), "--redis-ca-file")?;
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match &self.client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--redis-cert-file: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| "--redis-key-file: no PEM private key".to_owned())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("--redis-cert-file: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The roots a server's certificate is checked against: only the PEM certificates of `ca` when
/// given (named `flag` in errors), otherwise the system's.
pub fn root_store(ca: Option<&[u8]>, flag: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("{flag}: {e}"))?;
                roots.add(cert).map_err(|e| format!("{flag}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{flag}: no PEM certificate in it"));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(format!(
                    "no system root certificates to check servers' against: give {flag}"
                ));
            }
        }
    }
    Ok(roots)
}
