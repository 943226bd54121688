//! Stub mode (no `STRIPE_SECRET_KEY`, the reference's behaviour): checkout answers a signed,
//! one-time URL of the local server; opening it activates the tier for 30 days. The local
//! server serves it only outside production; a Lambda never does.

use adiuva_access::{Caller, Tier};
use adiuva_checksum::Signer;
use adiuva_config::ConfigError;
use adiuva_db::{Database, now_ms};

use crate::settings::BillingSettings;
use crate::{BillingError, state};

/// The route of the stub checkout page (public: the link is the credential).
pub const STUB_CHECKOUT_PATH: &str = "/api/v1/billing/stub/checkout/{token}";

/// Domain separation from the other uses of `JWT_SECRET`.
const DOMAIN: &[u8] = b"adiuva-billing/stub-checkout/v1\0";

/// How long a stub link works.
const LINK_TTL_MS: i64 = 60 * 60 * 1000;

pub(crate) fn signer(settings: &BillingSettings) -> Result<Signer, ConfigError> {
    let key = match &settings.stub_signing_secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|err| ConfigError::unusable("the stub checkout signer", err))?;
            key
        }
    };
    Ok(Signer::new(&key, DOMAIN))
}

pub(crate) fn checkout_url(
    settings: &BillingSettings,
    signer: &Signer,
    caller: &Caller,
    tier: Tier,
) -> String {
    let nonce = adiuva_db::new_id();
    let expires_at = now_ms() + LINK_TTL_MS;
    let token =
        signer.sign(format!("{}\n{}\n{expires_at}\n{nonce}", caller.id, tier.as_str()).as_bytes());
    format!(
        "{}{}",
        settings.public_base_url,
        STUB_CHECKOUT_PATH.replace("{token}", &token)
    )
}

pub(crate) async fn complete(
    db: &Database,
    signer: &Signer,
    token: &str,
) -> Result<Tier, BillingError> {
    let payload = signer.verify(token).ok_or(BillingError::InvalidStubToken)?;
    let payload = String::from_utf8(payload).map_err(|_| BillingError::InvalidStubToken)?;
    let parts: Vec<&str> = payload.split('\n').collect();
    let [user_id, tier, expires_at, nonce] = parts.as_slice() else {
        return Err(BillingError::InvalidStubToken);
    };
    let tier = Tier::parse(tier).ok_or(BillingError::InvalidStubToken)?;
    let expires_at: i64 = expires_at
        .parse()
        .map_err(|_| BillingError::InvalidStubToken)?;
    if now_ms() >= expires_at {
        return Err(BillingError::InvalidStubToken);
    }
    let mut tx = db.pool().begin().await?;
    if !state::first_time(&mut tx, &format!("stub:{nonce}"), "stub.checkout").await? {
        return Err(BillingError::StubTokenUsed);
    }
    if !state::lock_user(&mut tx, user_id).await? {
        return Err(BillingError::InvalidStubToken);
    }
    state::activate_stub(&mut tx, user_id, tier).await?;
    tx.commit().await?;
    tracing::info!(user_id, tier = tier.as_str(), "stub checkout completed");
    Ok(tier)
}
