//! Developer submissions: a manifest and an uploaded package, checked by the [`checklist`],
//! stored as a version waiting for review. Any signed-in user may submit, but a package needs
//! a tier with the marketplace (adiuva-storage's upload flow checks it). A plugin id
//! belongs to the developer whose submission first passed the checklist while that
//! submission is under review or once a version is approved; a reviewer's rejection of a
//! plugin never approved releases the id to whoever next submits it. A new version of a
//! plugin is a new submission of its id by that developer, one under review at a time.
//!
//! A submission that fails the checklist keeps only the verdict (the checks' results, the
//! version and when): none of the fields it was sent with, and no hold on its package, which
//! the janitor collects like any unused one.
//!
//! [`checklist`]: crate::checklist

use std::collections::BTreeMap;

use adiuva_access::Caller;
use adiuva_db::{new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::catalog::lock_plugin;
use crate::checklist::{self, CheckResult, Facts, Manifest};
use crate::{Marketplace, MarketplaceError, parse_permissions};

/// What a submission that passed the checklist answers (201).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    pub plugin_id: String,
    pub version_id: String,
    pub version: String,
    /// `pending_review`.
    pub status: String,
    pub checks: Vec<CheckResult>,
}

/// One of a developer's plugins with every version submitted.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeveloperPlugin {
    pub plugin_id: String,
    /// The listing's status (`pending_review`, `approved`, `rejected`); `null` when no
    /// submission of this id passed the checklist.
    pub status: Option<String>,
    pub blocked: bool,
    pub block_reason: Option<String>,
    pub install_count: i64,
    pub avg_rating: f64,
    pub rating_count: i64,
    /// Newest first.
    pub versions: Vec<VersionView>,
}

/// A submitted version: its checklist results and the reviewer's decision.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    pub version_id: String,
    pub version: String,
    pub name: String,
    /// `pending_review`, `approved` or `rejected` (by the checklist or a reviewer).
    pub status: String,
    pub price_cents: i64,
    pub permissions: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub review_notes: Option<String>,
    pub reviewed_at: Option<i64>,
    pub submitted_at: i64,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: String,
    plugin_id: String,
    version: String,
    name: String,
    status: String,
    price_cents: i64,
    permissions: String,
    checks: String,
    notes: Option<String>,
    reviewed_at: Option<i64>,
    submitted_at: i64,
}

