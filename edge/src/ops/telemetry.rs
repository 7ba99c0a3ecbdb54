//! Logs and traces. Logs: human-readable or JSON lines on stderr, filtered by `--log`. Traces:
//! OpenTelemetry spans exported over OTLP/HTTP when `--otlp-endpoint` is set; a message whose
//! envelope carries a W3C `traceparent` is delivered in a span continuing the publisher's trace.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the trace exporter alive; dropping it flushes the spans not exported yet.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. A filter that does not parse falls back to `info`, and an
/// exporter that cannot be built leaves tracing off, each with a warning, rather than stopping
/// the edge.
pub fn init(format: LogFormat, filter: &str, otlp_endpoint: Option<&str>, node: &str) -> Telemetry {
    let (filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let (provider, otlp_error) = match otlp_endpoint.map(|e| tracer_provider(e, node)) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    // Each layer has its own filter: `--log` quiets the logs, not the traces.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ferrocast-edge"))
            .with_filter(LevelFilter::INFO)
    });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(otel).with(fmt).init();
    if let Some(error) = bad_filter {
        tracing::warn!(%error, "invalid --log filter; using info");
    }
    if let Some(error) = otlp_error {
        tracing::warn!(%error, "cannot export traces; tracing is off");
    }
    Telemetry { provider }
}

fn tracer_provider(endpoint: &str, node: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let endpoint = endpoint.trim_end_matches('/');
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("ferrocast-edge")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node.to_owned(),
        ))
        .build();
    // The exporter's HTTP client runs on tokio, so the batching must too (the default batch
    // processor exports from a thread of its own, outside any runtime).
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// Makes `span` a child of the W3C `traceparent`, when it parses.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}
