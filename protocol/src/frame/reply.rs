//! The answers to an `rpc` that carry a worker's `data` (v1.2): `reply`, and the `RPC_ERROR`
//! `error`. Built like `msg` frames, not through serde's `ServerFrame`: `data` is the worker's
//! JSON, spliced in byte for byte for JSON clients and transcoded for MessagePack ones.

use serde::Serialize;

use super::Encoding;
use super::server::EncodeError;
use crate::close::ErrorCode;

/// A worker's answer to one call, for the client that made it.
#[derive(Debug, Clone, Copy)]
pub struct ReplyFrame<'a> {
    /// The `ref` of the client's `rpc` frame.
    pub reference: u64,
    /// The worker's JSON text; `None` only with an `error` that gave none.
    pub data: Option<&'a [u8]>,
    /// The worker's refusal: the frame is then `{"type":"error","code":"RPC_ERROR",...}`.
    pub error: Option<&'a str>,
}

impl ReplyFrame<'_> {
    /// Encodes `{"type":"reply","ref":N,"data":D}`, or
    /// `{"type":"error","ref":N,"code":"RPC_ERROR","message":M,"data":D?}` for a refusal.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        match encoding {
            Encoding::Json => self.encode_json(),
            Encoding::MsgPack => self.encode_msgpack(),
        }
    }

    fn encode_json(&self) -> Result<Vec<u8>, EncodeError> {
        let data = self.data.unwrap_or_default();
        let mut out = Vec::with_capacity(data.len() + 96);
        match self.error {
            None => out.extend_from_slice(b"{\"type\":\"reply\",\"ref\":"),
            Some(_) => out.extend_from_slice(b"{\"type\":\"error\",\"ref\":"),
        }
        out.extend_from_slice(itoa::Buffer::new().format(self.reference).as_bytes());
        if let Some(message) = self.error {
            out.extend_from_slice(b",\"code\":\"");
            out.extend_from_slice(ErrorCode::RpcError.as_str().as_bytes());
            out.extend_from_slice(b"\",\"message\":");
            serde_json::to_writer(&mut out, message)?;
        }
        match self.data {
            Some(data) => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data);
            }
            None if self.error.is_none() => out.extend_from_slice(b",\"data\":null"),
            None => {}
        }
        out.push(b'}');
        Ok(out)
    }

    fn encode_msgpack(&self) -> Result<Vec<u8>, EncodeError> {
        #[derive(Serialize)]
        struct Wire<'a, D: Serialize> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(rename = "ref")]
            reference: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            code: Option<ErrorCode>,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<D>,
        }
        let data = match (self.data, self.error) {
            (Some(data), _) => Some(data),
            (None, None) => Some(&b"null"[..]),
            (None, Some(_)) => None,
        };
        let mut json = data.map(serde_json::Deserializer::from_slice);
        let wire = Wire {
            kind: if self.error.is_some() {
                "error"
            } else {
                "reply"
            },
            reference: self.reference,
            code: self.error.map(|_| ErrorCode::RpcError),
            message: self.error,
            data: json.as_mut().map(serde_transcode::Transcoder::new),
        };
        Ok(rmp_serde::to_vec_named(&wire)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: ReplyFrame<'_>) -> String {
        String::from_utf8(frame.encode(Encoding::Json).unwrap()).unwrap()
    }

    fn msgpack(frame: ReplyFrame<'_>) -> serde_json::Value {
        rmp_serde::from_slice(&frame.encode(Encoding::MsgPack).unwrap()).unwrap()
    }

    #[test]
    fn a_reply_carries_the_workers_data_as_written() {
        let reply = ReplyFrame {
            reference: 7,
            data: Some(br#"{ "t": 1.50 }"#),
            error: None,
        };
        assert_eq!(
            json(reply),
            r#"{"type":"reply","ref":7,"data":{ "t": 1.50 }}"#
        );
        assert_eq!(
            msgpack(reply),
            serde_json::json!({"type": "reply", "ref": 7, "data": {"t": 1.5}})
        );
    }

    #[test]
    fn a_refusal_is_an_rpc_error_with_optional_data() {
        let refusal = ReplyFrame {
            reference: 8,
            data: None,
            error: Some("no \"such\" room"),
        };
        assert_eq!(
            json(refusal),
            r#"{"type":"error","ref":8,"code":"RPC_ERROR","message":"no \"such\" room"}"#
        );
        assert_eq!(
            msgpack(refusal),
            serde_json::json!({"type": "error", "ref": 8, "code": "RPC_ERROR", "message": "no \"such\" room"})
        );
        let with_data = ReplyFrame {
            data: Some(br#"[1]"#),
            ..refusal
        };
        let value: serde_json::Value = serde_json::from_str(&json(with_data)).unwrap();
        assert_eq!(value["data"], serde_json::json!([1]));
        assert_eq!(msgpack(with_data)["data"], serde_json::json!([1]));
    }
}
