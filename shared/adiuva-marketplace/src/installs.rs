//! Installs. A free plugin is installed at once; a paid one once bought (see [`purchases`]).
//! Installing twice changes nothing, and the install count moves only with a row that was
//! really added or removed, in the same transaction, so it stays exact under concurrency.
//!
//! [`purchases`]: crate::purchases

use adiuva_access::Caller;
use adiuva_db::{new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::catalog::plugin;
use crate::purchases::Checkout;
use crate::{Marketplace, MarketplaceError};

/// An installed plugin (200).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Installed {
    /// `true`.
    pub ok: bool,
    pub plugin_id: String,
    /// A short-lived URL of the package; `null` for a plugin without one (the built-in ones,
    /// which ship with the desktop app).
    pub download_url: Option<String>,
    /// When `download_url` stops working (ms since the epoch).
    pub download_expires_at: Option<i64>,
}

/// A paid plugin not bought yet (202): pay at `checkout_url`, then install again.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutNeeded {
    /// `false`: not installed yet.
    pub ok: bool,
    pub plugin_id: String,
    pub purchase_id: String,
    pub checkout_url: String,
    pub price_cents: i64,
}

/// What an install did.
#[derive(Debug, Clone)]
pub enum InstallOutcome {
    Installed(Installed),
    CheckoutNeeded(CheckoutNeeded),
}

/// The reference's `{"ok": true}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Uninstalled {
    pub ok: bool,
    /// Whether an install was removed (`false`: it was not installed).
    pub removed: bool,
}

/// Adds an installation and counts it; `false` when it was there already, or when the user's
/// account is gone (a payment that completes after the buyer deleted their account).
pub(crate) async fn add_installation(
    conn: &mut AnyConnection,
    plugin_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO plugin_installations (id, plugin_id, user_id, installed_at) \
         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM users WHERE id = $3) \
         ON CONFLICT (plugin_id, user_id) DO NOTHING",
    )
    .bind(new_id())
    .bind(plugin_id)
    .bind(user_id)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if added {
        sqlx::query("UPDATE plugins SET install_count = install_count + 1 WHERE id = $1")
            .bind(plugin_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(added)
}

/// Removes an installation and uncounts it; `false` when there was none.
pub(crate) async fn remove_installation(
    conn: &mut AnyConnection,
    plugin_id: &str,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let removed =
        sqlx::query("DELETE FROM plugin_installations WHERE plugin_id = $1 AND user_id = $2")
            .bind(plugin_id)
            .bind(user_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
    if removed {
        sqlx::query(
            "UPDATE plugins SET install_count = install_count - 1 WHERE id = $1 AND install_count > 0",
        )
        .bind(plugin_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(removed)
}

impl Marketplace {
    /// Installs a listed plugin: at once when it is free or already paid for (a paid version
    /// needs a purchase even where an earlier free version is installed); otherwise answers
    /// where to pay (the install follows the payment). A disputed purchase is 403 until the
    /// dispute closes; a closed plugin installs only for those who have or bought it.
    pub async fn install(
        &self,
        caller: &Caller,
        plugin_id: &str,
    ) -> Result<InstallOutcome, MarketplaceError> {
        let mut conn = self.db().pool().acquire().await?;
        let row = plugin(&mut conn, plugin_id)
            .await?
            .filter(|row| row.status == "approved")
            .ok_or(MarketplaceError::PluginNotFound)?;
        if row.blocked_at.is_some() {
            return Err(MarketplaceError::Blocked(
                row.block_reason.clone().unwrap_or_default(),
            ));
        }
        let installed: Option<String> = sqlx::query_scalar(
            "SELECT id FROM plugin_installations WHERE plugin_id = $1 AND user_id = $2",
        )
        .bind(plugin_id)
        .bind(&caller.id)
        .fetch_optional(&mut *conn)
        .await?;
        drop(conn);
        // A paid version is downloaded only with a purchase of the plugin, whatever was
        // installed before (an install of an earlier free version pays for nothing).
        let paid_for = if row.price_cents > 0 {
            match self.purchases().checkout(caller, &row).await? {
                Checkout::Paid => true,
                Checkout::Pay { purchase_id, url } => {
                    return Ok(InstallOutcome::CheckoutNeeded(CheckoutNeeded {
                        ok: false,
                        plugin_id: plugin_id.to_owned(),
                        purchase_id,
                        checkout_url: url,
                        price_cents: row.price_cents,
                    }));
                }
            }
        } else {
            false
        };
        // A closed plugin (its developer's account is gone) stays with those who have it.
        if row.closed_at.is_some() && installed.is_none() && !paid_for {
            return Err(MarketplaceError::PluginClosed);
        }
        if installed.is_none() {
            let mut tx = self.db().pool().begin().await?;
            if add_installation(&mut tx, plugin_id, &caller.id).await? {
                tracing::info!(plugin_id, "plugin installed");
            }
            tx.commit().await?;
        }
        let download = match &row.s3_package_key {
            Some(key) => Some(
                self.inner
                    .storage
                    .blobs()
                    .presign_get(key, self.purchases().settings().download_ttl)
                    .await?,
            ),
            None => None,
        };
        Ok(InstallOutcome::Installed(Installed {
            ok: true,
            plugin_id: plugin_id.to_owned(),
            download_expires_at: download.as_ref().map(|d| d.expires_at_ms),
            download_url: download.map(|d| d.url),
        }))
    }

    /// Uninstalls (no refund by itself). Needs no tier: a user who downgraded can still clean up.
    pub async fn uninstall(
        &self,
        caller: &Caller,
        plugin_id: &str,
    ) -> Result<Uninstalled, MarketplaceError> {
        // The write first: on SQLite a transaction that reads before it writes fails when
        // another writer committed in between.
        let mut tx = self.db().pool().begin().await?;
        let removed = remove_installation(&mut tx, plugin_id, &caller.id).await?;
        if !removed && plugin(&mut tx, plugin_id).await?.is_none() {
            return Err(MarketplaceError::PluginNotFound);
        }
        tx.commit().await?;
        if removed {
            tracing::info!(plugin_id, "plugin uninstalled");
        }
        Ok(Uninstalled { ok: true, removed })
    }
}
