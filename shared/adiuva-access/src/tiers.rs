//! The billing-tier feature matrix of the reference design, in one place, with the checks the
//! other functions use: `check_feature`, `require_feature` (403) and the quota limits (402).

use adiuva_error::{DomainError, ErrorKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Power,
    Team,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Pro, Tier::Power, Tier::Team];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Power => "power",
            Tier::Team => "team",
        }
    }

    pub fn parse(value: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|tier| tier.as_str() == value)
    }

    pub fn limits(self) -> &'static TierLimits {
        match self {
            Tier::Free => &FREE,
            Tier::Pro => &PRO,
            Tier::Power => &POWER,
            Tier::Team => &TEAM,
        }
    }
}

/// A countable allowance: `Unlimited` is the reference's `-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max(u64),
    Unlimited,
}

impl Limit {
    pub fn allows(self, count: u64) -> bool {
        match self {
            Limit::Max(max) => count <= max,
            Limit::Unlimited => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimits {
    pub agents: Limit,
    pub batch_active: Limit,
    pub cloud_storage_gb: Limit,
    pub backup_gb: Limit,
    pub providers: Limit,
    /// Points in the vector store (each an encrypted blob with its vector). Not in the
    /// reference's matrix: ours, so that one account cannot fill the shared vector store.
    pub vector_points: Limit,
    /// Bytes of the encrypted blobs of those points (vectors and ids not counted). Exact bytes,
    /// not quota units: the allowances are far below a "GB" of the other quotas.
    pub vector_bytes: Limit,
    /// Records a user may keep, and backups: not in the reference's matrix either; ours, so
    /// that empty records and backups cannot grow the tables (and the janitor's work) without
    /// bound.
    pub records: Limit,
    pub backups: Limit,
    pub batch_builder: bool,
    pub plugin_marketplace: bool,
    pub sso: bool,
    pub requests_per_minute: u32,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

const FREE: TierLimits = TierLimits {
    agents: Limit::Max(3),
    batch_active: Limit::Max(2),
    cloud_storage_gb: Limit::Max(0),
    backup_gb: Limit::Max(0),
    providers: Limit::Max(1),
    vector_points: Limit::Max(1_000),
    vector_bytes: Limit::Max(10 * MIB),
    records: Limit::Max(0),
    backups: Limit::Max(0),
    batch_builder: false,
    plugin_marketplace: false,
    sso: false,
    requests_per_minute: 20,
};
const PRO: TierLimits = TierLimits {
    agents: Limit::Unlimited,
    batch_active: Limit::Max(10),
    cloud_storage_gb: Limit::Max(5),
    backup_gb: Limit::Max(5),
    providers: Limit::Unlimited,
    vector_points: Limit::Max(100_000),
    vector_bytes: Limit::Max(GIB),
    records: Limit::Max(100_000),
    backups: Limit::Max(100),
    batch_builder: false,
    plugin_marketplace: false,
    sso: false,
    requests_per_minute: 60,
};
const POWER: TierLimits = TierLimits {
    agents: Limit::Unlimited,
    batch_active: Limit::Unlimited,
    cloud_storage_gb: Limit::Max(25),
    backup_gb: Limit::Max(25),
    providers: Limit::Unlimited,
    vector_points: Limit::Max(1_000_000),
    vector_bytes: Limit::Max(10 * GIB),
    records: Limit::Max(1_000_000),
    backups: Limit::Max(1_000),
    batch_builder: true,
    plugin_marketplace: true,
    sso: false,
    requests_per_minute: 120,
};
const TEAM: TierLimits = TierLimits {
    agents: Limit::Unlimited,
    batch_active: Limit::Unlimited,
    cloud_storage_gb: Limit::Unlimited,
    backup_gb: Limit::Unlimited,
    providers: Limit::Unlimited,
    vector_points: Limit::Unlimited,
    vector_bytes: Limit::Unlimited,
    records: Limit::Unlimited,
    backups: Limit::Unlimited,
    batch_builder: true,
    plugin_marketplace: true,
    sso: true,
    requests_per_minute: 200,
};

/// The features of the matrix, named as in the reference (`cloud_storage_gb`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Agents,
    BatchActive,
    CloudStorage,
    Backup,
    Providers,
    BatchBuilder,
    PluginMarketplace,
    Sso,
}

impl Feature {
    pub const ALL: [Feature; 8] = [
        Feature::Agents,
        Feature::BatchActive,
        Feature::CloudStorage,
        Feature::Backup,
        Feature::Providers,
        Feature::BatchBuilder,
        Feature::PluginMarketplace,
        Feature::Sso,
    ];

    /// The feature named `name` in the matrix.
    pub fn from_name(name: &str) -> Option<Feature> {
        Self::ALL.into_iter().find(|feature| feature.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Feature::Agents => "agents",
            Feature::BatchActive => "batch_active",
            Feature::CloudStorage => "cloud_storage_gb",
            Feature::Backup => "backup_gb",
            Feature::Providers => "providers",
            Feature::BatchBuilder => "batch_builder",
            Feature::PluginMarketplace => "plugin_marketplace",
            Feature::Sso => "sso",
        }
    }
}

/// Whether the tier has the feature at all: a flag that is on, or an allowance above zero.
pub fn check_feature(tier: Tier, feature: Feature) -> bool {
    let limits = tier.limits();
    let allowance = |limit: Limit| limit != Limit::Max(0);
    match feature {
        Feature::Agents => allowance(limits.agents),
        Feature::BatchActive => allowance(limits.batch_active),
        Feature::CloudStorage => allowance(limits.cloud_storage_gb),
        Feature::Backup => allowance(limits.backup_gb),
        Feature::Providers => allowance(limits.providers),
        Feature::BatchBuilder => limits.batch_builder,
        Feature::PluginMarketplace => limits.plugin_marketplace,
        Feature::Sso => limits.sso,
    }
}

/// `check_feature` as a guard: 403 `tier_required` when the tier lacks the feature.
pub fn require_feature(tier: Tier, feature: Feature) -> Result<(), AccessError> {
    if check_feature(tier, feature) {
        Ok(())
    } else {
        Err(AccessError::FeatureNotInTier { feature, tier })
    }
}

/// The byte-denominated quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    CloudStorage,
    Backup,
}

/// The quota of a tier in bytes; `None` is unlimited. `unit_bytes` is one "GB" of the matrix
/// (`QUOTA_UNIT_BYTES`, 1 GiB in production), so tests can use small quotas.
pub fn quota_bytes(tier: Tier, quota: Quota, unit_bytes: u64) -> Option<u64> {
    let limit = match quota {
        Quota::CloudStorage => tier.limits().cloud_storage_gb,
        Quota::Backup => tier.limits().backup_gb,
    };
    match limit {
        Limit::Max(units) => Some(units.saturating_mul(unit_bytes)),
        Limit::Unlimited => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error("the {} feature is not included in the {} tier", .feature.name(), .tier.as_str())]
    FeatureNotInTier { feature: Feature, tier: Tier },
    #[error("this would exceed the {} quota of the {} tier", quota_name(*.quota), .tier.as_str())]
    QuotaExceeded { quota: Quota, tier: Tier },
    #[error("this action needs the admin role")]
    AdminRequired,
    #[error("the {} tier allows {limit} {what}", .tier.as_str())]
    CountExceeded {
        what: &'static str,
        limit: u64,
        tier: Tier,
    },
}

fn quota_name(quota: Quota) -> &'static str {
    match quota {
        Quota::CloudStorage => "cloud storage",
        Quota::Backup => "backup storage",
    }
}

impl DomainError for AccessError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::FeatureNotInTier { .. } | Self::AdminRequired => ErrorKind::Forbidden,
            Self::QuotaExceeded { .. } | Self::CountExceeded { .. } => ErrorKind::QuotaExceeded,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::FeatureNotInTier { .. } => "tier_required",
            Self::QuotaExceeded { .. } | Self::CountExceeded { .. } => "quota_exceeded",
            Self::AdminRequired => "admin_required",
        }
    }
}

