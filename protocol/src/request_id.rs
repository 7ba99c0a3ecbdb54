//! Client-chosen ids on `publish`, `send` and `rpc` (v1.2): 1 to 64 bytes of `A-Z a-z 0-9 _ -`,
//! so a client can retry a frame whose answer it lost. Ids are the user's own: the same id from
//! two users names two requests, because everything derived from one is keyed by the user too.

use uuid::Uuid;

use crate::names::NameError;

/// Longest id, in bytes.
pub const MAX_LEN: usize = 64;

/// Seconds a `send` or `rpc` id is remembered: a retry within this stores nothing new.
pub const REMEMBER_SECS: u64 = 600;

/// Namespace of the message ids derived from client-chosen ids (a fixed, random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x5b0c_3f1e_8a47_4d2b_9e61_c2a4_7f10_d9e3);

/// Checks an id: 1 to [`MAX_LEN`] bytes of `A-Z a-z 0-9 _ -` (nothing that could read as a key
/// separator).
pub fn validate(id: &str) -> Result<(), NameError> {
    if id.is_empty() || id.len() > MAX_LEN {
        return Err(NameError::Length {
            what: "id",
            max: MAX_LEN,
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(NameError::Character { what: "id" });
    }
    Ok(())
}

/// The message id of `user`'s request `id`: the same on every edge and every retry, different
/// for another user's same `id` (a name-based UUID of the user and the id, each length-prefixed
/// so no two pairs read alike).
pub fn message_id(user: &str, id: &str) -> Uuid {
    let mut name = Vec::with_capacity(user.len() + id.len() + 16);
    for part in [user, id] {
        name.extend_from_slice(part.len().to_string().as_bytes());
        name.push(b':');
        name.extend_from_slice(part.as_bytes());
    }
    Uuid::new_v5(&NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_users_own() {
        assert_eq!(message_id("ann", "a-1"), message_id("ann", "a-1"));
        assert_ne!(message_id("ann", "a-1"), message_id("bob", "a-1"));
        // Length prefixes: ("a:b", "c") and ("a", "b:c") cannot meet.
        assert_ne!(message_id("ab", "c"), message_id("a", "bc"));
        assert_eq!(message_id("ann", "a-1").get_version_num(), 5);
    }

    #[test]
    fn ids_are_short_and_plain() {
        assert!(validate("retry_7-A").is_ok());
        assert!(validate(&"x".repeat(64)).is_ok());
        for bad in ["", &"x".repeat(65), "a b", "a:b", "a/b", "é"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
