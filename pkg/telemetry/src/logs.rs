//! JSON log lines joined to traces: every line written inside a span carries the span's
//! `trace_id` and `span_id`, so a log search finds the trace and a trace finds its logs.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Where the subscriber that formats events can be reached from inside a format call:
/// `tracing::dispatcher::get_default` answers "none" while an event is being dispatched
/// under a scoped subscriber, so the dispatcher is remembered when it is registered.
pub(crate) type DispatchSlot = Arc<OnceLock<WeakDispatch>>;

/// A layer that only fills a [`DispatchSlot`] when its subscriber becomes a dispatcher.
pub(crate) struct RegisterDispatch(DispatchSlot);

impl RegisterDispatch {
    /// The layer, behind a filter that wants nothing: a layer without a filter of its own
    /// would enable every span and event of every crate at every level for the whole stack
    /// (costly, and their spans would hide the request's from the database hook).
    pub(crate) fn layer<S>(slot: DispatchSlot) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        RegisterDispatch(slot).with_filter(tracing_subscriber::filter::filter_fn(|_| false))
    }
}

impl<S: Subscriber> Layer<S> for RegisterDispatch {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// Wraps a JSON event format, adding `"trace_id"` and `"span_id"` first in each object.
pub(crate) struct WithTraceIds<F> {
    pub(crate) inner: F,
    pub(crate) dispatch: DispatchSlot,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx
            .lookup_current()
            .map(|span| span.id())
            .and_then(|id| {
                // The OpenTelemetry layer keeps the ids; it is reached through the dispatcher
                // (never while this span's extensions are borrowed).
                let dispatch = self.dispatch.get()?.upgrade()?;
                tracing_opentelemetry::get_otel_context(&id, &dispatch)
            })
            .map(|cx| cx.span().span_context().clone())
            .filter(|span| span.is_valid());
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id(),
                ids.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
}