/// The tier a subscription row grants: its tier while Stripe still considers it live, else free.
pub fn live_tier(tier: Option<&str>, status: Option<&str>) -> Tier {
    match (tier.and_then(Tier::parse), status) {
        (Some(tier), Some("active" | "trialing" | "past_due")) => tier,
        _ => Tier::Free,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_matches_the_reference() {
        assert_eq!(FREE.agents, Limit::Max(3));
        assert_eq!(PRO.batch_active, Limit::Max(10));
        assert_eq!(POWER.cloud_storage_gb, Limit::Max(25));
        assert_eq!(TEAM.backup_gb, Limit::Unlimited);
        let rates: Vec<u32> = Tier::ALL
            .iter()
            .map(|t| t.limits().requests_per_minute)
            .collect();
        assert_eq!(rates, [20, 60, 120, 200]);
    }

    #[test]
    fn vector_allowances_grow_with_the_tier() {
        let points: Vec<Limit> = Tier::ALL.iter().map(|t| t.limits().vector_points).collect();
        assert_eq!(
            points,
            [
                Limit::Max(1_000),
                Limit::Max(100_000),
                Limit::Max(1_000_000),
                Limit::Unlimited
            ]
        );
        let bytes: Vec<Limit> = Tier::ALL.iter().map(|t| t.limits().vector_bytes).collect();
        assert_eq!(
            bytes,
            [
                Limit::Max(10 << 20),
                Limit::Max(1 << 30),
                Limit::Max(10 << 30),
                Limit::Unlimited
            ]
        );
    }

    #[test]
    fn features_by_tier() {
        assert!(!check_feature(Tier::Free, Feature::CloudStorage));
        assert!(check_feature(Tier::Pro, Feature::CloudStorage));
        assert!(!check_feature(Tier::Pro, Feature::PluginMarketplace));
        assert!(check_feature(Tier::Power, Feature::PluginMarketplace));
        assert!(check_feature(Tier::Power, Feature::BatchBuilder));
        assert!(!check_feature(Tier::Power, Feature::Sso));
        assert!(check_feature(Tier::Team, Feature::Sso));
        assert!(check_feature(Tier::Free, Feature::Agents));
    }

    #[test]
    fn require_feature_is_a_403() {
        let err = require_feature(Tier::Pro, Feature::PluginMarketplace).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(err.code(), "tier_required");
        assert!(require_feature(Tier::Team, Feature::Sso).is_ok());
    }

    #[test]
    fn quotas_in_bytes() {
        assert_eq!(
            quota_bytes(Tier::Free, Quota::CloudStorage, 1 << 30),
            Some(0)
        );
        assert_eq!(
            quota_bytes(Tier::Pro, Quota::CloudStorage, 1 << 30),
            Some(5 << 30)
        );
        assert_eq!(quota_bytes(Tier::Power, Quota::Backup, 10), Some(250));
        assert_eq!(quota_bytes(Tier::Team, Quota::Backup, 10), None);
        let err = AccessError::QuotaExceeded {
            quota: Quota::Backup,
            tier: Tier::Pro,
        };
        assert_eq!(err.kind(), ErrorKind::QuotaExceeded);
    }

    #[test]
    fn only_live_subscriptions_grant_their_tier() {
        assert_eq!(live_tier(None, None), Tier::Free);
        assert_eq!(live_tier(Some("pro"), Some("active")), Tier::Pro);
        assert_eq!(live_tier(Some("team"), Some("past_due")), Tier::Team);
        assert_eq!(live_tier(Some("power"), Some("canceled")), Tier::Free);
        assert_eq!(live_tier(Some("bogus"), Some("active")), Tier::Free);
    }
}
