//! Who may use the API: a request carries one of the `--api-key`s, as `Authorization: Bearer
//! KEY`, `X-API-Key: KEY`, or (for the console, whose browser asks for it) HTTP Basic with the
//! key as the password. With no key configured the API is off.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{Api, ApiError};
use crate::bus::Bus;

/// Refuses every API request while no key is configured (404: the API is off).
pub(super) async fn api_on<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    request: Request,
    next: Next,
) -> Response {
    if api.keys.is_empty() {
        return api_off().into_response();
    }
    next.run(request).await
}

pub(crate) fn api_off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UNKNOWN_TYPE",
        "the HTTP API is off: configure --api-key",
    )
}

/// Refuses API requests without one of the configured keys (401), and every API request when
/// none is configured (404: the API is off).
pub(super) async fn authorize<B: Bus>(
    State(api): State<Arc<Api<B>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match admitted(&api, &headers) {
        Admission::Off => api_off().into_response(),
        Admission::Admitted => next.run(request).await,
        Admission::NoKey => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "FORBIDDEN",
                "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key: KEY)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Compares two keys in time that depends on their lengths only, not on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key `headers` offer, by any of the accepted means.
fn offered(headers: &HeaderMap) -> Option<String> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(key) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return Some(key.trim().to_owned());
    }
    if let Some(basic) = authorization.and_then(|v| v.strip_prefix("Basic ")) {
        // The user name is the browser's to ask for; only the password is the key.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, key)| key.to_owned());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| key.trim().to_owned())
}

/// Whether `offered` is one of `keys`.
fn accepted(keys: &[String], offered: Option<&str>) -> bool {
    offered.is_some_and(|key| keys.iter().any(|k| same(k.as_bytes(), key.as_bytes())))
}

/// What a request's key gets it.
pub(crate) enum Admission {
    /// In.
    Admitted,
    /// No key, or a wrong one.
    NoKey,
    /// Nothing: the API is off (no key configured).
    Off,
}

/// Whether `headers` carry one of `api`'s keys.
pub(crate) fn admitted<B>(api: &Api<B>, headers: &HeaderMap) -> Admission {
    if api.keys.is_empty() {
        Admission::Off
    } else if accepted(&api.keys, offered(headers).as_deref()) {
        Admission::Admitted
    } else {
        Admission::NoKey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn a_key_comes_as_bearer_header_or_basic_password() {
        let offer = |name: &str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
            offered(&headers)
        };
        assert_eq!(offer("authorization", "Bearer k1 ").as_deref(), Some("k1"));
        assert_eq!(offer("x-api-key", "k2").as_deref(), Some("k2"));
        // "ops:k:3" as Basic: the password may hold colons.
        assert_eq!(
            offer("authorization", "Basic b3BzOms6Mw==").as_deref(),
            Some("k:3")
        );
        assert_eq!(offer("authorization", "Basic !!!"), None);
        assert!(accepted(&["k1".into()], Some("k1")));
        assert!(!accepted(&["k1".into()], None));
    }
}
