//! The `pattern` keyword of the document's schemas: anchored sequences of character classes with
//! repetition, matched without a regex engine.

/// The patterns the document uses: `^`, then atoms (a character class `[...]` with ranges, or a
/// literal character) each with `+`, `{n}`, `{m,n}` or no quantifier, then `$`.
pub(super) struct Pattern {
    atoms: Vec<Atom>,
}

/// Characters of a class (inclusive ranges), repeated `min` to `max` times.
struct Atom {
    class: Vec<(char, char)>,
    min: usize,
    max: usize,
}

impl Pattern {
    pub(super) fn parse(text: &str) -> Pattern {
        let inner = text
            .strip_prefix('^')
            .and_then(|t| t.strip_suffix('$'))
            .unwrap_or_else(|| panic!("pattern {text:?} is not anchored"));
        let chars: Vec<char> = inner.chars().collect();
        let mut atoms = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let class = if chars[i] == '[' {
                let end = i + chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .expect("a closed class");
                let members = &chars[i + 1..end];
                let mut class = Vec::new();
                let mut j = 0;
                while j < members.len() {
                    // A `-` between two characters is a range; first or last it is itself.
                    if j + 2 < members.len() && members[j + 1] == '-' {
                        class.push((members[j], members[j + 2]));
                        j += 3;
                    } else {
                        class.push((members[j], members[j]));
                        j += 1;
                    }
                }
                i = end + 1;
                class
            } else {
                assert!(
                    !"\\.()|*?^$".contains(chars[i]),
                    "pattern {text:?}: the checker does not know {:?}",
                    chars[i]
                );
                i += 1;
                vec![(chars[i - 1], chars[i - 1])]
            };
            let (min, max) = match chars.get(i) {
                Some('+') => {
                    i += 1;
                    (1, usize::MAX)
                }
                Some('{') => {
                    let end = i + chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .expect("a closed {");
                    let bounds: String = chars[i + 1..end].iter().collect();
                    i = end + 1;
                    match bounds.split_once(',') {
                        Some((m, n)) => (m.parse().expect("a count"), n.parse().expect("a count")),
                        None => {
                            let n = bounds.parse().expect("a count");
                            (n, n)
                        }
                    }
                }
                _ => (1, 1),
            };
            atoms.push(Atom { class, min, max });
        }
        Pattern { atoms }
    }

    pub(super) fn matches(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        self.from(0, &chars)
    }

    /// Whether atoms `atom..` match all of `rest`, trying each count from the longest.
    fn from(&self, atom: usize, rest: &[char]) -> bool {
        let Some(Atom { class, min, max }) = self.atoms.get(atom) else {
            return rest.is_empty();
        };
        let run = rest
            .iter()
            .take_while(|c| class.iter().any(|(lo, hi)| (lo..=hi).contains(c)))
            .count();
        (*min..=run.min(*max))
            .rev()
            .any(|n| self.from(atom + 1, &rest[n..]))
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn patterns_match_as_a_regex_would() {
        let room = Pattern::parse("^[A-Za-z0-9._:@/-]{1,128}$");
        assert!(room.matches("chat:42/a@b.c_d-e"));
        assert!(!room.matches(""));
        assert!(!room.matches("bad room"));
        assert!(!room.matches(&"a".repeat(129)));
        assert!(room.matches(&"a".repeat(128)));
        let offset = Pattern::parse("^[0-9]+-[0-9]+_[0-9]+-[0-9]+$");
        assert!(offset.matches("1-0_17-3"));
        assert!(!offset.matches("1-0"));
        assert!(!offset.matches("1-0_17-"));
        assert!(Pattern::parse("^[0-9]+$").matches("12"));
    }
}
