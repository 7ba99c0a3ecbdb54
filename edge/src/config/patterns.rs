//! Name patterns, as tokens' claims and flags give them: exact names, prefixes ending in `*`,
//! or `*` for every name.

use serde::Deserialize;

/// A list of room patterns: exact names, prefixes ending in `*`, or `*` for every room.
///
/// Kept exactly as long as it is: every connection holds its token's lists for its whole life,
/// and a list deserialized as a `Vec` keeps room for four entries whatever it holds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Vec<String>")]
pub struct Patterns(Box<[Box<str>]>);

impl From<Vec<String>> for Patterns {
    fn from(patterns: Vec<String>) -> Self {
        Patterns(patterns.into_iter().map(String::into_boxed_str).collect())
    }
}

impl Patterns {
    /// Whether `room` matches any pattern.
    pub fn allows(&self, room: &str) -> bool {
        self.0.iter().any(|p| matches(p, room))
    }
}

/// Whether `name` matches `pattern`: the same name, or a prefix ending in `*`.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_or_by_prefix() {
        let p = Patterns::from(vec!["chat:42".to_owned(), "room-*".to_owned()]);
        assert!(p.allows("chat:42"));
        assert!(!p.allows("chat:420"));
        assert!(p.allows("room-1"));
        assert!(p.allows("room-"));
        assert!(!p.allows("room"));
        assert!(Patterns::from(vec!["*".to_owned()]).allows("anything"));
        assert!(!Patterns::default().allows("x"));
    }
}
