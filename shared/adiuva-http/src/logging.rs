//! Logging: JSON lines (CloudWatch parses them) unless `LOG_FORMAT=pretty`; the level comes from
//! `RUST_LOG` and defaults to `info`.

use adiuva_config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice (tests) is harmless.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
