//! The admin's side: the queue of versions waiting for review (with their checklist results),
//! decisions (recorded in `plugin_reviews`; an approval makes the version the listing), and
//! blocks. The routes sit behind the admin guard; these methods check the role again, so no
//! other caller can reach them.

use adiuva_access::Caller;
use adiuva_db::{new_id, now_ms};
use serde::{Deserialize, Serialize};

use crate::catalog::lock_plugin;
use crate::checklist::CheckResult;
use crate::submissions::list_version;
use crate::{Marketplace, MarketplaceError, parse_permissions};

pub(crate) const MAX_NOTES_CHARS: usize = 2000;

/// A version waiting for review.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuedVersion {
    pub version_id: String,
    pub plugin_id: String,
    pub version: String,
    pub name: String,
    pub description: String,
    pub author: String,
    pub category: String,
    pub permissions: Vec<String>,
    pub price_cents: i64,
    pub developer_id: String,
    pub developer_email: String,
    /// The approved version this one would replace, if the plugin is listed.
    pub current_version: Option<String>,
    pub package_size_bytes: Option<i64>,
    pub package_checksum: Option<String>,
    pub checks: Vec<CheckResult>,
    pub submitted_at: i64,
}

/// Its schema (`approve`, or `reject` with notes) is [`crate::openapi::review_request`].
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewRequest {
    /// `approve` or `reject`.
    pub decision: String,
    /// Shown to the developer; required to reject.
    pub notes: Option<String>,
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ReviewRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::review_request().into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ReviewRequest {}

/// A recorded decision.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewOutcome {
    pub review_id: String,
    pub plugin_id: String,
    pub version_id: String,
    pub version: String,
    /// `approved` or `rejected`.
    pub decision: String,
    pub notes: Option<String>,
    pub reviewed_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockRequest {
    /// Why, shown in the plugin's detail: 1 to 2000 characters once trimmed.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::block_reason))]
    pub reason: String,
}

/// A plugin after a block.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Blocked {
    pub plugin_id: String,
    pub blocked: bool,
    pub block_reason: String,
    pub blocked_at: i64,
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: String,
    plugin_id: String,
    version: String,
    name: String,
    description: String,
    author: String,
    category: String,
    permissions: String,
    price_cents: i64,
    developer_id: String,
    email: String,
    listing_status: Option<String>,
    listing_version: Option<String>,
    size_bytes: Option<i64>,
    checksum: Option<String>,
    checks: String,
    submitted_at: i64,
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: String,
    version: String,
    developer_id: String,
}

fn notes_of(notes: Option<String>) -> Result<Option<String>, MarketplaceError> {
    let notes = notes.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if notes
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTES_CHARS)
    {
        return Err(MarketplaceError::Invalid(
            format!("notes may be at most {MAX_NOTES_CHARS} characters").into(),
        ));
    }
    Ok(notes)
}

