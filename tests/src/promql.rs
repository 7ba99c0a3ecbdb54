//! Just enough of PromQL to name the metrics an expression reads, so that a test can check each
//! one against what an edge exports.

use std::collections::BTreeSet;

/// Aggregation operators: followed by `by (…)`, `without (…)` or their argument list.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];
/// Keywords whose parenthesised list holds label names, not metrics.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Keywords that stand alone.
const KEYWORDS: [&str; 5] = ["bool", "and", "or", "unless", "offset"];

/// The metric names `expr` selects: identifiers that are not functions, aggregations, keywords
/// or label names (label matchers, grouping lists, strings and ranges are skipped).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let plain = strip(expr);
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number (0.99, 1e3): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let called = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&word.as_str()) && called {
            // Skip the list of label names.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
        } else if !called
            && !AGGREGATIONS.contains(&word.as_str())
            && !KEYWORDS.contains(&word.as_str())
        {
            names.insert(word);
        }
    }
    names
}

/// `expr` without its strings, label matchers (`{…}`) and ranges (`[…]`).
fn strip(expr: &str) -> String {
    let mut out = String::new();
    let mut quote = None;
    let mut depth = 0;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn names_are_found_and_everything_else_is_not() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, hook) (rate(a_bucket{job=~"x|y", l="b c"}[5m])))"#
            ),
            ["a_bucket"]
        );
        assert_eq!(
            names(
                r#"sum by (instance) (rate(a_total{r=~"q"}[1m])) / sum(rate(b_total[1m])) without (x) > 0.05"#
            ),
            ["a_total", "b_total"]
        );
        assert_eq!(names("absent(up{job=~\"f.*\"} == 1)"), ["up"]);
        assert_eq!(names("count(a == 0) or vector(0)"), ["a"]);
        assert_eq!(
            names("a / on (instance) group_left (x) b > bool 1e3"),
            ["a", "b"]
        );
        assert_eq!(names("max(a - b offset 5m)"), ["a", "b"]);
    }
}
