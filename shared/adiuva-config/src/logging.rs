//! Logging: one JSON object per line (CloudWatch parses them) unless `LOG_FORMAT=pretty`; the
//! level comes from `RUST_LOG` and defaults to `info`. A line logged inside a request carries
//! the request's span (its `request_id`), domain lines included.

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

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
            tracing_subscriber::fmt()
                .with_max_level(LevelFilter::TRACE)
                .finish()
                .with(filter()),
        )
    };
    Ok(())
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
/// request's `request_id`, `route`, `user_id`) under `span`.
pub fn json<W>(writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    // The builder's own level (INFO by default) lets everything through: `filter` decides.
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(writer)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
        .with(filter())
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::directives;

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
