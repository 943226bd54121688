//! OpenID Connect identities linked to accounts. An identity is `(issuer, subject)`: the person
//! a provider vouches for (adiuva-oidc verifies the ID token; this module decides what it signs
//! into). A known identity signs into its account. A new one whose verified email belongs to no
//! account creates an account without a password; one whose email belongs to an account is
//! refused with `link_required`: an identity is never linked by email alone, the account's
//! owner links it while signed in ([`Accounts::link_identity`]).
//!
//! Through a team's provider (team SSO, [`Accounts::sign_in_with_team_identity`]) the rules are
//! stricter, so that a hostile team's provider cannot take over anyone's account: its identity
//! signs only into an account that is a member of that team, and it creates an account (which
//! joins the team) only for an email of the team's domains that no account has.

use adiuva_db::{is_unique_violation, new_id, now_ms};
use adiuva_limits::Subject;
use serde::Serialize;

use crate::accounts::{lock_user, normalize_email};
use crate::events::{self, EventType, NewEvent};
use crate::password::NO_PASSWORD;
use crate::{Accounts, AuthError, AuthTokens, Caller, Device};

/// A verified identity, as adiuva-oidc hands it over.
#[derive(Debug, Clone, Copy)]
pub struct NewIdentity<'a> {
    /// `google`, or `team:<team id>` for a team's provider.
    pub provider: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    /// Verified by the provider.
    pub email: &'a str,
}

/// One of `GET /auth/me`'s `identities`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkedIdentity {
    /// What `DELETE /auth/oidc/identities/{id}` takes.
    pub id: String,
    /// The provider's id (`google`, or `team:<team id>`).
    pub provider: String,
    pub issuer: String,
    /// The provider's verified email when the identity was linked.
    pub email: String,
    /// Milliseconds since the Unix epoch.
    pub linked_at: i64,
}

