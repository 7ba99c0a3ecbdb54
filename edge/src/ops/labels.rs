//! The label sets of the edge's metrics: each a fixed, small set of values, so that no client
//! can grow the number of series.

use prometheus_client::encoding::EncodeLabelSet;

/// Label: a WebSocket close code, or `other` for any code the protocol gives no meaning to. A
/// client chooses the code it closes with, so its own codes must not each make a series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code, or `other`.
    pub code: &'static str,
}

impl CodeLabel {
    /// Every code with a label of its own ([`CodeLabel::of`] maps the rest to `other`): their
    /// series exist from start-up, so a query over them returns zeros rather than nothing.
    pub const KNOWN: [u16; 20] = [
        1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 4001, 4002,
        4003, 4004, 4008, 4009, 4010,
    ];

    /// The label for close code `code`.
    pub fn of(code: u16) -> CodeLabel {
        let code = match code {
            1000 => "1000",
            1001 => "1001",
            1002 => "1002",
            1003 => "1003",
            1005 => "1005",
            1006 => "1006",
            1007 => "1007",
            1008 => "1008",
            1009 => "1009",
            1010 => "1010",
            1011 => "1011",
            1012 => "1012",
            1013 => "1013",
            4001 => "4001",
            4002 => "4002",
            4003 => "4003",
            4004 => "4004",
            4008 => "4008",
            4009 => "4009",
            4010 => "4010",
            _ => "other",
        };
        CodeLabel { code }
    }
}

/// Every `reason` of `frames_dropped`.
pub const DROP_REASONS: [&str; 5] = [
    "queue_full",
    "duplicate",
    "undecodable",
    "unencodable",
    "inbox_full",
];

/// Every `reason` of `lifecycle_dropped`.
pub const LIFECYCLE_DROP_REASONS: [&str; 3] = ["queue_full", "inbox_full", "unavailable"];

/// Label: an upstream inbox consumer group (named by the operator's workers: few).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// The group.
    pub group: String,
}

/// Labels: an HTTP API route (a fixed set) and the answer's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// The route, e.g. `publish`; `other` for unknown paths.
    pub route: &'static str,
    /// The HTTP status.
    pub status: u16,
}

/// Labels: a hook (`connect`, `join`) and how its request ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    /// The hook.
    pub hook: &'static str,
    /// `answered` (any status below 500), `failed` (5xx), `timeout`, `unreachable` or `busy`
    /// (not sent: no free place under `--hook-concurrency`).
    pub outcome: &'static str,
}

impl HookLabel {
    /// Every hook.
    pub const HOOKS: [&str; 2] = ["connect", "join"];
    /// Every outcome.
    pub const OUTCOMES: [&str; 5] = ["answered", "failed", "timeout", "unreachable", "busy"];
}

/// Label: why something was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_has_its_own_label() {
        for code in CodeLabel::KNOWN {
            assert_eq!(CodeLabel::of(code).code, code.to_string());
        }
        assert_eq!(CodeLabel::of(4999).code, "other");
    }
}
