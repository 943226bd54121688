//! Team SSO (issue 23, item 6): a team's own OpenID provider (issuer, client id and secret),
//! the email domains it vouches for, and whether its members of those domains must sign in
//! through it.
//!
//! The client secret is sealed (AES-256-GCM, `adiuva_checksum::Sealer`) under a key derived
//! from `SSO_SECRET_KEY` and bound to the team's id, so a sealed secret copied to another
//! team's row does not open. It is opened only to redeem a code at the provider (the auth
//! function, [`Sso::provider`]); it is never answered or logged.
//!
//! What a sign-in through the team's provider may do is adiuva-auth's decision, in its own
//! transaction; it locks the team and reads the domains with [`lock_sso`], joins a new account
//! with [`join_through_sso`], and asks [`sso_required`] at password sign-in.

use adiuva_access::Caller;
use adiuva_checksum::{Sealer, derive_key, purpose};
use adiuva_config::{Component, ConfigError, Context, Secret, Source};
use adiuva_db::{Database, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::events::{TeamEventType, record_event};
use crate::invitations::seats_held;
use crate::{LockedTeam, TeamError, find_team, lock_team, require_admin, require_owner};

/// The fewest bytes `SSO_SECRET_KEY` may have.
pub const MIN_SSO_KEY_BYTES: usize = 32;
/// The most email domains one team lists.
pub const MAX_DOMAINS: usize = 20;
/// The longest issuer, client id and client secret, in bytes.
pub const MAX_ISSUER_BYTES: usize = 512;
pub const MAX_CLIENT_ID_BYTES: usize = 256;
pub const MAX_CLIENT_SECRET_BYTES: usize = 1024;

/// `PUT /teams/{id}/sso`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SsoUpdate {
    /// The provider's issuer: `https://` (`http://` only on a loopback address), without query
    /// or fragment; its discovery document is `{issuer}/.well-known/openid-configuration`.
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub issuer: String,
    /// This service's client id at the provider.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub client_id: String,
    /// The client's secret: stored encrypted, never answered.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024, format = Password))]
    pub client_secret: String,
    /// The email domains the provider vouches for (`example.com`): a new identity with an
    /// email of one of them creates its account and joins the team. 1 to 20, lower-cased.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
    pub domains: Vec<String>,
    /// Members whose email domain is listed (the owner excepted) cannot sign in with a
    /// password (`sso_required`).
    #[serde(default)]
    pub required: bool,
}

/// A team's SSO settings as its owner and admins see them: never the client secret.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamSso {
    pub team_id: String,
    pub issuer: String,
    pub client_id: String,
    pub domains: Vec<String>,
    pub required: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a sign-in through a team's provider needs: the issuer and the client, its secret
/// opened.
#[derive(Debug, Clone)]
pub struct SsoClient {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// The team SSO service. Cheap to clone; built once per process (no network I/O).
#[derive(Debug, Clone)]
pub struct Sso {
    db: Database,
    /// `None` without `SSO_SECRET_KEY`: nothing can be sealed or opened.
    sealer: Option<Sealer>,
}

impl Component for Sso {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?, sso_key(context.source())?))
    }
}

/// The sealing key from `SSO_SECRET_KEY` (at least [`MIN_SSO_KEY_BYTES`] bytes), derived for
/// this use alone; `None` when unset.
pub fn sso_key(source: &Source) -> Result<Option<[u8; 32]>, ConfigError> {
    let Some(secret) = source.secret("SSO_SECRET_KEY") else {
        return Ok(None);
    };
    if secret.expose().len() < MIN_SSO_KEY_BYTES {
        return Err(ConfigError::invalid(
            "SSO_SECRET_KEY",
            format!("must be at least {MIN_SSO_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"),
        ));
    }
    Ok(Some(derive_key(
        secret.expose().as_bytes(),
        purpose::SSO_CLIENT_SECRETS,
    )))
}

#[derive(sqlx::FromRow)]
struct SsoRow {
    team_id: String,
    issuer: String,
    client_id: String,
    client_secret: String,
    domains: String,
    required: i64,
    created_at: i64,
    updated_at: i64,
}

