//! The "physical limit" baseline: a minimal tokio-tungstenite room server with no Redis, no
//! authentication, no history and no limits. It speaks just enough of the client protocol for
//! the scenarios (`welcome` on connect, `join`, `publish`) and writes each published frame,
//! built once, to every member, a burst per flush, as a plain tokio fan-out server would.
//! The edge's cost over this server's, for the same load, is what Ferrocast's features cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tungstenite::Message;
use tungstenite::protocol::WebSocketConfig;

use crate::report::Report;

/// Frames queued per connection; a connection whose queue is full misses frames.
const QUEUE: usize = 1024;
/// Most frames written per flush.
const BURST: usize = 256;

/// A room's members: connection id and queue.
type Members = Vec<(u64, mpsc::Sender<Message>)>;

#[derive(Default)]
struct Rooms {
    members: Mutex<HashMap<String, Members>>,
    next_id: AtomicU64,
    delivered: AtomicU64,
}

/// Serves on `listen` until interrupted; reports what it delivered.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<Report> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("baseline server on {}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    let connections = AtomicU64::new(0);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(stream, rooms.clone()));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let mut report = Report::new("baseline-server");
    report.add("connections", connections.load(Ordering::Relaxed));
    report.add("deliveries", rooms.delivered.load(Ordering::Relaxed));
    Ok(report)
}

async fn connection(stream: TcpStream, rooms: Arc<Rooms>) {
    let _ = stream.set_nodelay(true);
    // The same buffer sizes as the edge.
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let id = rooms.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let welcome = format!(
        r#"{{"type":"welcome","client":"b{id}","user":"b{id}","node":"baseline","heartbeat":25000,"recovered":{{"user":false,"all":false}}}}"#
    );
    if ws.send(Message::Text(welcome.into())).await.is_err() {
        return;
    }
    let mut joined = Vec::new();
    loop {
        tokio::select! {
            Some(first) = rx.recv() => {
                let mut next = Some(first);
                let mut count = 0;
                while let Some(frame) = next {
                    if ws.feed(frame).await.is_err() {
                        break;
                    }
                    count += 1;
                    next = if count < BURST { rx.try_recv().ok() } else { None };
                }
                rooms.delivered.fetch_add(count as u64, Ordering::Relaxed);
                if ws.flush().await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => {
                let Some(Ok(Message::Text(text))) = incoming else {
                    match incoming {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                let room = frame["room"].as_str().unwrap_or_default().to_owned();
                match frame["type"].as_str() {
                    Some("join") => {
                        if let Ok(mut members) = rooms.members.lock() {
                            members.entry(room.clone()).or_default().push((id, tx.clone()));
                        }
                        joined.push(room.clone());
                        let answer = format!(r#"{{"type":"joined","room":{},"offset":null,"recovered":false}}"#, Value::from(room));
                        if ws.send(Message::Text(answer.into())).await.is_err() {
                            break;
                        }
                    }
                    Some("publish") => publish(&rooms, &room, &frame, id),
                    _ => {}
                }
            }
        }
    }
    if let Ok(mut members) = rooms.members.lock() {
        for room in joined {
            if let Some(list) = members.get_mut(&room) {
                list.retain(|(member, _)| *member != id);
            }
        }
    }
}

/// Builds the `msg` frame once and queues it for every member of `room` (but the publisher,
/// with `"echo":false`).
fn publish(rooms: &Rooms, room: &str, frame: &Value, publisher: u64) {
    let skip = (frame["echo"] == false).then_some(publisher);
    let text = format!(
        r#"{{"type":"msg","scope":"room","room":{},"event":{},"data":{},"offset":null,"ts":{}}}"#,
        Value::from(room),
        frame["event"],
        frame["data"],
        ferrocast_protocol::envelope::now_ms()
    );
    let message = Message::Text(text.into());
    let Ok(members) = rooms.members.lock() else {
        return;
    };
    for (member, tx) in members.get(room).into_iter().flatten() {
        if Some(*member) != skip {
            let _ = tx.try_send(message.clone());
        }
    }
}
