//! Logging: one JSON object per line (CloudWatch parses them) unless `LOG_FORMAT=pretty`; the
//! level comes from `RUST_LOG` and defaults to `info`. A line logged inside a request carries
//! the request's span (its `request_id`), domain lines included.
//!
//! Metrics lines (CloudWatch Embedded Metric Format, see adiuva-http's request log) are events
//! of the target [`METRICS_TARGET`] whose `emf` field is the whole JSON object: they are written
//! as that object alone on its line, in either format and whatever `RUST_LOG` says, and never
//! as a log line. Only a function in Lambda emits them.

use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};

/// The target of metrics events: `tracing::info!(target: METRICS_TARGET, emf = line)`.
pub const METRICS_TARGET: &str = "adiuva_metrics";

use crate::{ConfigError, Source};

/// Installs the global subscriber. Calling it twice (tests) is harmless.
pub fn init(source: &Source) -> Result<(), ConfigError> {
    let as_json = match source
        .string("LOG_FORMAT", "json")
        .to_ascii_lowercase()
        .as_str()
    {
        "json" => true,
        "pretty" | "text" => false,
        other => {
            return Err(ConfigError::invalid(
                "LOG_FORMAT",
                format!("expected json or pretty, got {other:?}"),
            ));
        }
    };
    let _ = if as_json {
        tracing::subscriber::set_global_default(json(std::io::stdout))
    } else {
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_filter(log_filter()))
                .with(metrics(std::io::stdout)),
        )
    };
    Ok(())
}

/// What is logged: `RUST_LOG`, never the metrics lines.
fn log_filter() -> Targets {
    filter().with_target(METRICS_TARGET, LevelFilter::OFF)
}

/// The metrics lines, whatever `RUST_LOG` says (they are data, not diagnostics).
fn metrics<S, W>(writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    Metrics { writer }.with_filter(Targets::new().with_target(METRICS_TARGET, LevelFilter::TRACE))
}

/// Writes the `emf` field of a metrics event as its own line.
struct Metrics<W> {
    writer: W,
}

impl<S, W> Layer<S> for Metrics<W>
where
    S: Subscriber,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _context: LayerContext<'_, S>) {
        let mut line = EmfField(None);
        event.record(&mut line);
        if let Some(mut line) = line.0 {
            line.push('\n');
            // One write: the line is never interleaved with another.
            let _ = self.writer.make_writer().write_all(line.as_bytes());
        }
    }
}

struct EmfField(Option<String>);

impl Visit for EmfField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "emf" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// `RUST_LOG`: a default level and `target=level` directives, comma-separated (`info`,
/// `info,sqlx=warn,adiuva_auth=debug`). Unset, empty or not of this form: `info`. (Targets
/// rather than `EnvFilter`: span and field directives, which nothing here uses, would link a
/// regex engine into every binary.)
fn filter() -> Targets {
    directives(std::env::var("RUST_LOG").ok().as_deref())
}

fn directives(rust_log: Option<&str>) -> Targets {
    rust_log
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// The JSON format: the event's fields at the top level, and the current span's fields (the
/// request's `request_id`, `route`, `user_id`) under `span`; metrics lines as they are.
pub fn json<W>(writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Clone + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer.clone())
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(log_filter()),
        )
        .with(metrics(writer))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Level;

    use super::{METRICS_TARGET, directives, json};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_metrics_event_is_its_json_object_alone_on_its_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing::subscriber::with_default(json(move || writer.clone()), || {
            tracing::info!(status = 200, "request completed");
            tracing::info!(target: METRICS_TARGET, emf = r#"{"_aws":{},"Latency":1.5}"#);
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{output}");
        assert!(lines[0].contains("request completed"), "{output}");
        assert_eq!(lines[1], r#"{"_aws":{},"Latency":1.5}"#);
    }

    #[test]
    fn rust_log_sets_a_default_level_and_levels_per_target() {
        let filter = directives(Some("warn,adiuva_auth=debug,sqlx=error"));
        assert!(filter.would_enable("adiuva_storage", &Level::WARN));
        assert!(!filter.would_enable("adiuva_storage", &Level::INFO));
        assert!(filter.would_enable("adiuva_auth::tokens", &Level::DEBUG));
        assert!(!filter.would_enable("adiuva_auth", &Level::TRACE));
        assert!(!filter.would_enable("sqlx::query", &Level::WARN));
        assert!(directives(Some("debug")).would_enable("anything", &Level::DEBUG));
    }

    #[test]
    fn unset_empty_or_unreadable_rust_log_is_info() {
        for rust_log in [None, Some(""), Some("  "), Some("adiuva=loud")] {
            let filter = directives(rust_log);
            assert!(
                filter.would_enable("adiuva_http", &Level::INFO),
                "{rust_log:?}"
            );
            assert!(
                !filter.would_enable("adiuva_http", &Level::DEBUG),
                "{rust_log:?}"
            );
        }
    }
}
