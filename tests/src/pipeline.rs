//! What the settings promise beyond single routes: each function reads only its own settings.
//! (That every log line of a request carries its id is `tests/tests/request_logs.rs`, a
//! process of its own.)

use adiuva_auth::Accounts;
use adiuva_config::ConfigError;

use crate::harness::{TempDir, test_context, unconnected_context};

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

/// Without `JWT_SECRET` in development, the server signs with a secret generated once into its
/// data directory: a token issued before a restart verifies after it, and a token signed with
/// the public default earlier versions used (how a dev server was taken over) does not.
#[tokio::test]
async fn development_signs_with_a_secret_generated_once_never_a_default() {
    let dir = TempDir::new();
    let start = || {
        test_context(
            "postgres://postgres@127.0.0.1:5432/unused",
            &[
                ("JWT_SECRET", ""),
                ("ADIUVA_DATA_DIR", dir.0.to_str().unwrap()),
            ],
        )
    };
    let first: Accounts = start().get().unwrap();
    let (token, _) = first
        .jwt()
        .issue("user-1", 0, None, adiuva_db::now_ms())
        .unwrap();
    let file = dir.0.join(adiuva_config::SECRET_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // A restart reads the same secret.
    let restarted: Accounts = start().get().unwrap();
    assert_eq!(restarted.verify_token(&token).unwrap().sub, "user-1");
    // The old public default signs nothing this server accepts, and is refused as a setting.
    let default = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({
            "sub": "user-1", "ver": 0, "iss": "adiuva-api", "aud": "adiuva-app",
            "iat": 0, "exp": 4_000_000_000u64,
        }),
        &jsonwebtoken::EncodingKey::from_secret(b"change-me-in-production"),
    )
    .unwrap();
    assert!(restarted.verify_token(&default).is_err());
    let (old_default, _old_dir) = unconnected_context(&[("JWT_SECRET", "change-me-in-production")]);
    assert!(matches!(
        auth::function(&old_default).unwrap_err(),
        ConfigError::Invalid {
            key: "JWT_SECRET",
            ..
        }
    ));
    // In a Lambda, no secret is no start.
    let (lambda, _lambda_dir) = unconnected_context(&[
        ("JWT_SECRET", ""),
        ("AWS_LAMBDA_FUNCTION_NAME", "adiuva-auth"),
    ]);
    assert!(auth::function(&lambda).is_err());
}
