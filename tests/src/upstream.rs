//! Helpers for tests of upstream messages: a chat client's token, sending, and reading the inbox.

use ferrocast_emitter::{Inbox, Received};
use serde_json::{Value, json};

use crate::{Client, DEADLINE, Token};

/// A token for a chat user: rooms and publishing under `chat:`, and a `meta` claim workers see.
pub fn chat_token(sub: &str) -> String {
    Token::user(sub, &["chat:*"])
        .claim("pub", json!(["chat:*"]))
        .claim("meta", json!({"plan": "pro", "team": 7}))
        .dev()
}

/// Sends upstream and returns the `ack`'s id; panics unless acknowledged.
pub async fn send(client: &mut Client, event: &str, data: Value) -> String {
    let ack = client
        .request(json!({"type": "send", "event": event, "data": data}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ack["id"].as_str().expect("ack id").to_owned()
}

/// Reads from `inbox` until `n` messages arrived.
pub async fn take(inbox: &mut Inbox, n: usize) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} arrived",
            out.len()
        );
        out.extend(inbox.next().await.expect("read inbox"));
    }
    out
}
