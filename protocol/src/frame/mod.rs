//! Client frames (docs/protocol.md, part 1): what a client sends (`client`) and what an edge
//! answers (`server`), in either of the two encodings a connection negotiates.

pub mod client;
pub mod enc;
pub mod history;
pub mod reply;
pub mod server;

/// How a connection's frames are encoded, chosen by WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `ferrocast.v1.json`: text frames holding JSON (also when the client offers no subprotocol).
    Json,
    /// `ferrocast.v1.msgpack`: binary frames holding the same maps as MessagePack.
    MsgPack,
}

/// Subprotocol name for JSON.
pub const SUBPROTOCOL_JSON: &str = "ferrocast.v1.json";
/// Subprotocol name for MessagePack.
pub const SUBPROTOCOL_MSGPACK: &str = "ferrocast.v1.msgpack";

impl Encoding {
    /// The subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => SUBPROTOCOL_JSON,
            Encoding::MsgPack => SUBPROTOCOL_MSGPACK,
        }
    }

    /// The encoding for a subprotocol name, if supported.
    pub fn from_subprotocol(name: &str) -> Option<Encoding> {
        match name {
            SUBPROTOCOL_JSON => Some(Encoding::Json),
            SUBPROTOCOL_MSGPACK => Some(Encoding::MsgPack),
            _ => None,
        }
    }

    /// Picks the first supported offer from a `Sec-WebSocket-Protocol` header's values, in the
    /// client's order. `Ok(None)`: the client offered nothing (JSON, with no echo). `Err(())`: it
    /// offered only subprotocols we do not speak.
    #[allow(clippy::result_unit_err)]
    pub fn negotiate<'a>(
        offers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Encoding>, ()> {
        let mut offered = false;
        for offer in offers
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            offered = true;
            if let Some(enc) = Encoding::from_subprotocol(offer) {
                return Ok(Some(enc));
            }
        }
        if offered { Err(()) } else { Ok(None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_in_client_order() {
        assert_eq!(Encoding::negotiate([]), Ok(None));
        assert_eq!(
            Encoding::negotiate(["x, ferrocast.v1.msgpack", "ferrocast.v1.json"]),
            Ok(Some(Encoding::MsgPack))
        );
        assert_eq!(
            Encoding::negotiate(["ferrocast.v1.json,ferrocast.v1.msgpack"]),
            Ok(Some(Encoding::Json))
        );
        assert_eq!(Encoding::negotiate(["chat, superchat"]), Err(()));
    }
}
