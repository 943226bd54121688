//! Logging: one JSON object per line (CloudWatch parses them) unless `LOG_FORMAT=pretty`; the
//! level comes from `RUST_LOG` and defaults to `info`. A line logged inside a request carries
//! the request's span (its `request_id`), domain lines included.

use tracing_subscriber::EnvFilter;

use crate::{ConfigError, Source};

/// Installs the global subscriber. Calling it twice (tests) is harmless.
pub fn init(source: &Source) -> Result<(), ConfigError> {
    let json = match source
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}
