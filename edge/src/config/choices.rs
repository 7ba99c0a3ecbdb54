//! The flags whose values are a fixed set of names.

use clap::ValueEnum;

/// JWT signature algorithms an edge can be configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlg {
    /// HMAC-SHA256 with a shared secret (--jwt-secret).
    #[value(name = "HS256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256 (--jwt-public-key-file).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256 with SHA-256 (--jwt-public-key-file).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519 (--jwt-public-key-file).
    #[value(name = "EdDSA")]
    EdDsa,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object per line, for machines.
    Json,
}

/// Whether clients that offer permessage-deflate get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// Negotiated with every client that offers it.
    On,
    /// Never negotiated.
    Off,
}
