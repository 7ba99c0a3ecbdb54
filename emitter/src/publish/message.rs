//! A message ready to publish: checked (names, JSON, what MessagePack can carry) and encoded
//! once, so publishing it cannot fail on its content.

use ferrocast_protocol::keys::Target;
use ferrocast_protocol::{Envelope, Kind, Scope, data};
use uuid::Uuid;

use crate::error::EmitError;

/// A message ready to publish: checked and encoded, so publishing it cannot fail on its content.
#[derive(Debug, Clone)]
pub struct Message {
    pub(super) target: Target,
    pub(super) envelope: Vec<u8>,
    /// The id, when the publisher chose it: publishing it again is then a no-op.
    pub(super) chosen_id: Option<Uuid>,
}

impl Message {
    /// Checks and encodes a message: `event` must be a valid event name, `json` valid JSON text,
    /// and each of `except` a valid client id. `id` defaults to a fresh UUID v7.
    pub fn new(
        target: Target,
        event: &str,
        json: Vec<u8>,
        except: Vec<String>,
        id: Option<Uuid>,
    ) -> Result<Message, EmitError> {
        Message::build(target, event, json, except, id, None)
    }

    pub(super) fn build(
        target: Target,
        event: &str,
        json: Vec<u8>,
        except: Vec<String>,
        id: Option<Uuid>,
        trace: Option<String>,
    ) -> Result<Message, EmitError> {
        for client in &except {
            Target::new(Scope::Client, client)?;
        }
        let mut envelope = Envelope::message(&target, event, json);
        envelope.except = except;
        envelope.trace = trace.or_else(current_traceparent);
        if let Some(id) = id {
            envelope.id = id;
        }
        let mut message = Message::from_envelope(&envelope)?;
        message.chosen_id = id;
        Ok(message)
    }

    /// Checks and encodes a complete envelope (for control kinds, or a caller that builds its
    /// own). A `msg`'s data must be JSON that every client can be sent, MessagePack ones
    /// included: otherwise [`EmitError::UnsupportedData`].
    pub fn from_envelope(envelope: &Envelope) -> Result<Message, EmitError> {
        // A reply's data reaches a client just as a message's does.
        let is_msg = envelope.kind == Kind::Msg
            || (envelope.kind == Kind::Reply && !envelope.data.is_empty());
        if is_msg && nests_too_deep(&envelope.data) {
            // `validate` parses with serde_json, which gives up at this depth as well and would
            // call deep but valid JSON "not valid JSON"; `data::check` names the real reason.
            data::check(&envelope.data)?;
        }
        envelope.validate()?;
        if is_msg {
            // `validate` checks only the JSON's syntax: it decodes no number or escape, so
            // `1e400` and `"\ud800"` pass it though no MessagePack client could be sent them.
            data::check(&envelope.data)?;
        }
        Ok(Message {
            target: envelope.target()?,
            envelope: envelope.encode()?,
            chosen_id: None,
        })
    }
}

impl Message {
    /// Makes publishing this message idempotent under `id`, its envelope's id: publishing it
    /// again answers the first offset and publishes nothing.
    pub fn once(mut self, id: Uuid) -> Message {
        self.chosen_id = Some(id);
        self
    }
}

/// Whether arrays and objects in `json` nest as deep as [`data::MAX_DEPTH`] or deeper, counted
/// without parsing so that any depth can be measured. Brackets inside strings do not count.
fn nests_too_deep(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= data::MAX_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The W3C traceparent of the current `tracing` span, when it carries an OpenTelemetry context.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Emitter;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    pub(super) fn trace_of(message: &Message) -> Option<String> {
        Envelope::decode(&message.envelope).ok()?.trace
    }

    // A runtime, for the emitter's (unconnected) pool.
    #[tokio::test]
    pub(super) async fn data_that_msgpack_cannot_carry_is_refused_when_the_message_is_made() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deep = nested(data::MAX_DEPTH + 1);
        for bad in [
            &b"1e400"[..],
            b"-1e400",
            br#""\ud800""#,
            br#"{"a":[1,"x\udc00y"]}"#,
            deep.as_bytes(),
        ] {
            let result = Message::new(Target::All, "e", bad.to_vec(), vec![], None);
            assert!(
                matches!(result, Err(EmitError::UnsupportedData(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // The publication API makes its messages the same way.
        let emitter = Emitter::builder("redis://127.0.0.1:1").build().unwrap();
        let result = emitter.to_room("r").message_raw("e", b"1e400".to_vec());
        assert!(
            matches!(result, Err(EmitError::UnsupportedData(_))),
            "{result:?}"
        );
        let error = Message::new(Target::All, "e", deep.into_bytes(), vec![], None).unwrap_err();
        assert!(error.to_string().contains("MessagePack"), "{error}");

        // JSON that is not JSON is still called that; what MessagePack carries still passes.
        for bad in [&b"{oops"[..], b"[", &[0xff, b'1']] {
            let result = Message::new(Target::All, "e", bad.to_vec(), vec![], None);
            assert!(
                matches!(result, Err(EmitError::InvalidJson(_))),
                "{result:?}"
            );
        }
        let brackets_in_a_string = format!("\"{}\"", "[".repeat(1000));
        for good in [
            nested(data::MAX_DEPTH - 1),
            brackets_in_a_string,
            r#"{"max":1.7976931348623157e308,"pair":"\ud83d\ude00","q":"\\\"["}"#.to_owned(),
        ] {
            let result = Message::new(Target::All, "e", good.clone().into_bytes(), vec![], None);
            assert!(result.is_ok(), "{good}: {result:?}");
        }
    }

    #[test]
    pub(super) fn the_current_span_s_trace_goes_into_the_envelope() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let outside = Message::new(Target::All, "e", b"1".to_vec(), vec![], None).unwrap();
            assert_eq!(trace_of(&outside), None);
            let span = tracing::info_span!("job");
            let _entered = span.enter();
            let message = Message::new(Target::All, "e", b"1".to_vec(), vec![], None).unwrap();
            let trace = trace_of(&message).expect("traceparent");
            let parts: Vec<&str> = trace.split('-').collect();
            assert_eq!(parts.len(), 4, "{trace}");
            assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        });
    }
}
