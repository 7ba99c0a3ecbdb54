//! The `history` answer (v1.2): `{"type":"history","room":R,"ref":N,"messages":[msg…],
//! "offset":O,"more":bool}`, with each message a whole `msg` frame. Written by hand for JSON, as
//! `msg` frames are, so each message's `data` goes out byte for byte as its publisher wrote it;
//! MessagePack carries it transcoded, as in a `msg` frame.

use serde::Serialize;

use super::Encoding;
use super::server::{EncodeError, MsgFrame, MsgWire};

/// A page of a room's history, oldest message first.
#[derive(Debug, Clone)]
pub struct HistoryFrame<'a> {
    /// The room.
    pub room: &'a str,
    /// The request's `ref`.
    pub reference: Option<u64>,
    /// The messages, oldest first.
    pub messages: &'a [MsgFrame<'a>],
    /// The history's newest offset (not the page's), `None` for an empty history.
    pub offset: Option<&'a str>,
    /// Whether older messages remain before the page's first.
    pub more: bool,
}

impl HistoryFrame<'_> {
    /// Encodes the answer.
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        match encoding {
            Encoding::Json => self.encode_json(),
            Encoding::MsgPack => self.encode_msgpack(),
        }
    }

    fn encode_json(&self) -> Result<Vec<u8>, EncodeError> {
        let data: usize = self.messages.iter().map(|m| m.data.len() + 192).sum();
        let mut out = Vec::with_capacity(data + 128);
        out.extend_from_slice(b"{\"type\":\"history\",\"room\":");
        serde_json::to_writer(&mut out, self.room)?;
        if let Some(reference) = self.reference {
            out.extend_from_slice(b",\"ref\":");
            out.extend_from_slice(reference.to_string().as_bytes());
        }
        out.extend_from_slice(b",\"messages\":[");
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            message.write_json(&mut out)?;
        }
        out.extend_from_slice(b"],\"offset\":");
        serde_json::to_writer(&mut out, &self.offset)?;
        out.extend_from_slice(b",\"more\":");
        out.extend_from_slice(if self.more { b"true" } else { b"false" });
        out.push(b'}');
        Ok(out)
    }

    fn encode_msgpack(&self) -> Result<Vec<u8>, EncodeError> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            room: &'a str,
            #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
            reference: Option<u64>,
            messages: Vec<MsgWire<'a>>,
            offset: Option<&'a str>,
            more: bool,
        }
        Ok(rmp_serde::to_vec_named(&Wire {
            kind: "history",
            room: self.room,
            reference: self.reference,
            messages: self.messages.iter().map(MsgWire).collect(),
            offset: self.offset,
            more: self.more,
        })?)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::keys::Scope;

    fn msg<'a>(data: &'a [u8], offset: &'a str) -> MsgFrame<'a> {
        MsgFrame {
            scope: Scope::Room,
            room: Some("chat:1"),
            event: "say",
            data,
            offset: Some(offset),
            id: Uuid::nil(),
            ts: 5,
        }
    }

    #[test]
    fn json_keeps_each_message_byte_for_byte() {
        let messages = [msg(br#"{ "n": 1.50 }"#, "1-0_1-0"), msg(b"[2]", "2-0_1-0")];
        let frame = HistoryFrame {
            room: "chat:1",
            reference: Some(7),
            messages: &messages,
            offset: Some("9-0_1-0"),
            more: true,
        };
        let text = String::from_utf8(frame.encode(Encoding::Json).unwrap()).unwrap();
        assert!(text.contains(r#""data":{ "n": 1.50 },"#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "history");
        assert_eq!(v["ref"], 7);
        assert_eq!(v["offset"], "9-0_1-0");
        assert_eq!(v["more"], true);
        assert_eq!(v["messages"][1]["type"], "msg");
        assert_eq!(v["messages"][1]["data"], serde_json::json!([2]));
        assert_eq!(v["messages"][0]["offset"], "1-0_1-0");
    }

    #[test]
    fn an_empty_page_and_msgpack() {
        let frame = HistoryFrame {
            room: "r",
            reference: None,
            messages: &[],
            offset: None,
            more: false,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&frame.encode(Encoding::Json).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"history","room":"r","messages":[],"offset":null,"more":false})
        );
        let messages = [msg(br#"{"k":[1,"two"]}"#, "1-0_1-0")];
        let frame = HistoryFrame {
            messages: &messages,
            ..frame
        };
        let v: serde_json::Value =
            rmp_serde::from_slice(&frame.encode(Encoding::MsgPack).unwrap()).unwrap();
        assert_eq!(
            v["messages"][0]["data"],
            serde_json::json!({"k": [1, "two"]})
        );
        assert_eq!(v["type"], "history");
        assert!(v.get("ref").is_none());
    }
}
