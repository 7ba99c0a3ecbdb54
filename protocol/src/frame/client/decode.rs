//! Reading a client frame: every field any frame has, checked against what its `type` needs,
//! with the frame's `ref` named in the refusal wherever it can be read.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ClientFrame, DEFAULT_HISTORY, FrameError, MAX_HISTORY, MAX_REF, ScopeSince};
use crate::close::ErrorCode;
use crate::{names, rpc};

/// A text frame (JSON).
pub(super) fn json(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    decode::<Box<RawValue>>(
        serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        || serde_json::from_slice::<Head>(bytes).ok(),
        |raw| raw.get().as_bytes().to_vec(),
    )
}

/// A binary frame (MessagePack), its `data` turned into JSON text.
pub(super) fn msgpack(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    decode::<TranscodedJson>(
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        || rmp_serde::from_slice::<Head>(bytes).ok(),
        |t| t.0,
    )
}

/// Only the `ref`, read again when the full decode fails.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    reference: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Since {
    Offset(String),
    Scopes(ScopeSince),
}

/// Every field any frame has; which are required depends on `type`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
struct RawFrame<D> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<u64>,
    room: Option<String>,
    event: Option<String>,
    token: Option<String>,
    data: Option<D>,
    echo: Option<bool>,
    since: Option<Since>,
    rewind: Option<u64>,
    limit: Option<u64>,
    before: Option<String>,
    id: Option<String>,
    timeout: Option<u64>,
    encrypt: Option<EncryptOffer>,
    key: Option<String>,
}

/// The auth frame's `encrypt` (v1.2, part E).
#[derive(Deserialize)]
struct EncryptOffer {
    key: String,
}

/// MessagePack `data` re-encoded as JSON text.
struct TranscodedJson(Vec<u8>);

impl<'de> Deserialize<'de> for TranscodedJson {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let mut out = Vec::new();
        serde_transcode::transcode(d, &mut serde_json::Serializer::new(&mut out))
            .map_err(serde::de::Error::custom)?;
        Ok(TranscodedJson(out))
    }
}

fn bad(reference: Option<u64>, code: ErrorCode, message: impl Into<String>) -> FrameError {
    FrameError {
        reference,
        code,
        message: message.into(),
    }
}

/// A count of messages (`rewind`, `limit`): 1 to [`MAX_HISTORY`].
fn count(k: u64, name: &str, reference: Option<u64>) -> Result<u32, FrameError> {
    match u32::try_from(k) {
        Ok(k @ 1..=MAX_HISTORY) => Ok(k),
        _ => Err(bad(
            reference,
            ErrorCode::BadFrame,
            format!("{name} must be 1 to {MAX_HISTORY}"),
        )),
    }
}

