//! What can go wrong when publishing.

use ferrocast_protocol::data::DataError;
use ferrocast_protocol::envelope::EnvelopeError;
use ferrocast_protocol::names::NameError;
use thiserror::Error;

/// A publish that did not happen.
#[derive(Debug, Error)]
pub enum EmitError {
    /// A room, event or client name breaks the naming rules.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// `data` is not valid JSON.
    #[error("data is not valid JSON: {0}")]
    InvalidJson(String),
    /// `data` is JSON that MessagePack clients cannot be sent: a number out of `f64` range
    /// (`1e400`), a string with a lone UTF-16 surrogate (`"\ud800"`), or arrays and objects
    /// nested [`ferrocast_protocol::data::MAX_DEPTH`] levels deep. Refused before publishing,
    /// since edges would otherwise skip the message for those clients without telling anyone.
    #[error(transparent)]
    UnsupportedData(#[from] DataError),
    /// The Redis URL cannot be used.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis could not be reached, or the connection broke.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (e.g. out of memory, or a script error).
    #[error("Redis refused the publish: {0}")]
    Redis(redis::RedisError),
    /// The envelope could not be built or is not valid.
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// Redis answered something the publish script never returns.
    #[error("unexpected reply from the publish script: {0}")]
    Reply(String),
    /// A reply to an inbox message that expects none: a `send`, not an `rpc`.
    #[error("the message is not an rpc call: its client waits for no reply")]
    NotACall,
}

impl From<EnvelopeError> for EmitError {
    fn from(e: EnvelopeError) -> Self {
        match e {
            EnvelopeError::Name(e) => EmitError::InvalidName(e),
            EnvelopeError::Json(e) => EmitError::InvalidJson(e.to_string()),
            EnvelopeError::NotUtf8 => EmitError::InvalidJson("not UTF-8".into()),
            other => EmitError::Envelope(other),
        }
    }
}

impl From<serde_json::Error> for EmitError {
    fn from(e: serde_json::Error) -> Self {
        EmitError::InvalidJson(e.to_string())
    }
}

impl From<redis::RedisError> for EmitError {
    fn from(e: redis::RedisError) -> Self {
        if ferrocast_redis::errors::is_transient(&e) {
            EmitError::Unavailable(e.to_string())
        } else {
            EmitError::Redis(e)
        }
    }
}

impl From<bb8::RunError<redis::RedisError>> for EmitError {
    fn from(e: bb8::RunError<redis::RedisError>) -> Self {
        match e {
            bb8::RunError::User(e) => e.into(),
            bb8::RunError::TimedOut => {
                EmitError::Unavailable("timed out waiting for a Redis connection".into())
            }
        }
    }
}
