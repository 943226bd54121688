//! The server's secret, `JWT_SECRET`: it signs access tokens, and the keys of the other signed
//! things (upload and download URLs, stub links, sync cursors) are derived from it, one per
//! purpose (`adiuva_checksum::derive_key`).
//!
//! Where it comes from:
//! - `JWT_SECRET` when set (untrimmed: spaces are part of it). With `ENV=prod` it must be at
//!   least [`MIN_SECRET_BYTES`] long.
//! - Unset or empty on a developer's machine: a random secret generated once and kept in
//!   `{ADIUVA_DATA_DIR}/jwt-secret` (mode 0600), so tokens and URLs survive a restart. There is
//!   no public default: a default that ships with the code lets anyone who read the code sign
//!   tokens for any account of a server that kept it.
//! - Unset with `ENV=prod`, or in AWS Lambda (`AWS_LAMBDA_FUNCTION_NAME`): refused. Each Lambda
//!   instance has a disk of its own, so a generated secret would differ per instance and a
//!   token issued by one would fail on the next.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{ConfigError, Env, Secret, Source};

/// Shortest `JWT_SECRET` accepted in production: 256 bits for HMAC-SHA-256.
pub const MIN_SECRET_BYTES: usize = 32;

/// The file under `ADIUVA_DATA_DIR` that keeps the generated development secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// The public default that earlier versions used outside production; refused everywhere, as a
/// `.env` copied from an old `.env.example` may still carry it.
const RETIRED_DEFAULT: &str = "change-me-in-production";

impl Source {
    /// The server's secret (see the module documentation), checked for `env`.
    pub fn server_secret(&self, env: Env) -> Result<Secret, ConfigError> {
        match self.raw("JWT_SECRET").filter(|secret| !secret.is_empty()) {
            Some(RETIRED_DEFAULT) => Err(ConfigError::invalid(
                "JWT_SECRET",
                "is the old public default; remove it (a secret is generated for development) \
                 or set a random secret of at least 32 bytes",
            )),
            Some(secret) if env == Env::Prod && secret.len() < MIN_SECRET_BYTES => {
                Err(ConfigError::InsecureInProduction(format!(
                    "JWT_SECRET is {} bytes; use at least {MIN_SECRET_BYTES}",
                    secret.len()
                )))
            }
            Some(secret) => Ok(Secret::new(secret)),
            None if env == Env::Prod => Err(ConfigError::InsecureInProduction(
                "JWT_SECRET is empty or unset; set a random secret of at least 32 bytes".to_owned(),
            )),
            None if self.optional("AWS_LAMBDA_FUNCTION_NAME").is_some() => {
                Err(ConfigError::invalid(
                    "JWT_SECRET",
                    "is unset in AWS Lambda; a secret generated per instance would make each \
                     instance refuse the others' tokens: set it for the function",
                ))
            }
            None => dev_secret(&self.data_dir().join(SECRET_FILE)),
        }
    }
}

/// The development secret kept at `path`, generated on first use. Two processes starting at
/// once both end up with the one that was linked into place first.
fn dev_secret(path: &Path) -> Result<Secret, ConfigError> {
    let unusable = |reason: String| ConfigError::unusable("the development JWT secret", reason);
    match read_secret(path) {
        Ok(secret) => return Ok(secret),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(unusable(format!("{}: {err}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|err| unusable(err.to_string()))?;
    let text: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    create_once(path, &text).map_err(|err| unusable(format!("{}: {err}", path.display())))?;
    read_secret(path).map_err(|err| unusable(format!("{}: {err}", path.display())))
}

/// Reads a kept secret; one that others may read, or that is too short, is an error rather
/// than something to use.
fn read_secret(path: &Path) -> io::Result<Secret> {
    let text = fs::read_to_string(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "is readable by others (mode {:o}); chmod 600 it or delete it",
                mode & 0o777
            )));
        }
    }
    let secret = text.trim();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(io::Error::other("holds too short a secret; delete it"));
    }
    Ok(Secret::new(secret))
}

/// Writes `text` to a temp file of mode 0600 beside `path`, then links it into place, which
/// fails if `path` exists: a concurrent writer's secret is never overwritten, and a reader never
/// sees a half-written file.
fn create_once(path: &Path, text: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temp: PathBuf = dir.join(format!(".{SECRET_FILE}.{}.tmp", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    });
    let linked = written.and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match linked {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "adiuva-config-{name}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn source(dir: &TempDir, pairs: &[(&str, &str)]) -> Source {
        let mut all = vec![("ADIUVA_DATA_DIR", dir.0.to_str().unwrap())];
        all.extend_from_slice(pairs);
        Source::from_pairs(all)
    }

    #[test]
    fn dev_generates_a_secret_once_keeps_it_private_and_reuses_it() {
        let dir = TempDir::new("secret");
        let first = source(&dir, &[]).server_secret(Env::Dev).unwrap();
        assert_eq!(first.expose().len(), 64);
        assert_ne!(first.expose(), RETIRED_DEFAULT);
        let file = dir.0.join(SECRET_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        // A later start (an empty value is unset) reads the same secret.
        let again = source(&dir, &[("JWT_SECRET", "")])
            .server_secret(Env::Dev)
            .unwrap();
        assert_eq!(again, first);
        // Another data directory is another secret.
        let other = TempDir::new("other");
        assert_ne!(source(&other, &[]).server_secret(Env::Dev).unwrap(), first);
        // A secret that is set wins, and nothing is written for it.
        let set = TempDir::new("set");
        let secret = source(&set, &[("JWT_SECRET", "mine")])
            .server_secret(Env::Dev)
            .unwrap();
        assert_eq!(secret.expose(), "mine");
        assert!(!set.0.join(SECRET_FILE).exists());
    }

    #[test]
    fn a_kept_secret_others_can_read_is_refused() {
        let dir = TempDir::new("open");
        source(&dir, &[]).server_secret(Env::Dev).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.0.join(SECRET_FILE);
            fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                source(&dir, &[]).server_secret(Env::Dev),
                Err(ConfigError::Unusable { .. })
            ));
        }
    }

    #[test]
    fn prod_lambda_and_the_old_default_are_refused() {
        let dir = TempDir::new("refused");
        for value in [None, Some(""), Some("short-secret")] {
            let pairs: Vec<(&str, &str)> = value.map(|v| ("JWT_SECRET", v)).into_iter().collect();
            assert!(
                matches!(
                    source(&dir, &pairs).server_secret(Env::Prod),
                    Err(ConfigError::InsecureInProduction(_))
                ),
                "{value:?}"
            );
        }
        assert!(
            source(&dir, &[("JWT_SECRET", "0123456789abcdef0123456789abcdef")])
                .server_secret(Env::Prod)
                .is_ok()
        );
        for env in [Env::Dev, Env::Prod] {
            assert!(matches!(
                source(&dir, &[("JWT_SECRET", RETIRED_DEFAULT)]).server_secret(env),
                Err(ConfigError::Invalid {
                    key: "JWT_SECRET",
                    ..
                })
            ));
        }
        let lambda = source(&dir, &[("AWS_LAMBDA_FUNCTION_NAME", "adiuva-auth")]);
        assert!(matches!(
            lambda.server_secret(Env::Dev),
            Err(ConfigError::Invalid {
                key: "JWT_SECRET",
                ..
            })
        ));
        // Nothing was generated on the way.
        assert!(!dir.0.join(SECRET_FILE).exists());
    }
}