impl VersionRow {
    fn view(self) -> VersionView {
        VersionView {
            version_id: self.id,
            version: self.version,
            name: self.name,
            status: self.status,
            price_cents: self.price_cents,
            permissions: parse_permissions(&self.permissions),
            checks: serde_json::from_str(&self.checks).unwrap_or_default(),
            review_notes: self.notes,
            reviewed_at: self.reviewed_at,
            submitted_at: self.submitted_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct Owner {
    author_id: Option<String>,
    status: String,
    version: String,
}

impl Marketplace {
    /// Checks a submission and stores it: waiting for review when every check passed, else
    /// as rejected by the checklist (under an id the caller may use: only the verdict) and
    /// refused with every reason. The manifest was read within its bounds; the checks run on
    /// the blocking pool, so a name compared with many others never holds an async worker.
    pub async fn submit(
        &self,
        caller: &Caller,
        manifest: Manifest,
    ) -> Result<Submitted, MarketplaceError> {
        let id_usable = checklist::valid_id(&manifest.id);
        let mut facts = Facts::default();
        if id_usable {
            let mut conn = self.db().pool().acquire().await?;
            let owner: Option<Owner> =
                sqlx::query_as("SELECT author_id, status, version FROM plugins WHERE id = $1")
                    .bind(&manifest.id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(owner) = &owner {
                if owner.author_id.as_deref() != Some(caller.id.as_str()) && !released(owner) {
                    return Err(MarketplaceError::IdTaken(manifest.id));
                }
                if owner.status == "approved" {
                    facts.last_approved = Some(owner.version.clone());
                }
            }
            let pending: Option<String> = sqlx::query_scalar(
                "SELECT id FROM plugin_versions WHERE plugin_id = $1 AND status = 'pending_review'",
            )
            .bind(&manifest.id)
            .fetch_optional(&mut *conn)
            .await?;
            if pending.is_some() {
                return Err(MarketplaceError::ReviewPending);
            }
        }
        facts.other_names =
            sqlx::query_as("SELECT id, name FROM plugins WHERE id <> $1 AND status <> 'rejected'")
                .bind(&manifest.id)
                .fetch_all(self.db().pool())
                .await?;
        if !manifest.package_id.is_empty() {
            facts.package = self
                .inner
                .storage
                .package(&caller.id, &manifest.package_id)
                .await?;
        }
        if manifest.is_paid() {
            facts.payouts_ready = self.purchases().payouts_ready(&caller.id).await?;
        }

        let (manifest, facts, checks) = tokio::task::spawn_blocking(move || {
            let checks = checklist::run(&manifest, &facts);
            (manifest, facts, checks)
        })
        .await
        .map_err(MarketplaceError::ChecklistAborted)?;
        let package_key = facts.package.as_ref().map(|p| p.s3_key.as_str());
        let version_id = new_id();
        if checks.iter().any(|check| !check.passed) {
            if id_usable {
                let mut conn = self.db().pool().acquire().await?;
                insert_verdict(&mut conn, &version_id, caller, &manifest, &checks).await?;
            }
            tracing::info!(plugin_id = manifest.id, "submission failed the checklist");
            return Err(MarketplaceError::ChecklistFailed(checks));
        }

        // The version first (the transaction's first statement writes, and a second version
        // under review fails here), then the plugin's row made from it.
        let mut tx = self.db().pool().begin().await?;
        match insert_version(
            &mut tx,
            &version_id,
            caller,
            &manifest,
            package_key,
            "pending_review",
            &checks,
        )
        .await
        {
            Ok(()) => {}
            Err(err) if adiuva_db::is_unique_violation(&err) => {
                return Err(MarketplaceError::ReviewPending);
            }
            Err(err) => return Err(err.into()),
        }
        let created = sqlx::query(
            "INSERT INTO plugins (id, name, description, version, author, author_id, category, \
             price_cents, permissions, status, s3_package_key, created_at, updated_at) \
             SELECT plugin_id, name, description, version, author, developer_id, category, \
             price_cents, permissions, 'pending_review', package_key, submitted_at, submitted_at \
             FROM plugin_versions WHERE id = $1 ON CONFLICT (id) DO NOTHING",
        )
        .bind(&version_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            lock_plugin(&mut tx, &manifest.id).await?;
            let owner: Owner =
                sqlx::query_as("SELECT author_id, status, version FROM plugins WHERE id = $1")
                    .bind(&manifest.id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mine = owner.author_id.as_deref() == Some(caller.id.as_str());
            if !mine && !released(&owner) {
                // Another developer's first submission of this id won a race with ours.
                return Err(MarketplaceError::IdTaken(manifest.id));
            }
            if !mine {
                // The id was released by the rejection of its first developer's submission:
                // the listing is made again from ours.
                sqlx::query("UPDATE plugins SET author_id = $2 WHERE id = $1")
                    .bind(&manifest.id)
                    .bind(&caller.id)
                    .execute(&mut *tx)
                    .await?;
                list_version(&mut tx, &version_id, "pending_review").await?;
            } else if owner.status != "approved" {
                // Not listed yet: the listing shows the submission under review.
                list_version(&mut tx, &version_id, "pending_review").await?;
            }
        }
        tx.commit().await?;
        tracing::info!(
            plugin_id = manifest.id,
            version = manifest.version,
            version_id,
            "plugin submitted for review"
        );
        Ok(Submitted {
            plugin_id: manifest.id,
            version_id,
            version: manifest.version,
            status: "pending_review".to_owned(),
            checks,
        })
    }

    /// The caller's plugins, each with every version submitted (newest first).
    pub async fn developer_plugins(
        &self,
        caller: &Caller,
    ) -> Result<Vec<DeveloperPlugin>, MarketplaceError> {
        let mut conn = self.db().pool().acquire().await?;
        let versions: Vec<VersionRow> = sqlx::query_as(
            "SELECT v.id, v.plugin_id, v.version, v.name, v.status, v.price_cents, v.permissions, \
             v.checks, r.notes, r.reviewed_at, v.submitted_at FROM plugin_versions v \
             LEFT JOIN plugin_reviews r ON r.version_id = v.id \
             WHERE v.developer_id = $1 ORDER BY v.plugin_id, v.submitted_at DESC, v.id",
        )
        .bind(&caller.id)
        .fetch_all(&mut *conn)
        .await?;
        let listings: Vec<crate::catalog::PluginRow> = sqlx::query_as(concat!(
            "SELECT ",
            crate::catalog::plugin_columns!(),
            " FROM plugins WHERE author_id = $1"
        ))
        .bind(&caller.id)
        .fetch_all(&mut *conn)
        .await?;
        let mut plugins: BTreeMap<String, DeveloperPlugin> = BTreeMap::new();
        for listing in listings {
            plugins.insert(
                listing.id.clone(),
                DeveloperPlugin {
                    plugin_id: listing.id,
                    status: Some(listing.status),
                    blocked: listing.blocked_at.is_some(),
                    block_reason: listing.block_reason,
                    install_count: listing.install_count,
                    avg_rating: listing.avg_rating,
                    rating_count: listing.rating_count,
                    versions: Vec::new(),
                },
            );
        }
        for version in versions {
            plugins
                .entry(version.plugin_id.clone())
                .or_insert_with(|| DeveloperPlugin {
                    plugin_id: version.plugin_id.clone(),
                    status: None,
                    blocked: false,
                    block_reason: None,
                    install_count: 0,
                    avg_rating: 0.0,
                    rating_count: 0,
                    versions: Vec::new(),
                })
                .versions
                .push(version.view());
        }
        Ok(plugins.into_values().collect())
    }
}

/// A listing whose every submission was rejected by a reviewer (never approved: an approved
/// plugin's rejected update leaves it approved) holds its id for no one. The built-in plugins
/// (no author) are approved, so they stay nobody's.
fn released(owner: &Owner) -> bool {
    owner.status == "rejected"
}

/// Records a submission refused by the checklist: its verdict (the checks, with their bounded
/// details), the id and the version it was for, and nothing else it was sent with (no name,
/// description or author; no package, which stays unused and is collected).
async fn insert_verdict(
    conn: &mut AnyConnection,
    version_id: &str,
    caller: &Caller,
    manifest: &Manifest,
    checks: &[CheckResult],
) -> Result<(), sqlx::Error> {
    let verdict = manifest.verdict_only();
    insert_version(conn, version_id, caller, &verdict, None, "rejected", checks).await
}

/// Makes a version the plugin's listing (its name, version, price, package, ...), with
/// `status`.
pub(crate) async fn list_version(
    conn: &mut AnyConnection,
    version_id: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE plugins SET name = v.name, description = v.description, version = v.version, \
         author = v.author, category = v.category, price_cents = v.price_cents, \
         permissions = v.permissions, s3_package_key = v.package_key, status = $2, \
         updated_at = $3 FROM plugin_versions v WHERE v.id = $1 AND plugins.id = v.plugin_id",
    )
    .bind(version_id)
    .bind(status)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_version(
    conn: &mut AnyConnection,
    version_id: &str,
    caller: &Caller,
    manifest: &Manifest,
    package_key: Option<&str>,
    status: &str,
    checks: &[CheckResult],
) -> Result<(), sqlx::Error> {
    let package_id = package_key.map(|_| manifest.package_id.as_str());
    sqlx::query(
        "INSERT INTO plugin_versions (id, plugin_id, developer_id, version, name, description, \
         author, category, permissions, price_cents, package_id, package_key, status, checks, \
         submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(version_id)
    .bind(&manifest.id)
    .bind(&caller.id)
    .bind(&manifest.version)
    .bind(&manifest.name)
    .bind(&manifest.description)
    .bind(&manifest.author)
    .bind(&manifest.category)
    .bind(serde_json::to_string(&manifest.permissions).unwrap_or_default())
    .bind(manifest.price_cents.max(0))
    .bind(package_id)
    .bind(package_key)
    .bind(status)
    .bind(serde_json::to_string(checks).unwrap_or_default())
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}
