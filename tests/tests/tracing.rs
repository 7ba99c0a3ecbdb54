//! One trace spans worker → edge: a message published inside a trace is delivered in a span of
//! the same trace, exported over OTLP/HTTP to a collector (here, a minimal one in the test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocast_emitter::Emitter;
use ferrocast_tests::{Client, Edge, RedisServer, Token};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    parent_span_id: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves OTLP/HTTP (protobuf) export requests on one connection, recording their spans.
async fn collect(mut stream: TcpStream, spans: Arc<Mutex<Vec<Exported>>>) {
    let mut buf = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let (head, length) = match request.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let length = request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                (head, length)
            }
            Ok(httparse::Status::Partial) => (0, usize::MAX),
            Err(_) => return,
        };
        if length != usize::MAX && buf.len() >= head + length {
            let body: Vec<u8> = buf.drain(..head + length).skip(head).collect();
            if let Ok(export) = ExportTraceServiceRequest::decode(body.as_slice()) {
                let mut spans = spans.lock().expect("spans");
                for resource_spans in export.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            spans.push(Exported {
                                service: service.clone(),
                                name: span.name,
                                trace_id: hex(&span.trace_id),
                                parent_span_id: hex(&span.parent_span_id),
                            });
                        }
                    }
                }
            }
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_s_trace_continues_in_the_edge_s_delivery_span() {
    let collector = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", collector.local_addr().expect("addr"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorded = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = collector.accept().await {
            tokio::spawn(collect(stream, recorded.clone()));
        }
    });

    let redis = RedisServer::start();
    let url = redis.url();
    let edge = Edge::start_with_env(
        &["--redis-url", &url, "--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let (mut client, _) = Client::connect(&edge.ws_url(), &Token::user("u", &["r"]).dev()).await;
    client.join("r").await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let worker_span = "b7ad6b7169203331";
    let emitter = Emitter::connect(url).await.expect("emitter");
    emitter
        .to_room("r")
        .trace(format!("00-{trace_id}-{worker_span}-01"))
        .emit("traced", &json!(1))
        .await
        .expect("emit");
    emitter
        .to_room("r")
        .emit("untraced", &json!(2))
        .await
        .expect("emit");
    assert_eq!(client.expect("msg").await["event"], "traced");
    assert_eq!(client.expect("msg").await["event"], "untraced");

    let mut found = None;
    for _ in 0..250 {
        found = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s.trace_id == trace_id)
            .cloned();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let span = found.expect("the edge exported a span in the publisher's trace");
    assert_eq!(span.name, "deliver");
    assert_eq!(
        span.parent_span_id, worker_span,
        "a child of the worker's span"
    );
    assert!(span.service.contains("ferrocast-edge"), "{span:?}");
    // Messages published outside any trace get no span of their own.
    let spans = spans.lock().expect("spans");
    assert_eq!(
        spans.iter().filter(|s| s.name == "deliver").count(),
        1,
        "{spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_request_carries_the_trace_of_the_edge_s_hook_span() {
    let collector = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", collector.local_addr().expect("addr"));
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorded = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = collector.accept().await {
            tokio::spawn(collect(stream, recorded.clone()));
        }
    });
    let hooks = ferrocast_tests::HookServer::start().await;
    hooks.token("opaque", json!({"user": "u"}));
    let edge = Edge::start_with_env(
        &[
            "--connect-hook",
            &hooks.url("/connect"),
            "--otlp-endpoint",
            &endpoint,
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    Client::connect_with_auth_frame(&edge.ws_url(), "opaque").await;
    let (_, traceparent, _) = hooks.requests("/connect").remove(0);
    let traceparent = traceparent.expect("the hook request carries a traceparent");
    let trace_id = traceparent.split('-').nth(1).expect("trace id").to_owned();
    let mut found = None;
    for _ in 0..250 {
        found = spans
            .lock()
            .expect("spans")
            .iter()
            .find(|s| s.trace_id == trace_id)
            .cloned();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let span = found.expect("the edge exported the hook's span");
    assert_eq!(span.name, "hook", "{span:?}");
}