fn decode<D: DeserializeOwned>(
    raw: Result<RawFrame<D>, String>,
    head: impl FnOnce() -> Option<Head>,
    data_bytes: impl FnOnce(D) -> Vec<u8>,
) -> Result<ClientFrame, FrameError> {
    let raw = raw.map_err(|e| {
        let reference = head().and_then(|h| h.reference).filter(|r| *r <= MAX_REF);
        bad(
            reference,
            ErrorCode::BadFrame,
            format!("malformed frame: {e}"),
        )
    })?;
    let reference = raw.reference;
    if reference.is_some_and(|r| r > MAX_REF) {
        return Err(bad(
            None,
            ErrorCode::BadFrame,
            "ref must be an integer from 0 to 2^53-1",
        ));
    }
    let need = |field: Option<String>, name: &str| {
        field.ok_or_else(|| bad(reference, ErrorCode::BadFrame, format!("missing {name}")))
    };
    let room = |field: Option<String>| {
        let room = need(field, "room")?;
        names::validate_room(&room)
            .map_err(|e| bad(reference, ErrorCode::InvalidRoom, e.to_string()))?;
        Ok::<_, FrameError>(room)
    };
    let event = |field: Option<String>| {
        let event = need(field, "event")?;
        names::validate_event(&event)
            .map_err(|e| bad(reference, ErrorCode::BadFrame, e.to_string()))?;
        Ok::<_, FrameError>(event)
    };
    let scopes = |since: Option<Since>| match since {
        None => Ok(ScopeSince::default()),
        Some(Since::Scopes(s)) => Ok(s),
        Some(Since::Offset(_)) => Err(bad(
            reference,
            ErrorCode::BadFrame,
            "since must be {\"user\":..,\"all\":..}",
        )),
    };
    let data = |d: Option<D>| d.map(data_bytes).unwrap_or_else(|| b"null".to_vec());
    let id = |field: Option<String>| {
        field
            .map(|id| {
                crate::request_id::validate(&id)
                    .map(|()| id)
                    .map_err(|e| bad(reference, ErrorCode::BadFrame, e.to_string()))
            })
            .transpose()
    };
    let kind = need(raw.kind, "type")?;
    Ok(match kind.as_str() {
        "auth" => ClientFrame::Auth {
            token: need(raw.token, "token")?,
            since: scopes(raw.since)?,
            encrypt: raw.encrypt.map(|offer| offer.key),
        },
        "encrypt" => ClientFrame::Encrypt {
            key: need(raw.key, "key")?,
            reference,
        },
        // Only a connection that set encryption up sends these, and its edge opens them before
        // this decoder sees what they carry.
        "enc" => {
            return Err(bad(
                reference,
                ErrorCode::BadFrame,
                "encryption is not set up on this connection",
            ));
        }
        "resume" => ClientFrame::Resume {
            since: scopes(raw.since)?,
            reference,
        },
        "join" => {
            let since = match raw.since {
                None => None,
                Some(Since::Offset(o)) => Some(o),
                Some(Since::Scopes(_)) => {
                    return Err(bad(
                        reference,
                        ErrorCode::BadFrame,
                        "since must be an offset string",
                    ));
                }
            };
            let rewind = raw
                .rewind
                .map(|k| count(k, "rewind", reference))
                .transpose()?;
            if since.is_some() && rewind.is_some() {
                return Err(bad(
                    reference,
                    ErrorCode::BadFrame,
                    "since and rewind together: resume after an offset, or rewind, not both",
                ));
            }
            ClientFrame::Join {
                room: room(raw.room)?,
                since,
                rewind,
                reference,
            }
        }
        "history" => ClientFrame::History {
            room: room(raw.room)?,
            limit: raw
                .limit
                .map(|k| count(k, "limit", reference))
                .transpose()?
                .unwrap_or(DEFAULT_HISTORY),
            before: raw.before,
            reference,
        },
        "leave" => ClientFrame::Leave {
            room: room(raw.room)?,
            reference,
        },
        "publish" => ClientFrame::Publish {
            room: room(raw.room)?,
            event: event(raw.event)?,
            data: data(raw.data),
            echo: raw.echo.unwrap_or(true),
            id: id(raw.id)?,
            reference,
        },
        "send" => ClientFrame::Send {
            event: event(raw.event)?,
            data: data(raw.data),
            id: id(raw.id)?,
            reference,
        },
        "rpc" => ClientFrame::Rpc {
            event: event(raw.event)?,
            data: data(raw.data),
            id: id(raw.id)?,
            reference: reference
                .ok_or_else(|| bad(None, ErrorCode::BadFrame, "an rpc needs a ref"))?,
            timeout_ms: match raw.timeout {
                None => rpc::DEFAULT_TIMEOUT_MS,
                Some(ms @ 1..=rpc::MAX_TIMEOUT_MS) => ms,
                Some(_) => {
                    return Err(bad(
                        reference,
                        ErrorCode::BadFrame,
                        "timeout must be 1 to 60000 milliseconds",
                    ));
                }
            },
        },
        "ping" => ClientFrame::Ping { reference },
        "presence" => ClientFrame::Presence {
            room: room(raw.room)?,
            reference,
        },
        "presence_stats" => ClientFrame::PresenceStats {
            room: room(raw.room)?,
            reference,
        },
        "refresh" => ClientFrame::Refresh {
            token: need(raw.token, "token")?,
        },
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(bad(
                reference,
                ErrorCode::UnknownType,
                format!("unknown frame type {shown:?}"),
            ));
        }
    })
}
