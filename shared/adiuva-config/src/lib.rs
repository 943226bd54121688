//! Settings and the per-process context.
//!
//! [`Source`] holds the environment (and `.env` in the working directory, which the real
//! environment overrides), read once. It is only a lookup: each subsystem owns a settings struct
//! that reads and validates its own variables (`AuthSettings` in adiuva-auth, `LlmSettings` in
//! adiuva-llm, ...), so a function reads only what it uses and a bad chat variable cannot stop
//! the health function. An unset and an empty variable both mean "not configured".
//!
//! [`Context`] is what every function is built from: the source plus the components (database
//! pool, blob store, account service, ...) built from it on first request and shared afterwards.
//! A component is any type that implements [`Component`]; the context never names one, so a
//! function binary links only the components it asks for. Building a component does no
//! network I/O (pools and SDK clients connect on first use), so a cold start stays fast.

mod context;
mod issuer;
pub mod logging;
mod secret;
mod source;

pub use context::{Component, Context};
pub use issuer::{check_issuer, is_loopback_host};
pub use secret::{MIN_SECRET_BYTES, SECRET_FILE};
pub use source::{Env, Secret, Source};

use std::fmt;

/// Why a setting, or a component built from settings, cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable has a value that cannot be used.
    Invalid { key: &'static str, reason: String },
    /// `ENV=prod` with a setting that is only safe on a developer's machine.
    InsecureInProduction(String),
    /// `.env` exists but cannot be read.
    DotEnv(String),
    /// A component cannot be built from otherwise valid settings (e.g. S3 without credentials).
    Unusable {
        component: &'static str,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { key, reason } => write!(f, "invalid {key}: {reason}"),
            Self::InsecureInProduction(reason) => {
                write!(f, "refusing to start with ENV=prod: {reason}")
            }
            Self::DotEnv(reason) => write!(f, "failed to read .env: {reason}"),
            Self::Unusable { component, reason } => write!(f, "cannot build {component}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            reason: reason.into(),
        }
    }

    pub fn unusable(component: &'static str, reason: impl fmt::Display) -> Self {
        Self::Unusable {
            component,
            reason: reason.to_string(),
        }
    }
}