impl Accounts {
    /// Signs in with a verified identity: its account's session starts as a password login's
    /// does (`login_succeeded` in the log). A new identity creates an account without a
    /// password (counted against the address's registrations, like `/auth/register`), unless
    /// its email is an account's: `link_required`. A disabled account is refused (403).
    pub async fn sign_in_with_identity(
        &self,
        identity: NewIdentity<'_>,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let linked: Option<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT u.id, u.token_version, u.disabled_at FROM user_identities i \
             JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2",
        )
        .bind(identity.issuer)
        .bind(identity.subject)
        .fetch_optional(self.database().pool())
        .await?;
        let Some((user_id, token_version, disabled_at)) = linked else {
            return self
                .limited(
                    &[Subject::Registration(device.address)],
                    |outcome| outcome.is_ok(),
                    self.create_with_identity(identity, device),
                )
                .await;
        };
        if disabled_at.is_some() {
            tracing::info!(user_id, "OpenID sign-in refused: the account is disabled");
            return Err(AuthError::AccountDisabled);
        }
        let mut tx = self.database().pool().begin().await?;
        let tokens = self
            .sign_in_device(&mut tx, &user_id, token_version, device, now_ms())
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, provider = identity.provider, "OpenID sign-in");
        Ok(tokens)
    }

    /// Signs in with an identity a team's provider verified (`team_id`'s SSO). It never signs
    /// into an account that is not a member of that team (403 `sso_not_member`), whether the
    /// identity is linked to it or its email is the account's. A linked identity of a member
    /// signs in; an unlinked one whose email is a member's is `link_required`, as for Google.
    /// A new identity whose email no account has creates the account and joins the team, if
    /// the email's domain is one of the team's (else 403 `sso_domain_not_allowed`) and a seat
    /// is free (409 `seats_exhausted`; nothing is created), all in one transaction that holds
    /// the team's row.
    pub async fn sign_in_with_team_identity(
        &self,
        team_id: &str,
        identity: NewIdentity<'_>,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let linked: Option<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT u.id, u.token_version, u.disabled_at FROM user_identities i \
             JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2",
        )
        .bind(identity.issuer)
        .bind(identity.subject)
        .fetch_optional(self.database().pool())
        .await?;
        let Some((user_id, token_version, disabled_at)) = linked else {
            return self
                .limited(
                    &[Subject::Registration(device.address)],
                    |outcome| outcome.is_ok(),
                    self.create_with_team_identity(team_id, identity, device),
                )
                .await;
        };
        let mut conn = self.database().pool().acquire().await?;
        let member = adiuva_teams::role_of(&mut conn, team_id, &user_id).await?;
        drop(conn);
        if member.is_none() {
            tracing::warn!(
                user_id,
                team_id,
                "team sign-in refused: the identity's account is not a member"
            );
            return Err(AuthError::SsoNotMember);
        }
        if disabled_at.is_some() {
            tracing::info!(user_id, "team sign-in refused: the account is disabled");
            return Err(AuthError::AccountDisabled);
        }
        let mut tx = self.database().pool().begin().await?;
        let tokens = self
            .sign_in_device(&mut tx, &user_id, token_version, device, now_ms())
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, team_id, "team SSO sign-in");
        Ok(tokens)
    }

    async fn create_with_team_identity(
        &self,
        team_id: &str,
        identity: NewIdentity<'_>,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let email = normalize_email(identity.email)?;
        let now = now_ms();
        let mut tx = self.database().pool().begin().await?;
        // The team's row first (SQLite: the write lock before any read), then its domains.
        let Some(sso) = adiuva_teams::lock_sso(&mut tx, team_id).await? else {
            return Err(adiuva_teams::TeamError::SsoNotFound.into());
        };
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(user_id) = existing {
            let member = adiuva_teams::role_of(&mut tx, team_id, &user_id)
                .await?
                .is_some();
            if member {
                return Err(AuthError::LinkRequired);
            }
            tracing::warn!(
                user_id,
                team_id,
                "team sign-in refused: its email is the account of a non-member"
            );
            return Err(AuthError::SsoNotMember);
        }
        if !sso.covers(&email) {
            return Err(AuthError::SsoDomainNotAllowed);
        }
        // An account with this email made since it was read is not a member.
        let user_id =
            insert_account(&mut tx, &email, identity, now, AuthError::SsoNotMember).await?;
        adiuva_teams::join_through_sso(&mut tx, team_id, &sso, &user_id, &email, now).await?;
        let tokens = self.first_session(&mut tx, &user_id, device, now).await?;
        tx.commit().await?;
        tracing::info!(user_id, team_id, "account created through a team's SSO");
        Ok(tokens)
    }

    /// The first session of an account just made with a verified identity (`oidc_linked` in
    /// its log), in the transaction that made it.
    async fn first_session(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
        device: &Device,
        now: i64,
    ) -> Result<AuthTokens, AuthError> {
        let session_id = new_id();
        let tokens = self
            .sign_in_session(&mut *tx, user_id, 0, device, now, &session_id)
            .await?;
        events::record(
            &mut *tx,
            NewEvent {
                user_id,
                kind: EventType::OidcLinked,
                session_id: Some(&session_id),
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        Ok(tokens)
    }

    async fn create_with_identity(
        &self,
        identity: NewIdentity<'_>,
        device: &Device,
    ) -> Result<AuthTokens, AuthError> {
        let email = normalize_email(identity.email)?;
        let now = now_ms();
        let mut tx = self.database().pool().begin().await?;
        let user_id =
            insert_account(&mut tx, &email, identity, now, AuthError::LinkRequired).await?;
        let tokens = self.first_session(&mut tx, &user_id, device, now).await?;
        tx.commit().await?;
        tracing::info!(
            user_id,
            provider = identity.provider,
            "account created through OpenID"
        );
        Ok(tokens)
    }

    /// Links a verified identity to the caller's account (`oidc_linked` in the log). An
    /// identity already linked (to this account or another) is 409 `identity_taken`.
    pub async fn link_identity(
        &self,
        caller: &Caller,
        identity: NewIdentity<'_>,
        device: &Device,
    ) -> Result<LinkedIdentity, AuthError> {
        let now = now_ms();
        let mut tx = self.database().pool().begin().await?;
        if lock_user(&mut tx, &caller.id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        let linked = insert_identity(&mut tx, &caller.id, identity, now).await?;
        events::record(
            &mut tx,
            NewEvent {
                user_id: &caller.id,
                kind: EventType::OidcLinked,
                session_id: caller.session_id.as_deref(),
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            user_id = caller.id,
            provider = identity.provider,
            "identity linked"
        );
        Ok(linked)
    }

    /// Unlinks one of the caller's identities (`oidc_unlinked` in the log), unless it is the
    /// account's last way to sign in (no password and no other identity): 409
    /// `last_sign_in_method`. The user's row is held, so two concurrent unlinks cannot each
    /// leave the other identity as the last one and remove it.
    pub async fn unlink_identity(
        &self,
        caller: &Caller,
        identity_id: &str,
        device: &Device,
    ) -> Result<(), AuthError> {
        let now = now_ms();
        let mut tx = self.database().pool().begin().await?;
        if lock_user(&mut tx, &caller.id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        let (password_hash, identities): (String, i64) = sqlx::query_as(
            "SELECT u.password_hash, (SELECT COUNT(*) FROM user_identities i WHERE i.user_id = u.id) \
             FROM users u WHERE u.id = $1",
        )
        .bind(&caller.id)
        .fetch_one(&mut *tx)
        .await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM user_identities WHERE id = $1 AND user_id = $2")
                .bind(identity_id)
                .bind(&caller.id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(AuthError::IdentityNotFound);
        }
        if password_hash == NO_PASSWORD && identities <= 1 {
            return Err(AuthError::LastSignInMethod);
        }
        sqlx::query("DELETE FROM user_identities WHERE id = $1 AND user_id = $2")
            .bind(identity_id)
            .bind(&caller.id)
            .execute(&mut *tx)
            .await?;
        events::record(
            &mut tx,
            NewEvent {
                user_id: &caller.id,
                kind: EventType::OidcUnlinked,
                session_id: caller.session_id.as_deref(),
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = caller.id, identity_id, "identity unlinked");
        Ok(())
    }

    /// The caller's linked identities, oldest first.
    pub async fn identities(&self, caller: &Caller) -> Result<Vec<LinkedIdentity>, AuthError> {
        Ok(sqlx::query_as(
            "SELECT id, provider, issuer, email, linked_at FROM user_identities \
             WHERE user_id = $1 ORDER BY linked_at, id",
        )
        .bind(&caller.id)
        .fetch_all(self.database().pool())
        .await?)
    }
}

/// A password-less account for `email` with its usage row and the identity that made it;
/// `taken` when an account already has the email. Answers the new account's id.
async fn insert_account(
    conn: &mut sqlx::AnyConnection,
    email: &str,
    identity: NewIdentity<'_>,
    now: i64,
    taken: AuthError,
) -> Result<String, AuthError> {
    let user_id = new_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&user_id)
    .bind(email)
    .bind(NO_PASSWORD)
    .bind(now)
    .execute(&mut *conn)
    .await;
    match inserted {
        Err(err) if is_unique_violation(&err) => return Err(taken),
        Err(err) => return Err(err.into()),
        Ok(_) => {}
    }
    sqlx::query("INSERT INTO storage_usage (user_id) VALUES ($1)")
        .bind(&user_id)
        .execute(&mut *conn)
        .await?;
    insert_identity(conn, &user_id, identity, now).await?;
    Ok(user_id)
}

async fn insert_identity(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    identity: NewIdentity<'_>,
    now: i64,
) -> Result<LinkedIdentity, AuthError> {
    let linked = LinkedIdentity {
        id: new_id(),
        provider: identity.provider.to_owned(),
        issuer: identity.issuer.to_owned(),
        email: identity.email.trim().to_lowercase(),
        linked_at: now,
    };
    sqlx::query(
        "INSERT INTO user_identities (id, user_id, provider, issuer, subject, email, linked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&linked.id)
    .bind(user_id)
    .bind(&linked.provider)
    .bind(&linked.issuer)
    .bind(identity.subject)
    .bind(&linked.email)
    .bind(now)
    .execute(conn)
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            AuthError::IdentityTaken
        } else {
            err.into()
        }
    })?;
    Ok(linked)
}
