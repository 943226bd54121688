//! Registration, login, refresh-token rotation, logout, password and email changes, and
//! authentication of access tokens.

use std::sync::Arc;

use adiuva_access::tiers::live_tier;
use adiuva_access::{Caller, Role, TeamRole, Tier, TierSource, effective_tier};
use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::{Database, is_unique_violation, new_id, now_ms};
use adiuva_limits::{Limits, Subject};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::events::{self, EventType, NewEvent};
use crate::tokens::{AccessClaims, JwtKeys};
use crate::{AuthError, AuthSettings, Device, password, refresh, sessions};

/// What register, login and refresh return (the reference's `AuthTokens`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthTokens {
    /// A JWT to send as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Single use: exchange it at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Expiry of the access token, milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// The reference's `UserProfile`; `tier` is read live: the better of the own subscription's
/// and a team seat's.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    pub id: String,
    pub email: String,
    pub tier: Tier,
    /// `own`: the caller's subscription; `team`: a seat in a team with an active subscription.
    pub tier_source: TierSource,
}

impl From<&Caller> for UserProfile {
    fn from(caller: &Caller) -> Self {
        Self {
            id: caller.id.clone(),
            email: caller.email.clone(),
            tier: caller.tier,
            tier_source: caller.tier_source,
        }
    }
}

/// `GET /auth/me`: the profile and the caller's teams.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentProfile {
    pub id: String,
    pub email: String,
    pub tier: Tier,
    /// `own`: the caller's subscription; `team`: a seat in a team with an active subscription.
    pub tier_source: TierSource,
    /// Every team the caller is a member of, oldest membership first.
    pub teams: Vec<TeamSeat>,
}

/// One of the caller's teams and their role in it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamSeat {
    pub id: String,
    pub role: TeamRole,
}

/// The algorithms a member's public key may be for.
pub const KEY_ALGORITHMS: [&str; 3] = ["x25519", "p256", "rsa-oaep-256"];
/// The longest public key accepted, in base64 characters (1 KiB).
pub const MAX_PUBLIC_KEY_CHARS: usize = 1024;

/// A member's public key, which admins wrap team keys with.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKey {
    /// Standard base64, at most 1 KiB of text.
    #[cfg_attr(feature = "openapi", schema(max_length = 1024, min_length = 1))]
    pub public_key: String,
    /// `x25519`, `p256` or `rsa-oaep-256`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^(x25519|p256|rsa-oaep-256)$"))]
    pub algorithm: String,
}

/// The account service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    /// Brute-force limits on every password and refresh-token check.
    limits: Limits,
    jwt: JwtKeys,
    bcrypt_cost: u32,
    refresh_ttl_ms: i64,
}

impl Component for Accounts {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = AuthSettings::from_source(context.source(), context.env())?;
        Ok(Self::new(context.get()?, context.get()?, &settings))
    }
}

