//! The settings source: every variable of the environment and `.env`, read once.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::ConfigError;

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `ENV`: `dev` (the default) or `prod`, which refuses settings only safe on a developer's
/// machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Dev,
    Prod,
}

/// The variables of the process: the environment over `.env`. Nothing here writes to the
/// process environment.
#[derive(Clone, Default)]
pub struct Source {
    values: HashMap<String, String>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show which variables are set, not what they are.
        let mut keys: Vec<&String> = self.values.keys().collect();
        keys.sort();
        f.debug_struct("Source").field("keys", &keys).finish()
    }
}

impl Source {
    /// The process environment, with `.env` in the working directory (if present) below it.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut values: HashMap<String, String> = match dotenvy::from_filename_iter(".env") {
            Ok(iter) => iter
                .collect::<Result<_, _>>()
                .map_err(|err| ConfigError::DotEnv(err.to_string()))?,
            Err(err) if err.not_found() => HashMap::new(),
            Err(err) => return Err(ConfigError::DotEnv(err.to_string())),
        };
        values.extend(std::env::vars());
        Ok(Self { values })
    }

    /// Exactly these variables (tests and tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value as set, untrimmed (for secrets whose spaces matter).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A trimmed value; unset and blank are both `None`.
    pub fn optional(&self, key: &str) -> Option<String> {
        self.raw(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_owned())
    }

    /// A secret; unset and blank are both `None`.
    pub fn secret(&self, key: &str) -> Option<Secret> {
        self.optional(key).map(Secret::new)
    }

    /// A URL without its trailing slash; unset and blank are both `None`.
    pub fn url(&self, key: &str) -> Option<String> {
        self.optional(key)
            .map(|url| url.trim_end_matches('/').to_owned())
    }

    pub fn number<T: FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.optional(key) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|err| ConfigError::invalid(key, format!("{value:?}: {err}"))),
        }
    }

    /// A number that must lie in `range`.
    pub fn number_in<T>(
        &self,
        key: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.number(key, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::invalid(
                key,
                format!("{value} is outside {}..={}", range.start(), range.end()),
            ))
        }
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub fn flag(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(value) => match value.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::invalid(
                    key,
                    format!("expected true or false, got {value:?}"),
                )),
            },
        }
    }

    /// A JSON list (the reference's format) or a comma-separated list.
    pub fn list(&self, key: &str, default: &str) -> Vec<String> {
        let value = self.string(key, default);
        let trimmed = value.trim();
        let inner = trimmed
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(trimmed);
        inner
            .split(',')
            .map(|item| item.trim().trim_matches('"').trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    }

    /// `ENV`.
    pub fn env(&self) -> Result<Env, ConfigError> {
        match self.string("ENV", "dev").to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" | "test" => Ok(Env::Dev),
            "prod" | "production" => Ok(Env::Prod),
            other => Err(ConfigError::invalid(
                "ENV",
                format!("expected dev or prod, got {other:?}"),
            )),
        }
    }

    /// `ADIUVA_DATA_DIR`: where the embedded backends (SQLite, the blob folder, the vector
    /// files) keep their state.
    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(self.string("ADIUVA_DATA_DIR", "./.adiuva"))
    }

    /// `PUBLIC_BASE_URL`: where clients reach this API (default `http://127.0.0.1:$PORT`);
    /// URLs the server hands out (local uploads, stub checkouts) start with it.
    pub fn public_base_url(&self) -> String {
        self.url("PUBLIC_BASE_URL").unwrap_or_else(|| {
            format!(
                "http://127.0.0.1:{}",
                self.optional("PORT").unwrap_or_else(|| "8000".into())
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_means_unset_and_bad_values_name_their_variable() {
        let source = Source::from_pairs([("A", "  "), ("PORT", "eighty"), ("ON", "Yes")]);
        assert_eq!(source.optional("A"), None);
        assert_eq!(source.string("A", "x"), "x");
        assert_eq!(
            source.number::<u16>("PORT", 1).unwrap_err().to_string(),
            "invalid PORT: \"eighty\": invalid digit found in string"
        );
        assert!(source.flag("ON", false).unwrap());
        assert!(source.flag("PORT", false).is_err());
        assert!(
            Source::from_pairs([("N", "0")])
                .number_in("N", 5u32, 1..=10)
                .is_err()
        );
    }

    #[test]
    fn lists_are_json_or_comma_separated() {
        let source = Source::from_pairs([
            ("J", r#"["app://.", "http://localhost:3000"]"#),
            ("C", "https://a.example, https://b.example"),
        ]);
        assert_eq!(source.list("J", ""), ["app://.", "http://localhost:3000"]);
        assert_eq!(
            source.list("C", ""),
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(source.list("UNSET", "[\"x\"]"), ["x"]);
    }

    #[test]
    fn env_and_derived_defaults() {
        assert_eq!(Source::default().env().unwrap(), Env::Dev);
        assert_eq!(
            Source::from_pairs([("ENV", "production")]).env().unwrap(),
            Env::Prod
        );
        assert!(Source::from_pairs([("ENV", "staging")]).env().is_err());
        assert_eq!(
            Source::from_pairs([("PORT", "9")]).public_base_url(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            Source::from_pairs([("PUBLIC_BASE_URL", "https://api.example/")]).public_base_url(),
            "https://api.example"
        );
    }

    #[test]
    fn secrets_and_sources_are_redacted_in_debug() {
        let source = Source::from_pairs([("JWT_SECRET", "super-secret-value")]);
        assert!(!format!("{source:?}").contains("super-secret-value"));
        let secret = source.secret("JWT_SECRET").unwrap();
        assert!(!format!("{secret:?}").contains("super-secret-value"));
        assert_eq!(secret.expose(), "super-secret-value");
    }
}
