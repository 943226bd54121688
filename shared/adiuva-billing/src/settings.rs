//! The settings of billing.

use adiuva_access::Tier;
use adiuva_config::{ConfigError, Secret, Source};

/// `STRIPE_SECRET_KEY` (unset or empty: stub mode), `STRIPE_API_BASE` (tests point it at a
/// local server), `STRIPE_WEBHOOK_SECRET`, the prices `STRIPE_PRICE_PRO|POWER|TEAM`, and where
/// Stripe sends the user afterwards: `BILLING_SUCCESS_URL`, `BILLING_CANCEL_URL`,
/// `BILLING_PORTAL_RETURN_URL`. Stub links start with `PUBLIC_BASE_URL` and are signed with a
/// key derived from the server's secret (`JWT_SECRET`, or the one generated for development;
/// a random key of the process in a Lambda without one).
#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub stripe: Option<StripeSettings>,
    pub webhook_secret: Option<Secret>,
    pub prices: Prices,
    pub success_url: String,
    pub cancel_url: String,
    pub portal_return_url: String,
    pub public_base_url: String,
    pub stub_signing_secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct StripeSettings {
    pub secret_key: Secret,
    /// Ends with `/`: the client appends `v1/...`.
    pub api_base: String,
}

/// The Stripe price of each paid tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    pub pro: String,
    pub power: String,
    pub team: String,
}

impl Prices {
    pub fn of(&self, tier: Tier) -> &str {
        match tier {
            Tier::Pro => &self.pro,
            Tier::Power => &self.power,
            // Free is never sold; callers refuse it before asking.
            Tier::Team | Tier::Free => &self.team,
        }
    }

    /// The tier a price sells.
    pub fn tier_of(&self, price: &str) -> Option<Tier> {
        [Tier::Pro, Tier::Power, Tier::Team]
            .into_iter()
            .find(|tier| self.of(*tier) == price)
    }
}

impl BillingSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let api_base = source
            .url("STRIPE_API_BASE")
            .unwrap_or_else(|| "https://api.stripe.com".to_owned());
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "STRIPE_API_BASE",
                format!("expected an http(s) URL, got {api_base:?}"),
            ));
        }
        Ok(Self {
            stripe: source
                .secret("STRIPE_SECRET_KEY")
                .map(|secret_key| StripeSettings {
                    secret_key,
                    api_base: format!("{api_base}/"),
                }),
            webhook_secret: source.secret("STRIPE_WEBHOOK_SECRET"),
            prices: Prices {
                pro: source.string("STRIPE_PRICE_PRO", "price_pro_monthly"),
                power: source.string("STRIPE_PRICE_POWER", "price_power_monthly"),
                team: source.string("STRIPE_PRICE_TEAM", "price_team_monthly"),
            },
            success_url: source.string(
                "BILLING_SUCCESS_URL",
                "https://adiuva.app/billing/success?session_id={CHECKOUT_SESSION_ID}",
            ),
            cancel_url: source.string("BILLING_CANCEL_URL", "https://adiuva.app/billing/cancel"),
            portal_return_url: source
                .string("BILLING_PORTAL_RETURN_URL", "https://adiuva.app/billing"),
            public_base_url: source.public_base_url(),
            // The server's secret (its billing key is derived from it), where the function
            // has one or a developer's machine generates one; a Lambda without it (the janitor,
            // which makes no links) signs with a key of its own process.
            stub_signing_secret: if source.raw("JWT_SECRET").is_some_and(|s| !s.is_empty())
                || source.optional("AWS_LAMBDA_FUNCTION_NAME").is_none()
            {
                Some(source.server_secret(source.env()?)?)
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_mode_without_a_key_and_the_reference_prices_by_default() {
        // A secret given, so that the test generates no development secret in its folder.
        const SECRET: (&str, &str) = ("JWT_SECRET", "a-test-secret-of-at-least-32-bytes!");
        let settings = BillingSettings::from_source(&Source::from_pairs([SECRET])).unwrap();
        assert!(settings.stripe.is_none());
        assert_eq!(settings.prices.of(Tier::Pro), "price_pro_monthly");
        assert_eq!(
            settings.prices.tier_of("price_team_monthly"),
            Some(Tier::Team)
        );
        assert_eq!(settings.prices.tier_of("price_other"), None);
        let keyed = BillingSettings::from_source(&Source::from_pairs([
            SECRET,
            ("STRIPE_SECRET_KEY", "sk_test_1"),
            ("STRIPE_API_BASE", "http://127.0.0.1:9/"),
        ]))
        .unwrap();
        assert_eq!(keyed.stripe.unwrap().api_base, "http://127.0.0.1:9/");
        assert!(
            BillingSettings::from_source(&Source::from_pairs([
                SECRET,
                ("STRIPE_API_BASE", "stripe")
            ]))
            .is_err()
        );
    }
}
