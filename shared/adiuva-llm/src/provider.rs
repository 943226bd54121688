//! LiteLLM-style model names (`provider/model`) resolved to an OpenAI-compatible endpoint.
//!
//! | name | endpoint | key |
//! |---|---|---|
//! | `gpt-4o`, `openai/gpt-4o` | `LLM_BASE_URL` (or `OPENAI_BASE_URL`), else OpenAI | `OPENAI_API_KEY` |
//! | `ollama/llama3` | `OLLAMA_BASE_URL` + `/v1` (default `http://localhost:11434`) | none |
//! | `openrouter/meta-llama/llama-3-70b` | OpenRouter | `OPENROUTER_API_KEY` |
//! | `anthropic/claude-3-5-sonnet-latest` | Anthropic's OpenAI compatibility API | `ANTHROPIC_API_KEY` |
//! | `gemini/gemini-1.5-flash` | Gemini's OpenAI compatibility API | `GEMINI_API_KEY` |
//! | any other `prefix/model` | `LLM_BASE_URL` (a LiteLLM proxy), name sent whole | `OPENAI_API_KEY` |

use adiuva_config::Secret;

use crate::LlmSettings;

pub(crate) const OPENAI_BASE: &str = "https://api.openai.com/v1";
pub(crate) const OPENROUTER_BASE: &str = "https://openrouter.ai/api/v1";
pub(crate) const ANTHROPIC_BASE: &str = "https://api.anthropic.com/v1";
pub(crate) const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com/v1beta/openai";

/// Where one configured model is served and under which name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name as configured (`ollama/llama3`), for logs.
    pub configured: String,
    /// The name sent in requests (`llama3`).
    pub model: String,
    /// Base URL of the OpenAI-compatible API, without a trailing slash.
    pub base_url: String,
    pub api_key: String,
}

/// Resolves a configured model name; `Err` says why the model cannot be used.
pub fn resolve(name: &str, settings: &LlmSettings) -> Result<Endpoint, String> {
    let key = |secret: &Option<Secret>| secret.as_ref().map_or("", Secret::expose).to_owned();
    let name = name.trim();
    if name.is_empty() {
        return Err("the model name is empty".to_owned());
    }
    let (prefix, rest) = match name.split_once('/') {
        Some((prefix, rest)) if !rest.is_empty() => (Some(prefix), rest),
        _ => (None, name),
    };
    let keyed = |base: &str, key: &str, key_name: &str| {
        if key.is_empty() {
            Err(format!("{name} needs {key_name}"))
        } else {
            Ok(endpoint(name, rest, base, key))
        }
    };
    match prefix.map(str::to_ascii_lowercase).as_deref() {
        None | Some("openai") => {
            let openai_key = key(&settings.openai_api_key);
            match &settings.base_url {
                None => keyed(
                    OPENAI_BASE,
                    &openai_key,
                    "OPENAI_API_KEY (or LLM_BASE_URL for a local server)",
                ),
                Some(base_url) => Ok(endpoint(name, rest, base_url, &openai_key)),
            }
        }
        Some("ollama" | "ollama_chat") => Ok(endpoint(
            name,
            rest,
            &format!("{}/v1", settings.ollama_base_url.trim_end_matches("/v1")),
            "",
        )),
        Some("openrouter") => keyed(
            OPENROUTER_BASE,
            &key(&settings.openrouter_api_key),
            "OPENROUTER_API_KEY",
        ),
        Some("anthropic") => keyed(
            ANTHROPIC_BASE,
            &key(&settings.anthropic_api_key),
            "ANTHROPIC_API_KEY",
        ),
        Some("gemini") => keyed(
            GEMINI_BASE,
            &key(&settings.gemini_api_key),
            "GEMINI_API_KEY",
        ),
        Some(other) => match &settings.base_url {
            None => Err(format!(
                "provider {other:?} has no OpenAI-compatible API we know; point LLM_BASE_URL \
                     at an OpenAI-compatible proxy (LiteLLM) that serves {name}"
            )),
            Some(base_url) => Ok(endpoint(
                name,
                name,
                base_url,
                &key(&settings.openai_api_key),
            )),
        },
    }
}

fn endpoint(configured: &str, model: &str, base_url: &str, api_key: &str) -> Endpoint {
    Endpoint {
        configured: configured.to_owned(),
        model: model.to_owned(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key: api_key.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> LlmSettings {
        LlmSettings::from_source(&adiuva_config::Source::from_pairs(pairs.iter().copied())).unwrap()
    }

    #[test]
    fn openai_needs_a_key_or_a_base_url() {
        let err = resolve("gpt-4o", &config(&[])).unwrap_err();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
        let keyed = resolve("gpt-4o", &config(&[("OPENAI_API_KEY", "sk-1")])).unwrap();
        assert_eq!(keyed.base_url, OPENAI_BASE);
        assert_eq!(
            (keyed.model.as_str(), keyed.api_key.as_str()),
            ("gpt-4o", "sk-1")
        );
        let local = resolve(
            "openai/qwen2",
            &config(&[("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/")]),
        )
        .unwrap();
        assert_eq!(local.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(local.model, "qwen2");
    }

    #[test]
    fn provider_prefixes_pick_their_endpoint_and_key() {
        let config = config(&[
            ("OPENROUTER_API_KEY", "or"),
            ("ANTHROPIC_API_KEY", "an"),
            ("GEMINI_API_KEY", "ge"),
            ("OLLAMA_BASE_URL", "http://gpu:11434"),
        ]);
        let cases = [
            ("ollama/llama3", "http://gpu:11434/v1", "llama3", ""),
            (
                "openrouter/meta-llama/llama-3-70b",
                OPENROUTER_BASE,
                "meta-llama/llama-3-70b",
                "or",
            ),
            (
                "anthropic/claude-3-5-sonnet-latest",
                ANTHROPIC_BASE,
                "claude-3-5-sonnet-latest",
                "an",
            ),
            (
                "gemini/gemini-1.5-flash",
                GEMINI_BASE,
                "gemini-1.5-flash",
                "ge",
            ),
        ];
        for (name, base, model, key) in cases {
            let endpoint = resolve(name, &config).unwrap();
            assert_eq!(
                (
                    endpoint.base_url.as_str(),
                    endpoint.model.as_str(),
                    endpoint.api_key.as_str()
                ),
                (base, model, key),
                "{name}"
            );
        }
    }

    #[test]
    fn keyless_providers_and_unknown_prefixes_are_refused() {
        let empty = config(&[]);
        for name in [
            "anthropic/claude-3-haiku",
            "gemini/gemini-pro",
            "openrouter/x/y",
        ] {
            assert!(resolve(name, &empty).is_err(), "{name}");
        }
        assert!(resolve("bedrock/anthropic.claude-v2", &empty).is_err());
        let proxied = resolve(
            "bedrock/anthropic.claude-v2",
            &config(&[("LLM_BASE_URL", "http://litellm:4000")]),
        )
        .unwrap();
        assert_eq!(proxied.model, "bedrock/anthropic.claude-v2");
        assert_eq!(
            resolve("ollama/llama3", &empty).unwrap().base_url,
            "http://localhost:11434/v1"
        );
    }
}
