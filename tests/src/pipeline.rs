//! What the settings promise beyond single routes: each function reads only its own settings.
//! (That every log line of a request carries its id is `tests/tests/request_logs.rs`, a
//! process of its own.)

use adiuva_config::ConfigError;

use crate::harness::unconnected_context;

#[tokio::test]
async fn a_bad_chat_setting_stops_chat_and_nothing_else() {
    let (context, _dir) = unconnected_context(&[("LLM_TIMEOUT_SECONDS", "soon")]);
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
    let (context, _dir) = unconnected_context(&[("ENV", "prod"), ("JWT_SECRET", "short")]);
    // Health verifies no token: it starts.
    assert!(health::function(&context).is_ok());
    let err = auth::function(&context).unwrap_err();
    assert!(
        matches!(err, ConfigError::InsecureInProduction(_)),
        "{err:?}"
    );
}
