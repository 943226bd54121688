//! What the settings promise beyond single routes: each function reads only its own settings.
//! (That every log line of a request carries its id is `tests/tests/request_logs.rs`, a
//! process of its own.)

use adiuva_config::ConfigError;

use crate::harness::{TempDir, test_context};

fn context(pairs: &[(&str, &str)]) -> (adiuva_config::Context, TempDir) {
    let dir = TempDir::new();
    let mut settings = vec![("ADIUVA_DATA_DIR", dir.0.to_str().unwrap().to_owned())];
    settings.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (
        test_context("postgres://postgres@127.0.0.1:5432/unused", &settings),
        dir,
    )
}

#[tokio::test]
async fn a_bad_chat_setting_stops_chat_and_nothing_else() {
    let (context, _dir) = context(&[("LLM_TIMEOUT_SECONDS", "soon")]);
    assert!(health::function(&context).is_ok());
    assert!(auth::function(&context).is_ok());
    let err = chat::function(&context).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "LLM_TIMEOUT_SECONDS",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(chat_ws::ChatWs::new(&context).is_err());
}

#[tokio::test]
async fn production_refuses_a_weak_jwt_secret_only_where_tokens_are_used() {
    let (context, _dir) = context(&[("ENV", "prod"), ("JWT_SECRET", "short")]);
    // Health verifies no token: it starts.
    assert!(health::function(&context).is_ok());
    let err = auth::function(&context).unwrap_err();
    assert!(
        matches!(err, ConfigError::InsecureInProduction(_)),
        "{err:?}"
    );
}
