//! Logging setup: text or JSON lines on stderr, filtered by `KOFU_LOG`, and with the
//! `otlp` feature and `KOFU_OTLP_ENDPOINT`, spans exported over OTLP (HTTP/protobuf)
//! in each request's W3C trace. Nothing logged anywhere carries a card id or a name;
//! sessions appear by id and cards by digest.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
pub use otlp::{continue_trace, traced_handler};

/// What must outlive the program's work: the span exporter, flushed on drop.
#[must_use]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("kofu: spans not flushed: {e}");
        }
    }
}

pub fn init(
    format: LogFormat,
    filter: &str,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = match otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otlp::layer(endpoint)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        subscriber
            .with(layer)
            .try_init()
            .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        if otlp_endpoint.is_some() {
            anyhow::bail!(
                "KOFU_OTLP_ENDPOINT is set, but this kofu was built without OTLP export (cargo feature `otlp`)"
            );
        }
        subscriber
            .try_init()
            .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
        Ok(Telemetry {})
    }
}
