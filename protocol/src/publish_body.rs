//! The HTTP API's publish body (docs/protocol.md, part 3, "Routes"): what `POST /api/publish`
//! takes, each of `/api/batch`'s messages, and each line of `emitter send --stdin`, which the
//! emitter writes back as this same body when it publishes through an edge. One definition for
//! the edge that reads it and the emitter that reads and writes it, so the three cannot drift
//! apart: its fields, that no other field is taken, and that it names exactly one target.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::keys::{Scope, Target};
use crate::names::NameError;

/// One message: its target (exactly one of `room`, `user`, `client` and `"all":true`), event,
/// data, the client ids left out, and the id that makes it idempotent.
///
/// `D` is how `data` is held, and so whether it may be left out: the API requires it
/// (`Box<RawValue>`, or `&RawValue` borrowing the text), while a `--stdin` line may leave it out
/// for `null` (`Option<&RawValue>`, which takes a missing field as `None`). Either way the JSON
/// is kept as written: published, it means number for number and key for key what the
/// publisher wrote.
///
/// Written back (with `serde_json`), it is the API's body: the target, `event`, `data`, `except`
/// always (`[]` when empty), and `id` only when there is one.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody<D> {
    /// A room's members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// A user's sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// One connection, by client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Every connection.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// Event name.
    pub event: String,
    /// The message, JSON text as written.
    pub data: D,
    /// Client ids that must not receive it.
    #[serde(default)]
    pub except: Vec<String>,
    /// The message's id when the publisher chose it: publishing it again publishes nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

/// A body whose target cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyTargetError {
    /// None of the target fields, or more than one.
    #[error("give exactly one target: \"room\", \"user\", \"client\" or \"all\":true")]
    NotOne,
    /// The one target's name breaks the naming rules.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl<D> PublishBody<D> {
    /// The one target the body names, its name checked.
    pub fn target(&self) -> Result<Target, BodyTargetError> {
        let target = match (
            self.room.as_deref(),
            self.user.as_deref(),
            self.client.as_deref(),
            self.all,
        ) {
            (Some(room), None, None, false) => Target::new(Scope::Room, room),
            (None, Some(user), None, false) => Target::new(Scope::User, user),
            (None, None, Some(client), false) => Target::new(Scope::Client, client),
            (None, None, None, true) => Ok(Target::All),
            _ => return Err(BodyTargetError::NotOne),
        };
        Ok(target?)
    }
}

// `skip_serializing_if` takes a function: `"all":false` says nothing, so it is never written.
fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    type Api = PublishBody<Box<RawValue>>;
    type Line<'a> = PublishBody<Option<&'a RawValue>>;

    #[test]
    fn the_api_requires_data_and_a_line_may_leave_it_out() {
        let bare = r#"{"all":true,"event":"e"}"#;
        assert!(serde_json::from_str::<Api>(bare).is_err());
        let line: Line = serde_json::from_str(bare).expect("data may be left out");
        assert!(line.data.is_none());
        let api: Api =
            serde_json::from_str(r#"{"all":true,"event":"e","data":null}"#).expect("null is data");
        assert_eq!(api.data.get(), "null");
    }

    #[test]
    fn other_fields_are_refused() {
        let odd = r#"{"room":"r","event":"e","data":1,"colour":1}"#;
        assert!(serde_json::from_str::<Api>(odd).is_err());
        assert!(serde_json::from_str::<Line>(odd).is_err());
    }

    #[test]
    fn exactly_one_target() {
        let target = |json: &str| serde_json::from_str::<Line>(json).expect("a body").target();
        assert_eq!(
            target(r#"{"room":"r","event":"e"}"#),
            Ok(Target::Room("r".into()))
        );
        assert_eq!(
            target(r#"{"user":"u","event":"e"}"#),
            Ok(Target::User("u".into()))
        );
        assert_eq!(
            target(r#"{"client":"c","event":"e"}"#),
            Ok(Target::Client("c".into()))
        );
        assert_eq!(target(r#"{"all":true,"event":"e"}"#), Ok(Target::All));
        for several in [
            r#"{"event":"e"}"#,
            r#"{"all":false,"event":"e"}"#,
            r#"{"room":"r","all":true,"event":"e"}"#,
            r#"{"room":"r","user":"u","event":"e"}"#,
        ] {
            assert_eq!(target(several), Err(BodyTargetError::NotOne), "{several}");
        }
        assert!(matches!(
            target(r#"{"room":"bad room","event":"e"}"#),
            Err(BodyTargetError::Name(_))
        ));
    }

    #[test]
    fn written_back_as_read() {
        let text = r#"{"user":"u","event":"e","data":{"z":1,"a":12345678901234567890.5},"except":["c1"],"id":"0190c0de-0000-7000-8000-00000000002a"}"#;
        let body: Api = serde_json::from_str(text).expect("a body");
        assert_eq!(serde_json::to_string(&body).expect("written"), text);
        let bare: Line = serde_json::from_str(r#"{"all":true,"event":"e"}"#).expect("a line");
        assert_eq!(
            serde_json::to_string(&bare).expect("written"),
            r#"{"all":true,"event":"e","data":null,"except":[]}"#
        );
    }
}
