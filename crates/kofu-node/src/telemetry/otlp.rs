//! OTLP span export (cargo feature `otlp`): the exporter, and the two places where a
//! request's W3C trace context becomes the OpenTelemetry parent of a span: the access
//! log's `request` span (the kiosk's `traceparent`) and a forwarded call served here
//! (the context the calling node put into the frame).

use std::sync::Arc;

use kofu_proto::TraceParent;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The layer exporting spans to `endpoint` (an OTLP/HTTP collector, e.g.
/// `http://127.0.0.1:4318/v1/traces`), and its provider to flush at exit.
pub(super) fn layer<S>(
    endpoint: &str,
) -> anyhow::Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    SdkTracerProvider,
)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("otlp exporter for {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("kofu")
                .build(),
        )
        .build();
    let tracer = provider.tracer("kofu");
    Ok((tracing_opentelemetry::layer().with_tracer(tracer), provider))
}

/// Makes `incoming` the OpenTelemetry parent of `span`, and answers the span's own
/// context as a `traceparent` (what forwarded calls carry), or `None` when no
/// exporter runs (the span then has no OpenTelemetry context).
pub fn continue_trace(span: &tracing::Span, incoming: Option<TraceParent>) -> Option<TraceParent> {
    if let Some(t) = incoming {
        let parent = SpanContext::new(
            TraceId::from_bytes(t.trace_id),
            SpanId::from_bytes(t.parent_id),
            TraceFlags::new(t.flags),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    own.is_valid().then(|| TraceParent {
        trace_id: own.trace_id().to_bytes(),
        parent_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    })
}

/// Serves forwarded calls in a span whose OpenTelemetry parent is the calling node's
/// request span (the frame's trace context, which `kofu-wire` puts in scope).
pub fn traced_handler(inner: kofu_wire::CallHandler) -> kofu_wire::CallHandler {
    Arc::new(move |body, age| {
        let inner = inner.clone();
        Box::pin(async move {
            let span = tracing::info_span!("forwarded");
            let _ = continue_trace(&span, kofu_wire::current_trace());
            inner(body, age).instrument(span).await
        })
    })
}