impl SsoRow {
    fn view(self) -> TeamSso {
        TeamSso {
            team_id: self.team_id,
            issuer: self.issuer,
            client_id: self.client_id,
            domains: split_domains(&self.domains),
            required: self.required != 0,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const SSO_SELECT: &str = "SELECT team_id, issuer, client_id, client_secret, domains, required, \
     created_at, updated_at FROM team_sso WHERE team_id = $1";

impl Sso {
    pub fn new(db: Database, key: Option<[u8; 32]>) -> Self {
        Self {
            db,
            sealer: key.map(Sealer::new),
        }
    }

    /// Sets the team's SSO (owner only): 422 for invalid settings, then 402 `team_inactive`
    /// unless the team's subscription is active, 503 `sso_secret_key_missing` without `SSO_SECRET_KEY`. Replaces the settings
    /// before; `sso_configured` in the team's log.
    pub async fn put(
        &self,
        caller: &Caller,
        team_id: &str,
        update: &SsoUpdate,
    ) -> Result<TeamSso, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_owner(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let Some(team) = locked else {
            return Err(TeamError::NotFound);
        };
        // What is wrong with the request is said first (422), then what is wrong with the team.
        let valid = validate(update)?;
        if team.status != "active" {
            return Err(TeamError::TeamInactive);
        }
        let sealer = self.sealer.as_ref().ok_or(TeamError::SsoKeyMissing)?;
        let sealed = sealer.seal(&seal_context(team_id), update.client_secret.as_bytes());
        let now = now_ms();
        sqlx::query(
            "INSERT INTO team_sso (team_id, issuer, client_id, client_secret, domains, required, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (team_id) DO UPDATE SET issuer = $2, client_id = $3, \
             client_secret = $4, domains = $5, required = $6, updated_at = $7",
        )
        .bind(team_id)
        .bind(&valid.issuer)
        .bind(&valid.client_id)
        .bind(&sealed)
        .bind(valid.domains.join(","))
        .bind(i64::from(update.required))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record_event(
            &mut tx,
            team_id,
            TeamEventType::SsoConfigured,
            Some(&caller.id),
            None,
            now,
        )
        .await?;
        let row: SsoRow = sqlx::query_as(SSO_SELECT)
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            team_id,
            by = caller.id,
            issuer = valid.issuer,
            "team SSO set"
        );
        Ok(row.view())
    }

    /// The team's SSO without its secret (owner or admin); 404 `sso_not_found` when none.
    pub async fn get(&self, caller: &Caller, team_id: &str) -> Result<TeamSso, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        let team = find_team(&mut conn, team_id).await?;
        require_admin(&mut conn, team.as_ref(), team_id, &caller.id).await?;
        let row: Option<SsoRow> = sqlx::query_as(SSO_SELECT)
            .bind(team_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(SsoRow::view).ok_or(TeamError::SsoNotFound)
    }

    /// Removes the team's SSO (owner only); 404 `sso_not_found` when none. `sso_removed` in
    /// the team's log.
    pub async fn delete(&self, caller: &Caller, team_id: &str) -> Result<(), TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_owner(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let deleted = sqlx::query("DELETE FROM team_sso WHERE team_id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(TeamError::SsoNotFound);
        }
        record_event(
            &mut tx,
            team_id,
            TeamEventType::SsoRemoved,
            Some(&caller.id),
            None,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(team_id, by = caller.id, "team SSO removed");
        Ok(())
    }

    /// The team's provider for a sign-in, its secret opened; `None` when the team has no SSO
    /// (or there is no such team). Anyone may start a sign-in with a team's id, so this asks
    /// nothing of a caller.
    pub async fn provider(&self, team_id: &str) -> Result<Option<SsoClient>, TeamError> {
        let row: Option<SsoRow> = sqlx::query_as(SSO_SELECT)
            .bind(team_id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealer = self.sealer.as_ref().ok_or(TeamError::SsoKeyMissing)?;
        let secret = sealer
            .open(&seal_context(team_id), &row.client_secret)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(TeamError::SsoSecretUnreadable)?;
        Ok(Some(SsoClient {
            issuer: row.issuer,
            client_id: row.client_id,
            client_secret: Secret::new(secret),
        }))
    }
}

/// What a sign-in through the team's provider reads under the team's row lock.
#[derive(Debug, Clone)]
pub struct LockedSso {
    pub team: LockedTeam,
    /// The listed email domains, lower-cased.
    pub domains: Vec<String>,
}

impl LockedSso {
    /// Whether `email`'s domain is one of the team's (case-insensitive).
    pub fn covers(&self, email: &str) -> bool {
        domain_listed(email, &self.domains)
    }
}

/// In the caller's transaction: locks the team's row (first, as every change of a team does)
/// and reads its SSO domains; `None` when there is no such team or it has no SSO.
pub async fn lock_sso(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<Option<LockedSso>, TeamError> {
    let Some(team) = lock_team(conn, team_id).await? else {
        return Ok(None);
    };
    let domains: Option<String> =
        sqlx::query_scalar("SELECT domains FROM team_sso WHERE team_id = $1")
            .bind(team_id)
            .fetch_optional(conn)
            .await?;
    Ok(domains.map(|domains| LockedSso {
        team,
        domains: split_domains(&domains),
    }))
}

/// In the caller's transaction, after [`lock_sso`]: the new account `user_id` (whose `email`
/// is of one of the team's domains) joins the team. 402 `team_inactive` unless the team's
/// subscription is active; 409 `seats_exhausted` when members and pending invitations fill
/// the seats, counted under the row lock as an invitation's accept counts them. A pending
/// invitation of the same email already holds its seat: it is accepted by this join (with its
/// role), so it is not counted twice. `member_joined` in the team's log.
pub async fn join_through_sso(
    conn: &mut AnyConnection,
    team_id: &str,
    locked: &LockedSso,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<(), TeamError> {
    if locked.team.status != "active" {
        return Err(TeamError::TeamInactive);
    }
    let invited: Option<(String, String)> = sqlx::query_as(
        "SELECT id, role FROM team_invitations WHERE team_id = $1 AND email = $2 \
         AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3 \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(team_id)
    .bind(email)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let held = seats_held(conn, team_id, now).await? - i64::from(invited.is_some());
    if held >= locked.team.seats {
        return Err(TeamError::SeatsExhausted);
    }
    let role = match &invited {
        Some((id, role)) => {
            sqlx::query("UPDATE team_invitations SET accepted_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            role.as_str()
        }
        None => "member",
    };
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(team_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    record_event(
        conn,
        team_id,
        TeamEventType::MemberJoined,
        Some(user_id),
        Some(user_id),
        now,
    )
    .await?;
    tracing::info!(team_id, user_id, "joined the team through its SSO");
    Ok(())
}

/// Whether `user_id` (with `email`) must sign in through a team's provider: a member (not the
/// owner) of a team whose SSO is `required` and lists the email's domain. The owner keeps
/// password sign-in, so a broken provider cannot lock the team out.
pub async fn sso_required(
    conn: &mut AnyConnection,
    user_id: &str,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let domains: Vec<String> = sqlx::query_scalar(
        "SELECT s.domains FROM team_sso s JOIN team_members m ON m.team_id = s.team_id \
         WHERE m.user_id = $1 AND m.role <> 'owner' AND s.required = 1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    Ok(domains
        .iter()
        .any(|listed| domain_listed(email, &split_domains(listed))))
}

/// The sealing context of a team's secret: it opens for this team only.
fn seal_context(team_id: &str) -> String {
    format!("team-sso\0{team_id}")
}

fn split_domains(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|domain| !domain.is_empty())
        .map(str::to_owned)
        .collect()
}

fn domain_listed(email: &str, domains: &[String]) -> bool {
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    let domain = domain.to_ascii_lowercase();
    domains.contains(&domain)
}

/// An update's fields, checked and normalized.
#[derive(Debug)]
struct Valid {
    issuer: String,
    client_id: String,
    domains: Vec<String>,
}

fn validate(update: &SsoUpdate) -> Result<Valid, TeamError> {
    let issuer = update.issuer.trim();
    if issuer.len() > MAX_ISSUER_BYTES || adiuva_config::check_issuer(issuer).is_err() {
        return Err(TeamError::Invalid(
            "invalid_issuer",
            "issuer must be an https:// URL (http:// only on a loopback address) without query, \
             fragment or user info, at most 512 bytes",
        ));
    }
    let client_id = update.client_id.trim();
    if client_id.is_empty()
        || client_id.len() > MAX_CLIENT_ID_BYTES
        || client_id.chars().any(char::is_control)
    {
        return Err(TeamError::Invalid(
            "invalid_client",
            "client_id must be 1 to 256 bytes without control characters",
        ));
    }
    let secret = &update.client_secret;
    if secret.is_empty()
        || secret.len() > MAX_CLIENT_SECRET_BYTES
        || secret.chars().any(char::is_control)
    {
        return Err(TeamError::Invalid(
            "invalid_client",
            "client_secret must be 1 to 1024 bytes without control characters",
        ));
    }
    let invalid_domains = TeamError::Invalid(
        "invalid_domains",
        "domains must be 1 to 20 domain names (example.com): letters, digits and hyphens in \
         dot-separated labels",
    );
    if update.domains.is_empty() || update.domains.len() > MAX_DOMAINS {
        return Err(invalid_domains);
    }
    let mut domains = Vec::with_capacity(update.domains.len());
    for domain in &update.domains {
        let domain = domain.trim().to_ascii_lowercase();
        if !valid_domain(&domain) {
            return Err(invalid_domains);
        }
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    Ok(Valid {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        domains,
    })
}

/// A DNS name of at least two labels: each 1 to 63 of `a-z0-9-`, not starting or ending with
/// a hyphen; 253 bytes at most.
fn valid_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(issuer: &str, domains: &[&str]) -> SsoUpdate {
        SsoUpdate {
            issuer: issuer.to_owned(),
            client_id: "client".to_owned(),
            client_secret: "secret".to_owned(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            required: false,
        }
    }

    #[test]
    fn domains_are_lower_cased_checked_and_deduplicated() {
        let valid = validate(&update(
            "https://idp.example.com",
            &[" Example.COM ", "example.com", "sub.example.org"],
        ))
        .unwrap();
        assert_eq!(valid.domains, ["example.com", "sub.example.org"]);
        for bad in [
            &[][..],
            &["example"],
            &["exa mple.com"],
            &["-example.com"],
            &["example..com"],
            &["example.com,other.com"],
            &["*.example.com"],
            &["bob@example.com"],
        ] {
            assert!(
                validate(&update("https://idp.example.com", bad)).is_err(),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..21).map(|n| format!("d{n}.example.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(validate(&update("https://idp.example.com", &many)).is_err());
    }

    #[test]
    fn issuers_follow_the_servers_rule() {
        assert!(validate(&update("http://127.0.0.1:9000", &["example.com"])).is_ok());
        for bad in [
            "http://idp.example.com",
            "https://idp.example.com?tenant=1",
            "ftp://idp.example.com",
            "idp.example.com",
        ] {
            assert!(validate(&update(bad, &["example.com"])).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_email_is_covered_by_its_domain_only() {
        let domains = vec!["example.com".to_owned()];
        assert!(domain_listed("Ann@Example.com", &domains));
        assert!(!domain_listed("ann@sub.example.com", &domains));
        assert!(!domain_listed("ann@example.com.evil.org", &domains));
        assert!(!domain_listed("example.com", &domains));
    }

    #[test]
    fn secrets_open_for_their_team_only() {
        let sealer = Sealer::new([7u8; 32]);
        let sealed = sealer.seal(&seal_context("team-a"), b"s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            sealer.open(&seal_context("team-a"), &sealed).as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(sealer.open(&seal_context("team-b"), &sealed), None);
    }

    #[test]
    fn the_key_setting_is_long_enough_or_absent() {
        assert_eq!(
            sso_key(&Source::from_pairs(Vec::<(&str, &str)>::new())),
            Ok(None)
        );
        assert!(sso_key(&Source::from_pairs(vec![("SSO_SECRET_KEY", "short")])).is_err());
        let key = sso_key(&Source::from_pairs(vec![(
            "SSO_SECRET_KEY",
            "k".repeat(32),
        )]))
        .unwrap()
        .unwrap();
        // Derived for this use: not the setting's bytes.
        assert_ne!(&key[..], "k".repeat(32).as_bytes());
    }
}
