//! Stub mode (no `STRIPE_SECRET_KEY`, the reference's behaviour): where Stripe would show a
//! page (a subscription checkout, a plugin purchase, a developer's payout onboarding), the API
//! answers a signed, one-time URL of the local server; opening it completes what the page
//! would have: a tier active for 30 days, a purchase paid, payouts enabled. The local server
//! serves it only outside production; a Lambda never does.

use adiuva_access::Tier;
use adiuva_checksum::Signer;
use adiuva_config::ConfigError;
use adiuva_db::{Database, now_ms};

use crate::settings::BillingSettings;
use crate::{BillingError, state, team};

/// The route of the stub page (public: the signed one-time link is the credential).
pub const STUB_PATH: &str = "/api/v1/billing/stub/{token}";

/// Domain separation within the stub links' key (derived for them alone from the secret).
const DOMAIN: &[u8] = b"adiuva-billing/stub-link/v1\0";

/// How long a stub link works.
const LINK_TTL_MS: i64 = 60 * 60 * 1000;

/// What opening a stub link completes, in place of a Stripe page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubItem {
    /// A subscription checkout of a tier.
    Tier(Tier),
    /// A team's subscription with this many seats.
    Team { team_id: String, seats: i64 },
    /// A marketplace purchase (its id).
    Purchase(String),
    /// A developer's payout onboarding (Connect).
    Onboarding,
}

/// An opened stub link: whose, what for, and its nonce (recorded once used).
#[derive(Debug, Clone)]
pub struct StubLink {
    pub user_id: String,
    pub item: StubItem,
    pub nonce: String,
}

pub(crate) fn signer(settings: &BillingSettings) -> Result<Signer, ConfigError> {
    let key = match &settings.stub_signing_secret {
        // A key of its own: a stub link's MAC is never one the secret makes for anything else.
        Some(secret) => adiuva_checksum::derive_key(
            secret.expose().as_bytes(),
            adiuva_checksum::purpose::BILLING_STUB_LINKS,
        )
        .to_vec(),
        None => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|err| ConfigError::unusable("the stub link signer", err))?;
            key
        }
    };
    Ok(Signer::new(&key, DOMAIN))
}

pub(crate) fn url(
    settings: &BillingSettings,
    signer: &Signer,
    user_id: &str,
    item: &StubItem,
) -> String {
    let (kind, value) = match item {
        StubItem::Tier(tier) => ("tier", tier.as_str().to_owned()),
        StubItem::Team { team_id, seats } => ("team", format!("{team_id}:{seats}")),
        StubItem::Purchase(id) => ("purchase", id.clone()),
        StubItem::Onboarding => ("onboarding", String::new()),
    };
    let nonce = adiuva_db::new_id();
    let expires_at = now_ms() + LINK_TTL_MS;
    let token =
        signer.sign(format!("{user_id}\n{kind}\n{value}\n{expires_at}\n{nonce}").as_bytes());
    format!(
        "{}{}",
        settings.public_base_url,
        STUB_PATH.replace("{token}", &token)
    )
}

/// Checks a link's signature and expiry.
pub(crate) fn open(signer: &Signer, token: &str) -> Result<StubLink, BillingError> {
    let payload = signer.verify(token).ok_or(BillingError::InvalidStubToken)?;
    let payload = String::from_utf8(payload).map_err(|_| BillingError::InvalidStubToken)?;
    let parts: Vec<&str> = payload.split('\n').collect();
    let [user_id, kind, value, expires_at, nonce] = parts.as_slice() else {
        return Err(BillingError::InvalidStubToken);
    };
    let item = match *kind {
        "tier" => StubItem::Tier(Tier::parse(value).ok_or(BillingError::InvalidStubToken)?),
        "team" => {
            let (team_id, seats) = value
                .split_once(':')
                .ok_or(BillingError::InvalidStubToken)?;
            StubItem::Team {
                team_id: team_id.to_owned(),
                seats: seats.parse().map_err(|_| BillingError::InvalidStubToken)?,
            }
        }
        "purchase" => StubItem::Purchase((*value).to_owned()),
        "onboarding" => StubItem::Onboarding,
        _ => return Err(BillingError::InvalidStubToken),
    };
    let expires_at: i64 = expires_at
        .parse()
        .map_err(|_| BillingError::InvalidStubToken)?;
    if now_ms() >= expires_at {
        return Err(BillingError::InvalidStubToken);
    }
    Ok(StubLink {
        user_id: (*user_id).to_owned(),
        item,
        nonce: (*nonce).to_owned(),
    })
}

/// Records a link as used, in the transaction of what it completes; `StubTokenUsed` the
/// second time.
pub(crate) async fn use_once(
    conn: &mut sqlx::AnyConnection,
    link: &StubLink,
) -> Result<(), BillingError> {
    if state::first_time(conn, &format!("stub:{}", link.nonce), "stub.link").await? {
        Ok(())
    } else {
        Err(BillingError::StubTokenUsed)
    }
}

/// Activates a team's stub subscription: the link's user must still own the team.
pub(crate) async fn complete_team(
    db: &Database,
    link: &StubLink,
    team_id: &str,
    seats: i64,
) -> Result<(), BillingError> {
    let mut tx = db.pool().begin().await?;
    use_once(&mut tx, link).await?;
    if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none()
        || adiuva_teams::role_of(&mut tx, team_id, &link.user_id).await?
            != Some(adiuva_teams::TeamRole::Owner)
    {
        return Err(BillingError::InvalidStubToken);
    }
    team::activate_stub(&mut tx, team_id, seats, &link.user_id).await?;
    tx.commit().await?;
    tracing::info!(team_id, seats, "stub team checkout completed");
    Ok(())
}

/// Activates the tier of a stub checkout link.
pub(crate) async fn complete_tier(
    db: &Database,
    link: &StubLink,
    tier: Tier,
) -> Result<(), BillingError> {
    let mut tx = db.pool().begin().await?;
    use_once(&mut tx, link).await?;
    if !state::lock_user(&mut tx, &link.user_id).await? {
        return Err(BillingError::InvalidStubToken);
    }
    state::activate_stub(&mut tx, &link.user_id, tier).await?;
    tx.commit().await?;
    tracing::info!(
        user_id = link.user_id,
        tier = tier.as_str(),
        "stub checkout completed"
    );
    Ok(())
}