impl Accounts {
    pub fn new(db: Database, limits: Limits, settings: &AuthSettings) -> Self {
        let refresh_ttl_ms =
            i64::try_from(settings.refresh_token_ttl.as_millis()).unwrap_or(i64::MAX);
        Self {
            inner: Arc::new(Inner {
                db,
                limits,
                jwt: JwtKeys::new(settings),
                bcrypt_cost: settings.bcrypt_cost,
                refresh_ttl_ms,
            }),
        }
    }

    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.inner.jwt
    }

    /// Creates an account. Every attempt counts against the client address's registrations
    /// (`AUTH_REGISTRATIONS_PER_ADDRESS` an hour; 429 `too_many_registrations` past it), except
    /// one refused as invalid input, so a typo does not use up a household's allowance; a
    /// successful one counts, since each account costs a bcrypt hash and brings per-user limits
    /// of its own. A taken email also counts as a failure of the address (it is how addresses
    /// are enumerated).
    ///
    /// Registering signs the new account in: it starts the account's first session (a new
    /// device, in the security log).
    pub async fn register(
        &self,
        email: &str,
        password: String,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let failures = [Subject::Address(device.address)];
        let attempt = self.limited(
            &failures,
            |outcome| matches!(outcome, Err(AuthError::EmailTaken)),
            self.create_account(email, password, device),
        );
        self.limited(
            &[Subject::Registration(device.address)],
            // Refused before any work (invalid input, or the failure limit): not counted.
            |outcome| {
                !matches!(
                    outcome,
                    Err(AuthError::InvalidEmail(_)
                        | AuthError::InvalidPassword
                        | AuthError::Limited(_))
                )
            },
            attempt,
        )
        .await
    }

    /// Runs `attempt` behind the limits of `subjects`. The attempt is counted before it runs
    /// (one unit reserved per subject, atomically, see [`Limits::reserve`]), so concurrent
    /// attempts cannot together pass a cap: 429 when any subject is at it. The units are given
    /// back afterwards unless `counts` says the outcome counts (a failure, a registration).
    /// Counting after the check instead let a burst of concurrent guesses all be checked
    /// against a cap none of them had reached yet.
    pub(crate) async fn limited<T>(
        &self,
        subjects: &[Subject<'_>],
        counts: impl Fn(&Result<T, AuthError>) -> bool,
        attempt: impl std::future::Future<Output = Result<T, AuthError>>,
    ) -> Result<T, AuthError> {
        let reservation = self.inner.limits.reserve(subjects).await?;
        let outcome = attempt.await;
        if !counts(&outcome) {
            reservation.release().await;
        }
        outcome
    }

    async fn create_account(
        &self,
        email: &str,
        password: String,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let email = normalize_email(email)?;
        let password_hash = password::hash(password, self.inner.bcrypt_cost).await?;
        let now = now_ms();
        let user_id = new_id();

        let mut tx = self.inner.db.pool().begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&user_id)
        .bind(&email)
        .bind(&password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|err| if is_unique_violation(&err) { AuthError::EmailTaken } else { err.into() })?;
        sqlx::query("INSERT INTO storage_usage (user_id) VALUES ($1)")
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        let tokens = self
            .sign_in_device(&mut tx, &user_id, 0, device, now)
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, "account registered");
        Ok(tokens)
    }

    /// One generic failure for an unknown email and a wrong password, each after one bcrypt
    /// verification, so neither the answer nor its timing tells which it was. Failures count
    /// against the email and the client's address; past either cap every attempt is 429, the
    /// right password included, until the window moves on.
    ///
    /// The email's unit is reserved on its own first, so that a refusal by the email's limit
    /// (not the address's) is known: it is what the account's security log records as
    /// `sign_in_locked`.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let counts = |outcome: &Result<AuthTokens, AuthError>| {
            matches!(outcome, Err(AuthError::InvalidCredentials))
        };
        let email_unit = match self.inner.limits.reserve(&[Subject::Email(email)]).await {
            Ok(unit) => unit,
            Err(err) => {
                self.note_lock(email, device).await;
                return Err(err.into());
            }
        };
        let outcome = self
            .limited(
                &[Subject::Address(device.address)],
                counts,
                self.sign_in(email, password, device),
            )
            .await;
        if !counts(&outcome) {
            email_unit.release().await;
        }
        outcome
    }

    /// Writes `sign_in_locked` to the log of the account of `email`; a failure to write it is
    /// logged, never the answer (the sign-in is refused either way).
    async fn note_lock(&self, email: &str, device: &Device) {
        let noted = async {
            let mut conn = self.inner.db.pool().acquire().await?;
            events::record_lock(&mut conn, email, device, now_ms()).await
        };
        if let Err(err) = noted.await {
            tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not log a locked sign-in");
        }
    }

    async fn sign_in(
        &self,
        email: &str,
        password: String,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let email = email.trim().to_lowercase();
        let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, password_hash, token_version, disabled_at FROM users WHERE email = $1",
        )
        .bind(&email)
        .fetch_optional(self.inner.db.pool())
        .await?;
        let Some((user_id, password_hash, token_version, disabled_at)) = row else {
            self.equalize_timing(password).await?;
            return Err(AuthError::InvalidCredentials);
        };
        // An account without a password (created through OpenID Connect) costs the same work.
        let matches = if password_hash == password::NO_PASSWORD {
            self.equalize_timing(password).await?;
            false
        } else {
            password::verify(password, password_hash).await?
        };
        if !matches {
            tracing::info!(user_id, "login failed: wrong password");
            // The answer stays `InvalidCredentials` even when the log cannot be written, so
            // that the failure still counts against the limits.
            let logged = async {
                let mut conn = self.inner.db.pool().acquire().await?;
                events::record(
                    &mut conn,
                    NewEvent {
                        user_id: &user_id,
                        kind: EventType::LoginFailed,
                        session_id: None,
                        device,
                        new_device: false,
                        now: now_ms(),
                    },
                )
                .await
            };
            if let Err(err) = logged.await {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not log a failed sign-in");
            }
            return Err(AuthError::InvalidCredentials);
        }
        // Only after the password: a guesser learns nothing about the account from it.
        if disabled_at.is_some() {
            tracing::info!(user_id, "login refused: the account is disabled");
            return Err(AuthError::AccountDisabled);
        }
        // Also only after the password, so that it does not tell who is in which team.
        let mut conn = self.inner.db.pool().acquire().await?;
        if adiuva_teams::sso_required(&mut conn, &user_id, &email).await? {
            tracing::info!(user_id, "login refused: a team requires its SSO");
            return Err(AuthError::SsoRequired);
        }
        drop(conn);
        let mut tx = self.inner.db.pool().begin().await?;
        let tokens = self
            .sign_in_device(&mut tx, &user_id, token_version, device, now_ms())
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, "login succeeded");
        Ok(tokens)
    }

    /// One bcrypt verification against the timing equalizer's hash, whose answer is ignored.
    async fn equalize_timing(&self, password: String) -> Result<(), AuthError> {
        let cost = self.inner.bcrypt_cost;
        let dummy = tokio::task::spawn_blocking(move || password::dummy_hash(cost)).await?;
        password::verify(password, dummy).await?;
        Ok(())
    }

    /// Starts a session for `device` with its first tokens, and logs the sign-in.
    pub(crate) async fn sign_in_device(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        token_version: i64,
        device: &Device,
        now: i64,
    ) -> Result<AuthTokens, AuthError> {
        self.sign_in_session(conn, user_id, token_version, device, now, &new_id())
            .await
    }

    /// [`Accounts::sign_in_device`] with the new session's id chosen by the caller.
    pub(crate) async fn sign_in_session(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        token_version: i64,
        device: &Device,
        now: i64,
        session_id: &str,
    ) -> Result<AuthTokens, AuthError> {
        let new_device = sessions::start(conn, user_id, session_id, device, now).await?;
        let tokens = self
            .issue_tokens(conn, user_id, token_version, session_id, now)
            .await?;
        events::record(
            conn,
            NewEvent {
                user_id,
                kind: EventType::LoginSucceeded,
                session_id: Some(session_id),
                device,
                new_device,
                now,
            },
        )
        .await?;
        Ok(tokens)
    }

    /// Rotates a refresh token. The token is marked used by a conditional `UPDATE`, so of two
    /// concurrent presentations only one succeeds. Presenting a token that was already used
    /// revokes every token of its family, including the one issued in its place, and ends the
    /// user's access tokens.
    ///
    /// Refresh, logout and reuse detection each start by locking the user's row, so they run
    /// one after the other: a refresh racing a logout either finishes first (and logout revokes
    /// the token it issued) or finds its token revoked. Without the lock, logout's `UPDATE`
    /// could miss the row a concurrent refresh was inserting.
    pub async fn refresh(&self, presented: &str, device: &Device) -> Result<AuthTokens, AuthError> {
        self.limited(
            &[Subject::Address(device.address)],
            |outcome| {
                matches!(
                    outcome,
                    Err(AuthError::InvalidRefreshToken | AuthError::RefreshTokenReused)
                )
            },
            self.rotate(presented, device),
        )
        .await
    }

    async fn rotate(&self, presented: &str, device: &Device) -> Result<AuthTokens, AuthError> {
        if !refresh::well_formed(presented) {
            return Err(AuthError::InvalidRefreshToken);
        }
        let token_hash = refresh::hash(presented);
        // The owner of a token never changes: reading it before the lock is safe.
        let owner: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(&token_hash)
                .fetch_optional(self.inner.db.pool())
                .await?;
        let Some(user_id) = owner else {
            return Err(AuthError::InvalidRefreshToken);
        };
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        let Some(token_version) = lock_user(&mut tx, &user_id).await? else {
            return Err(AuthError::InvalidRefreshToken);
        };
        let rotated: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
             RETURNING family_id",
        )
        .bind(&token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(family_id) = rotated else {
            return Err(self.reject_refresh(tx, &token_hash, device, now).await?);
        };
        sessions::touch(&mut tx, &user_id, &family_id, device, now).await?;
        let tokens = self
            .issue_tokens(&mut tx, &user_id, token_version, &family_id, now)
            .await?;
        tx.commit().await?;
        Ok(tokens)
    }

    /// Explains why a refresh token was not accepted, inside the transaction that holds the
    /// user's row. A reused token revokes its family and ends the user's access tokens (the
    /// token version moves on; other devices refresh with their own refresh tokens), ends its
    /// session and is written to the security log.
    async fn reject_refresh(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        token_hash: &str,
        device: &Device,
        now: i64,
    ) -> Result<AuthError, AuthError> {
        let known: Option<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, family_id, used_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id, Some(_used_at))) = known else {
            return Ok(AuthError::InvalidRefreshToken);
        };
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(&family_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE users SET token_version = token_version + 1, updated_at = $2 WHERE id = $1",
        )
        .bind(&user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sessions::end(&mut tx, &user_id, &family_id, now).await?;
        events::record(
            &mut tx,
            NewEvent {
                user_id: &user_id,
                kind: EventType::RefreshReuseDetected,
                session_id: Some(&family_id),
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(
            user_id,
            family_id,
            revoked = revoked.rows_affected(),
            "refresh token reuse detected; token family revoked and access tokens ended"
        );
        Ok(AuthError::RefreshTokenReused)
    }

    /// Ends the caller's session: its refresh token and its access tokens (from the next
    /// request on). Other devices stay signed in; a password change ends them all. A token
    /// issued before sessions existed names none, so for it logout ends every session, as it
    /// did then. The user's row is locked first, as refresh does, so a concurrent refresh
    /// cannot leave a token behind (see [`Accounts::refresh`]).
    pub async fn logout(&self, caller: &Caller) -> Result<(), AuthError> {
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        if lock_user(&mut tx, &caller.id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        match &caller.session_id {
            Some(session_id) => {
                sessions::end(&mut tx, &caller.id, session_id, now).await?;
                tx.commit().await?;
                tracing::info!(user_id = caller.id, session_id, "logged out");
            }
            None => {
                sessions::end_all(&mut tx, &caller.id, now).await?;
                tx.commit().await?;
                tracing::info!(user_id = caller.id, "logged out; all sessions revoked");
            }
        }
        Ok(())
    }

    /// Changes the caller's password and signs every device out, the caller's own included:
    /// the answer is the tokens of a new session for the caller's device. A wrong current
    /// password counts against the brute-force limits like a failed login; the new password
    /// follows registration's rules (checked first, so a typo costs no attempt).
    ///
    /// An account without a password (created through OpenID Connect) sets one with no
    /// `current_password`; an account with one must send it.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current_password: Option<String>,
        new_password: String,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        password::validate(&new_password)?;
        let change = async {
            self.check_current_password(&caller.id, current_password)
                .await?;
            let password_hash = password::hash(new_password, self.inner.bcrypt_cost).await?;
            let now = now_ms();
            let mut tx = self.inner.db.pool().begin().await?;
            if lock_user(&mut tx, &caller.id).await?.is_none() {
                return Err(AuthError::InvalidToken);
            }
            let version = sessions::end_all(&mut tx, &caller.id, now).await?;
            sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(&caller.id)
                .bind(&password_hash)
                .execute(&mut *tx)
                .await?;
            let session_id = new_id();
            sessions::start(&mut tx, &caller.id, &session_id, device, now).await?;
            let tokens = self
                .issue_tokens(&mut tx, &caller.id, version, &session_id, now)
                .await?;
            events::record(
                &mut tx,
                NewEvent {
                    user_id: &caller.id,
                    kind: EventType::PasswordChanged,
                    session_id: Some(&session_id),
                    device,
                    new_device: false,
                    now,
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(
                user_id = caller.id,
                "password changed; all sessions revoked"
            );
            Ok(tokens)
        };
        self.limited(
            &[
                Subject::Address(device.address),
                Subject::Email(&caller.email),
            ],
            |outcome| matches!(outcome, Err(AuthError::InvalidCredentials)),
            change,
        )
        .await
    }

    /// Moves the caller's account to `new_email`, after checking their password (failures
    /// count like a failed login). A taken email is 409 and, as for registration, counts
    /// against the client's address, since it tells that the address has an account. Sessions
    /// stay: a token names the user, not the email.
    pub async fn change_email(
        &self,
        caller: &Caller,
        new_email: &str,
        password: String,
        device: &Device,
    ) -> Result<UserProfile, AuthError> {
        let new_email = normalize_email(new_email)?;
        let change = async {
            self.check_password(&caller.id, password).await?;
            let now = now_ms();
            let mut tx = self.inner.db.pool().begin().await?;
            let changed = sqlx::query("UPDATE users SET email = $2, updated_at = $3 WHERE id = $1")
                .bind(&caller.id)
                .bind(&new_email)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    if is_unique_violation(&err) {
                        AuthError::EmailTaken
                    } else {
                        err.into()
                    }
                })?;
            if changed.rows_affected() == 0 {
                return Err(AuthError::InvalidToken);
            }
            events::record(
                &mut tx,
                NewEvent {
                    user_id: &caller.id,
                    kind: EventType::EmailChanged,
                    session_id: caller.session_id.as_deref(),
                    device,
                    new_device: false,
                    now,
                },
            )
            .await?;
            tx.commit().await?;
            tracing::info!(user_id = caller.id, "email changed");
            Ok(UserProfile {
                id: caller.id.clone(),
                email: new_email.clone(),
                tier: caller.tier,
                tier_source: caller.tier_source,
            })
        };
        let email_subject = [Subject::Email(&caller.email)];
        let checked = self.limited(
            &email_subject,
            |outcome| matches!(outcome, Err(AuthError::InvalidCredentials)),
            change,
        );
        self.limited(
            &[Subject::Address(device.address)],
            |outcome| {
                matches!(
                    outcome,
                    Err(AuthError::InvalidCredentials | AuthError::EmailTaken)
                )
            },
            checked,
        )
        .await
    }

    /// `Ok` when `current` is the user's password, or when the user has none and `current` is
    /// `None`; `InvalidCredentials` otherwise.
    async fn check_current_password(
        &self,
        user_id: &str,
        current: Option<String>,
    ) -> Result<(), AuthError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.inner.db.pool())
                .await?;
        let hash = hash.ok_or(AuthError::InvalidToken)?;
        match current {
            None if hash == password::NO_PASSWORD => Ok(()),
            None => Err(AuthError::InvalidCredentials),
            Some(current) => {
                if password::verify(current, hash).await? {
                    Ok(())
                } else {
                    Err(AuthError::InvalidCredentials)
                }
            }
        }
    }

    /// `Ok` when `password` is the user's; `InvalidCredentials` when not (always, for an
    /// account without a password).
    async fn check_password(&self, user_id: &str, password: String) -> Result<(), AuthError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(self.inner.db.pool())
                .await?;
        let hash = hash.ok_or(AuthError::InvalidToken)?;
        if password::verify(password, hash).await? {
            Ok(())
        } else {
            Err(AuthError::InvalidCredentials)
        }
    }

    /// Checks a signed-in user's password again, before a destructive action. Failures count
    /// like login's.
    pub async fn verify_password(
        &self,
        caller: &Caller,
        password: String,
        client: std::net::IpAddr,
    ) -> Result<(), AuthError> {
        self.limited(
            &[Subject::Address(client), Subject::Email(&caller.email)],
            |outcome| matches!(outcome, Err(AuthError::InvalidCredentials)),
            self.check_password(&caller.id, password),
        )
        .await
    }

    /// Verifies an access token and loads the caller with their live tier, in one query.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let claims = self.verify_token(token)?;
        self.caller(&claims.sub, claims.ver, claims.sid.as_deref())
            .await
    }

    /// Checks an access token's signature, algorithm, issuer, audience and expiry, without
    /// touching the database.
    pub fn verify_token(&self, token: &str) -> Result<AccessClaims, AuthError> {
        self.inner.jwt.verify(token)
    }

    /// The caller `user_id` with their live tier and role, if the account still exists, its
    /// token version is still `token_version` (a password change, a reused refresh token and
    /// account deletion end it) and the token's session `session_id` has not ended (logout,
    /// `DELETE /auth/sessions/{id}`). One query: the session rides on the join that reads the
    /// tier. A token without a session (issued before sessions existed) is checked by its
    /// version alone until it expires. The tier is the effective one: the better of the own
    /// subscription's and the Team tier of a seat in a team whose subscription is active (a
    /// subquery of the same statement, so leaving a team or its subscription ending shows at
    /// the next request, with no extra round trip).
    pub async fn caller(
        &self,
        user_id: &str,
        token_version: i64,
        session_id: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let caller: Option<CallerRow> = sqlx::query_as(
            "SELECT u.email, u.role, u.token_version, u.disabled_at, s.tier, s.status, \
             ss.id AS session_id, ss.revoked_at AS session_revoked_at, \
             (SELECT COUNT(*) FROM team_members tm JOIN teams t ON t.id = tm.team_id \
              WHERE tm.user_id = u.id AND t.status = 'active') AS team_seats \
             FROM users u LEFT JOIN subscriptions s ON s.user_id = u.id \
             LEFT JOIN sessions ss ON ss.id = $2 AND ss.user_id = u.id WHERE u.id = $1",
        )
        .bind(user_id)
        .bind(session_id)
        .fetch_optional(self.inner.db.pool())
        .await?;
        let Some(CallerRow {
            email,
            role,
            token_version: version,
            disabled_at,
            tier,
            status,
            session_id: session,
            session_revoked_at,
            team_seats,
        }) = caller
        else {
            return Err(AuthError::InvalidToken);
        };
        // Disabling bumps the version too; this holds even for a token that raced it.
        if token_version != version || disabled_at.is_some() {
            return Err(AuthError::InvalidToken);
        }
        if session_id.is_some() && (session.is_none() || session_revoked_at.is_some()) {
            return Err(AuthError::InvalidToken);
        }
        let (tier, tier_source) = effective_tier(
            live_tier(tier.as_deref(), status.as_deref()),
            team_seats > 0,
        );
        Ok(Caller {
            id: user_id.to_owned(),
            email,
            tier,
            tier_source,
            role: Role::parse(&role),
            session_id: session,
        })
    }

    /// `GET /auth/me`: the caller's profile with their teams (one more query, on this route
    /// only; the tier came with the caller).
    pub async fn current_profile(&self, caller: &Caller) -> Result<CurrentProfile, AuthError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT team_id, role FROM team_members WHERE user_id = $1 \
             ORDER BY joined_at, team_id",
        )
        .bind(&caller.id)
        .fetch_all(self.inner.db.pool())
        .await?;
        Ok(CurrentProfile {
            id: caller.id.clone(),
            email: caller.email.clone(),
            tier: caller.tier,
            tier_source: caller.tier_source,
            teams: rows
                .into_iter()
                .filter_map(|(id, role)| {
                    Some(TeamSeat {
                        id,
                        role: TeamRole::parse(&role)?,
                    })
                })
                .collect(),
        })
    }

    /// Publishes the caller's public key (replacing the one before), for admins to wrap team
    /// keys with. The key must be standard base64 of at most [`MAX_PUBLIC_KEY_CHARS`]
    /// characters and the algorithm one of [`KEY_ALGORITHMS`] (422 otherwise).
    pub async fn set_public_key(
        &self,
        caller: &Caller,
        key: &PublicKey,
    ) -> Result<PublicKey, AuthError> {
        if key.public_key.is_empty()
            || key.public_key.len() > MAX_PUBLIC_KEY_CHARS
            || adiuva_checksum::decode_base64(key.public_key.as_bytes()).is_err()
        {
            return Err(AuthError::InvalidPublicKey(
                "public_key must be standard base64 of at most 1 KiB",
            ));
        }
        if !KEY_ALGORITHMS.contains(&key.algorithm.as_str()) {
            return Err(AuthError::InvalidPublicKey(
                "algorithm must be x25519, p256 or rsa-oaep-256",
            ));
        }
        sqlx::query(
            "UPDATE users SET public_key = $2, key_algorithm = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(&caller.id)
        .bind(&key.public_key)
        .bind(&key.algorithm)
        .bind(now_ms())
        .execute(self.inner.db.pool())
        .await?;
        tracing::info!(
            user_id = caller.id,
            algorithm = key.algorithm,
            "public key published"
        );
        Ok(key.clone())
    }

    /// Grants or revokes a role by email (the `adiuva-local admin` command). Takes effect on the
    /// user's next request: roles are read live, like tiers.
    pub async fn set_role(&self, email: &str, role: Role) -> Result<String, AuthError> {
        let email = email.trim().to_lowercase();
        let user_id: Option<String> = sqlx::query_scalar(
            "UPDATE users SET role = $2, updated_at = $3 WHERE email = $1 RETURNING id",
        )
        .bind(&email)
        .bind(role.as_str())
        .bind(now_ms())
        .fetch_optional(self.inner.db.pool())
        .await?;
        let user_id = user_id.ok_or(AuthError::UnknownEmail)?;
        tracing::info!(user_id, role = role.as_str(), "role changed");
        Ok(user_id)
    }

    /// Disables (or enables again) the account `user_id`, for a platform admin. Disabling ends
    /// every session and access token at once (as a password change does) and refuses
    /// sign-ins with 403 `account_disabled` until it is enabled; the account's data stays.
    /// An admin cannot disable their own account, so the last admin cannot lock everyone out.
    pub async fn set_disabled(
        &self,
        admin: &Caller,
        user_id: &str,
        disabled: bool,
    ) -> Result<(), AuthError> {
        if disabled && admin.id == user_id {
            return Err(AuthError::CannotDisableSelf);
        }
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        if lock_user(&mut tx, user_id).await?.is_none() {
            return Err(AuthError::UserNotFound);
        }
        if disabled {
            sqlx::query(
                "UPDATE users SET disabled_at = COALESCE(disabled_at, $2), updated_at = $2 WHERE id = $1",
            )
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sessions::end_all(&mut tx, user_id, now).await?;
        } else {
            sqlx::query("UPDATE users SET disabled_at = NULL, updated_at = $2 WHERE id = $1")
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(
            admin_id = admin.id,
            user_id,
            disabled,
            "account disabled or enabled by an admin"
        );
        Ok(())
    }

    async fn issue_tokens(
        &self,
        conn: &mut AnyConnection,
        user_id: &str,
        token_version: i64,
        family_id: &str,
        now: i64,
    ) -> Result<AuthTokens, AuthError> {
        let (refresh_token, refresh_hash) = refresh::generate().map_err(AuthError::Random)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (id, user_id, token_hash, family_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(&refresh_hash)
        .bind(family_id)
        .bind(now.saturating_add(self.inner.refresh_ttl_ms))
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let (access_token, expires_at) =
            self.inner
                .jwt
                .issue(user_id, token_version, Some(family_id), now)?;
        Ok(AuthTokens {
            access_token,
            refresh_token,
            expires_at,
        })
    }
}

/// Locks the user's row for the rest of the transaction (a no-op write: portable, where
/// `SELECT ... FOR UPDATE` is not) and returns its token version; `None` when the account is
/// gone.
pub(crate) async fn lock_user(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<i64>, AuthError> {
    Ok(sqlx::query_scalar(
        "UPDATE users SET token_version = token_version WHERE id = $1 RETURNING token_version",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

/// The caller's row with their subscription, if any.
#[derive(sqlx::FromRow)]
struct CallerRow {
    email: String,
    role: String,
    token_version: i64,
    disabled_at: Option<i64>,
    tier: Option<String>,
    status: Option<String>,
    /// The token's session, when it names one that is the user's.
    session_id: Option<String>,
    session_revoked_at: Option<i64>,
    /// The caller's seats in teams whose subscription is active.
    team_seats: i64,
}

/// Trims and lowercases an email and checks that it is a plausible address.
pub(crate) fn normalize_email(raw: &str) -> Result<String, AuthError> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 {
        return Err(AuthError::InvalidEmail(
            "email is longer than 254 characters",
        ));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(AuthError::InvalidEmail("email must contain an @"));
    };
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if local.is_empty() || local.len() > 64 || local.contains(forbidden) {
        return Err(AuthError::InvalidEmail(
            "the part before the @ is not valid",
        ));
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.contains(forbidden)
    });
    if !domain.contains('.') || !labels_ok {
        return Err(AuthError::InvalidEmail(
            "the domain of the email is not valid",
        ));
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Alice@Example.COM ").unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            normalize_email("a.b+tag@sub.example.org").unwrap(),
            "a.b+tag@sub.example.org"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "al ice@example.com",
            "alice@exa mple.com",
            "a@b@example.com",
            "alice@.example.com",
            "alice@example..com",
            "alice@-example.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(normalize_email(&format!("a@{}.com", "b".repeat(250))).is_err());
    }
}
