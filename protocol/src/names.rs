//! Room and event names: the one character set that keeps every name safe inside a Redis key's
//! hash tag, a log line and a JSON string without escaping.

use thiserror::Error;

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest event name, in bytes.
pub const MAX_EVENT_LEN: usize = 64;

/// A name that breaks the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Empty or longer than allowed.
    #[error("{what} must be 1 to {max} bytes long")]
    Length {
        /// "room" or "event".
        what: &'static str,
        /// The limit that was broken.
        max: usize,
    },
    /// Holds a character outside `A-Z a-z 0-9 . _ : @ / -`.
    #[error("{what} may only hold A-Z a-z 0-9 . _ : @ / -")]
    Character {
        /// "room" or "event".
        what: &'static str,
    },
}

/// Whether `b` belongs to the name character set.
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'/' | b'-')
}

fn check(name: &str, what: &'static str, max: usize) -> Result<(), NameError> {
    if name.is_empty() || name.len() > max {
        return Err(NameError::Length { what, max });
    }
    if !name.bytes().all(is_name_byte) {
        return Err(NameError::Character { what });
    }
    Ok(())
}

/// Checks a room name: 1 to 128 bytes of the name set.
pub fn validate_room(name: &str) -> Result<(), NameError> {
    check(name, "room", MAX_ROOM_LEN)
}

/// Longest client id, in bytes.
pub const MAX_CLIENT_LEN: usize = 64;

/// Checks a client id: 1 to 64 bytes of `A-Z a-z 0-9 _ -`. Edges issue UUIDs; the narrower set
/// (no `.`, `/`, `:` or `@`) keeps an id from ever reading as a path or a key separator.
pub fn validate_client(id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > MAX_CLIENT_LEN {
        return Err(NameError::Length {
            what: "client",
            max: MAX_CLIENT_LEN,
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(NameError::Character { what: "client" });
    }
    Ok(())
}

/// Checks an event name: 1 to 64 bytes of the name set.
pub fn validate_event(name: &str) -> Result<(), NameError> {
    check(name, "event", MAX_EVENT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_name_set() {
        assert!(validate_room("chat:42").is_ok());
        assert!(validate_room("a.b_c:d@e/f-G9").is_ok());
        assert!(validate_room(&"r".repeat(128)).is_ok());
        assert!(validate_event(&"e".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        assert!(validate_room("").is_err());
        assert!(validate_room(&"r".repeat(129)).is_err());
        assert!(validate_event(&"e".repeat(65)).is_err());
        for bad in ["a b", "a{b", "a}b", "é", "a*", "a\n"] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ids_are_uuid_like_and_never_paths() {
        assert!(validate_client("0193a7c2-5b1e-4f6a-9d2e-0123456789ab").is_ok());
        assert!(validate_client("c_1").is_ok());
        for bad in ["", "../../x", "a/b", "a:b", "a@b", "a.b", &"c".repeat(65)] {
            assert!(validate_client(bad).is_err(), "{bad:?}");
        }
    }
}
