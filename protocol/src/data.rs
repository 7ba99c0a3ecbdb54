//! What a message's `data` must be: JSON that every encoding can carry.
//!
//! `data` travels as the publisher's JSON text and is spliced into JSON frames as is, but
//! MessagePack clients get it transcoded. Some valid JSON has no MessagePack form (numbers out of
//! `f64` range such as `1e400`, strings with lone UTF-16 surrogates) or nests deeper than the
//! decoder allows. Such data would be acknowledged and then silently skipped for MessagePack
//! clients, so every entrance (client `publish` and `send`, the emitter, the CLI, the HTTP API)
//! checks it here first and refuses it with a clear error.

use thiserror::Error;

/// Deepest nesting of arrays and objects accepted: one below serde_json's recursion limit (128),
/// which the MessagePack transcoding runs into.
pub const MAX_DEPTH: usize = 127;

/// `data` that cannot be delivered to every client.
#[derive(Debug, Error)]
#[error(
    "data cannot be carried as MessagePack (numbers must fit a 64-bit float, strings be valid \
     Unicode with no lone surrogate, nesting at most 127 deep): {0}"
)]
pub struct DataError(String);

/// Checks that `json` is one JSON value that MessagePack clients can be sent.
pub fn check(json: &[u8]) -> Result<(), DataError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut ser = rmp_serde::Serializer::new(std::io::sink());
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| DataError(e.to_string()))?;
    de.end().map_err(|e| DataError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        for ok in [
            &br#"{"text":"hi","n":[1,2.5,-3e10,null,true]}"#[..],
            b"\"\\ud83d\\ude00\"",
            b"1.7976931348623157e308",
            b" 42 ",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(ok)));
        }
    }

    #[test]
    fn refuses_what_msgpack_cannot_carry() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        for bad in [
            &b"1e400"[..],
            b"-1e400",
            b"\"\\ud800\"",
            b"\"a\\udc00b\"",
            deep.as_bytes(),
            b"{} {}",
            b"",
        ] {
            assert!(check(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let shallow = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check(shallow.as_bytes()).is_ok());
    }
}