impl Marketplace {
    /// Versions waiting for review, oldest first.
    pub async fn queue(&self, admin: &Caller) -> Result<Vec<QueuedVersion>, MarketplaceError> {
        admin.require_admin()?;
        let rows: Vec<QueueRow> = sqlx::query_as(
            "SELECT v.id, v.plugin_id, v.version, v.name, v.description, v.author, v.category, \
             v.permissions, v.price_cents, v.developer_id, u.email, p.status AS listing_status, \
             p.version AS listing_version, k.size_bytes, k.checksum, v.checks, v.submitted_at \
             FROM plugin_versions v JOIN users u ON u.id = v.developer_id \
             LEFT JOIN plugins p ON p.id = v.plugin_id \
             LEFT JOIN plugin_packages k ON k.id = v.package_id \
             WHERE v.status = 'pending_review' ORDER BY v.submitted_at, v.id",
        )
        .fetch_all(self.db().pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| QueuedVersion {
                version_id: row.id,
                plugin_id: row.plugin_id,
                version: row.version,
                name: row.name,
                description: row.description,
                author: row.author,
                category: row.category,
                permissions: parse_permissions(&row.permissions),
                price_cents: row.price_cents,
                developer_id: row.developer_id,
                developer_email: row.email,
                current_version: row
                    .listing_version
                    .filter(|_| row.listing_status.as_deref() == Some("approved")),
                package_size_bytes: row.size_bytes,
                package_checksum: row.checksum,
                checks: serde_json::from_str(&row.checks).unwrap_or_default(),
                submitted_at: row.submitted_at,
            })
            .collect())
    }

    /// Approves or rejects the plugin's version under review. An approval makes it the
    /// listing (name, version, price, package, ...); a rejection of a plugin never approved
    /// marks the listing rejected (which releases its id), and leaves a listed plugin as it
    /// was. No admin decides on a version they submitted (403 `own_plugin`).
    pub async fn review(
        &self,
        admin: &Caller,
        plugin_id: &str,
        request: ReviewRequest,
    ) -> Result<ReviewOutcome, MarketplaceError> {
        admin.require_admin()?;
        let decision = match request.decision.as_str() {
            "approve" => "approved",
            "reject" => "rejected",
            _ => {
                return Err(MarketplaceError::Invalid(
                    "decision must be approve or reject".into(),
                ));
            }
        };
        let notes = notes_of(request.notes)?;
        if decision == "rejected" && notes.is_none() {
            return Err(MarketplaceError::Invalid(
                "a rejection needs notes: the developer needs to know why".into(),
            ));
        }
        let now = now_ms();
        let mut tx = self.db().pool().begin().await?;
        if !lock_plugin(&mut tx, plugin_id).await? {
            return Err(MarketplaceError::PluginNotFound);
        }
        let pending: Pending = sqlx::query_as(
            "SELECT id, version, developer_id FROM plugin_versions \
             WHERE plugin_id = $1 AND status = 'pending_review'",
        )
        .bind(plugin_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(MarketplaceError::NothingToReview)?;
        if pending.developer_id == admin.id {
            // Four eyes: the review is the check of a developer's work by someone else.
            return Err(MarketplaceError::OwnPlugin);
        }
        sqlx::query("UPDATE plugin_versions SET status = $2 WHERE id = $1")
            .bind(&pending.id)
            .bind(decision)
            .execute(&mut *tx)
            .await?;
        let review_id = new_id();
        sqlx::query(
            "INSERT INTO plugin_reviews (id, plugin_id, reviewer_id, decision, notes, reviewed_at, version_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&review_id)
        .bind(plugin_id)
        .bind(&admin.id)
        .bind(decision)
        .bind(&notes)
        .bind(now)
        .bind(&pending.id)
        .execute(&mut *tx)
        .await?;
        if decision == "approved" {
            list_version(&mut tx, &pending.id, "approved").await?;
        } else {
            sqlx::query(
                "UPDATE plugins SET status = 'rejected', updated_at = $2 \
                 WHERE id = $1 AND status <> 'approved'",
            )
            .bind(plugin_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(
            plugin_id,
            version = pending.version,
            decision,
            "plugin reviewed"
        );
        Ok(ReviewOutcome {
            review_id,
            plugin_id: plugin_id.to_owned(),
            version_id: pending.id,
            version: pending.version,
            decision: decision.to_owned(),
            notes,
            reviewed_at: now,
        })
    }

    /// Hides a plugin from the catalog and refuses new installs; existing installs keep
    /// working and see the block in the plugin's detail.
    pub async fn block(
        &self,
        admin: &Caller,
        plugin_id: &str,
        reason: &str,
    ) -> Result<Blocked, MarketplaceError> {
        admin.require_admin()?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_NOTES_CHARS {
            return Err(MarketplaceError::Invalid(
                format!("reason must be 1 to {MAX_NOTES_CHARS} characters").into(),
            ));
        }
        let now = now_ms();
        let blocked = sqlx::query(
            "UPDATE plugins SET blocked_at = $2, block_reason = $3, updated_at = $2 WHERE id = $1",
        )
        .bind(plugin_id)
        .bind(now)
        .bind(reason)
        .execute(self.db().pool())
        .await?
        .rows_affected();
        if blocked == 0 {
            return Err(MarketplaceError::PluginNotFound);
        }
        tracing::warn!(plugin_id, reason, "plugin blocked");
        Ok(Blocked {
            plugin_id: plugin_id.to_owned(),
            blocked: true,
            block_reason: reason.to_owned(),
            blocked_at: now,
        })
    }
}
