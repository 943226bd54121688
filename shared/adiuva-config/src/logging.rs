//! Logging: one JSON object per line (CloudWatch parses them) unless `LOG_FORMAT=pretty`; the
//! level comes from `RUST_LOG` and defaults to `info`. A line logged inside a request carries
//! the request's span (its `request_id`), domain lines included.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
            tracing_subscriber::fmt().with_env_filter(filter()).finish(),
        )
    };
    Ok(())
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The JSON format: the event's fields at the top level, and the current span's fields (the
/// request's `request_id`, `route`, `user_id`) under `span`.
pub fn json<W>(writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
}
