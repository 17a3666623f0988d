//! Times every Discord REST request for the
//! `sprocket_ops_discord_rest_request_duration_seconds` histogram.
//!
//! serenity offers no request hook, but its `Http::request` (through which every REST call
//! goes) is `#[instrument]`ed: a span named `request` with target `serenity::http::client`,
//! open from the call until the response (ratelimiter waits included). [`RestLatencyLayer`]
//! is a tracing layer that notes when such a span opens and records its duration when it
//! closes. It reads no span field (the request's fields never reach the metrics or a log).
//! The sink is process-wide ([`record_into`]): the binary runs one bot.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ops_core::metrics::Metrics;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// serenity's span around one REST request.
pub const SPAN_TARGET: &str = "serenity::http::client";
pub const SPAN_NAME: &str = "request";

static SINK: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Where durations go from now on (the first call wins; later calls are ignored).
pub fn record_into(metrics: Arc<Metrics>) {
    let _ = SINK.set(metrics);
}

struct Started(Instant);

/// The layer; give it a per-layer filter that enables `serenity::http::client=info` (see
/// [`filter`]), so these spans exist even when the log filter hides serenity below `warn`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RestLatencyLayer;

/// The per-layer filter: only serenity's request spans.
pub fn filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target(SPAN_TARGET, tracing::Level::INFO)
}

fn is_request(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == SPAN_NAME && meta.target() == SPAN_TARGET
}

impl<S> Layer<S> for RestLatencyLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_request(attrs.metadata()) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let started = span.extensions().get::<Started>().map(|s| s.0);
        if let (Some(started), Some(metrics)) = (started, SINK.get()) {
            metrics.discord_rest_latency(started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn rest_latency_layer_times_serenity_request_spans_only() {
        let metrics = Arc::new(Metrics::new());
        record_into(Arc::clone(&metrics));
        // The process-wide sink may already hold another test's metrics: count the delta
        // of the one the layer writes to.
        let sink = Arc::clone(SINK.get().unwrap());
        let before = sink.discord_rest_count();
        let subscriber =
            tracing_subscriber::registry().with(RestLatencyLayer.with_filter(filter()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                let span = tracing::info_span!(target: "serenity::http::client", "request");
                drop(span.enter());
            }
            // Not a REST request: another serenity span, and a span of ours with that name.
            drop(tracing::info_span!(target: "serenity::gateway::shard", "request").entered());
            drop(tracing::info_span!(target: "sprocket_ops", "request").entered());
        });
        assert_eq!(sink.discord_rest_count() - before, 3);
    }
}
