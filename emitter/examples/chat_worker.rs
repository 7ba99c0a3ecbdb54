//! A chat back end in one file: clients `send` `chat.send` upstream, this worker checks each
//! message and publishes it to the room; a message it refuses is answered to its sender alone.
//!
//! ```text
//! edge --redis-url redis://127.0.0.1:6379 --upstream-events 'chat.*'
//! cargo run -p ferrocast-emitter --example chat_worker
//! # a client in room chat:1 sends:
//! {"type":"send","event":"chat.send","data":{"room":"chat:1","text":"hello"},"ref":1}
//! # and every member of chat:1 gets:
//! {"type":"msg","scope":"room","room":"chat:1","event":"chat.message","data":{"from":"alice","text":"hello"},...}
//! ```
//!
//! With `--upstream-lifecycle join` on the edges it also greets every client that joins a chat
//! room, from the `$join` lifecycle event.
//!
//! It also answers two calls (`rpc` frames, v1.2): `chat.time` with the server's clock, and
//! `chat.echo` with its data (refusing a null one, to show `reply_error`):
//!
//! ```text
//! {"type":"rpc","event":"chat.time","ref":2}
//! {"type":"reply","ref":2,"data":{"now":1764943200000}}
//! {"type":"rpc","event":"chat.echo","ref":3}
//! {"type":"error","ref":3,"code":"RPC_ERROR","message":"nothing to echo","data":{"hint":"send some data"}}
//! ```
//!
//! Run as many copies as you like (each with its own FERROCAST_CONSUMER): they share the
//! messages, and one that dies has its unfinished messages picked up by the others.

use ferrocast_emitter::{EmitError, Emitter, Inbox, Lifecycle, Received, Upstream};
use serde::Deserialize;
use serde_json::json;

/// What a client sends in `data`.
#[derive(Deserialize)]
struct ChatSend {
    room: String,
    text: String,
}

const MAX_TEXT_CHARS: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url =
        std::env::var("FERROCAST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let consumer = std::env::var("FERROCAST_CONSUMER").unwrap_or_else(|_| "chat-worker-1".into());
    let emitter = Emitter::connect(url.as_str()).await?;
    let mut inbox = Inbox::builder(url.as_str(), "chat", consumer)
        .connect()
        .await?;
    eprintln!("chat worker: consuming chat.send");
    inbox
        .run(|received| handle(emitter.clone(), received))
        .await?;
    Ok(())
}

/// Publishes a good message to its room and answers a bad one to its sender. An error (Redis
/// unreachable) leaves the message in the inbox, to be retried.
async fn handle(emitter: Emitter, received: Received) -> Result<(), EmitError> {
    if let Some(Lifecycle::Join { room, .. }) = received.lifecycle() {
        if room.starts_with("chat:") {
            let m = &received.message;
            let text = format!("welcome to {room}, {}", m.user);
            emitter
                .to_client(&m.client)
                .emit("chat.greeting", &json!({"room": room, "text": text}))
                .await?;
        }
        return Ok(());
    }
    if received.message.expects_reply() {
        return answer(&emitter, &received.message).await;
    }
    let m = received.message;
    if m.event != "chat.send" {
        return Ok(()); // Another worker group's business.
    }
    match check(&m.data) {
        Ok(chat) => {
            emitter
                .to_room(&chat.room)
                .emit("chat.message", &json!({"from": m.user, "text": chat.text}))
                .await?;
        }
        Err(reason) => {
            emitter
                .to_client(&m.client)
                .emit("chat.error", &json!({"reason": reason}))
                .await?;
        }
    }
    Ok(())
}

/// Answers the calls this worker serves; others are another worker group's business.
async fn answer(emitter: &Emitter, call: &Upstream) -> Result<(), EmitError> {
    if call.rpc_expired() {
        return Ok(()); // The client has had its TIMEOUT: nobody waits for the answer.
    }
    match call.event.as_str() {
        "chat.time" => {
            let now = ferrocast_protocol::envelope::now_ms();
            emitter.reply(call, &json!({"now": now})).await?;
        }
        "chat.echo" if call.data == b"null" => {
            let hint = json!({"hint": "send some data"});
            emitter
                .reply_error(call, "nothing to echo", Some(&hint))
                .await?;
        }
        "chat.echo" => {
            emitter.reply_raw(call, call.data.clone()).await?;
        }
        _ => {}
    }
    Ok(())
}

/// The business rules: a valid chat room name, and a text that is neither empty nor too long.
/// (A real back end would also check that the sender may post there, e.g. from its `meta`.)
fn check(data: &[u8]) -> Result<ChatSend, &'static str> {
    let chat: ChatSend = serde_json::from_slice(data).map_err(|_| "expected {room, text}")?;
    if !chat.room.starts_with("chat:")
        || ferrocast_protocol::names::validate_room(&chat.room).is_err()
    {
        return Err("not a chat room");
    }
    let chars = chat.text.trim().chars().count();
    if chars == 0 || chars > MAX_TEXT_CHARS {
        return Err("text must be 1 to 500 characters");
    }
    Ok(chat)
}
