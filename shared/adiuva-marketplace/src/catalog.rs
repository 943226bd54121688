//! The catalog: approved, unblocked plugins, filtered, searched, sorted and paged; a plugin's
//! detail; ratings by the users who installed it.

use adiuva_access::{Caller, Role};
use adiuva_db::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::{Marketplace, MarketplaceError, parse_permissions};

/// Plugins per page (the reference's).
pub const PAGE_SIZE: i64 = 20;
/// Past this page a listing is a crawl, not a person.
const MAX_PAGE: i64 = 10_000;
pub(crate) const MAX_QUERY_CHARS: usize = 100;

/// The reference's `PluginManifest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginManifest {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub author: String,
    pub permissions: Vec<String>,
    pub category: String,
    /// Euro cents; 0 is free.
    pub price_cents: i64,
}

/// A plugin in the catalog: its manifest, install count and ratings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginSummary {
    #[serde(flatten)]
    pub manifest: PluginManifest,
    pub install_count: i64,
    /// The average of its ratings (1 to 5), 0 without any.
    pub avg_rating: f64,
    pub rating_count: i64,
}

/// The reference's `PluginListResponse`; the total is also in `X-Total-Count`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginList {
    pub plugins: Vec<PluginSummary>,
    pub total: i64,
    pub page: i64,
}

/// A plugin's detail, as the caller may see it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginDetail {
    #[serde(flatten)]
    pub summary: PluginSummary,
    /// `approved`, or (for its developer and admins only) `pending_review` or `rejected`.
    pub status: String,
    /// Blocked by an admin: no new installs; existing installs keep working.
    pub blocked: bool,
    pub block_reason: Option<String>,
    /// The caller has it installed.
    pub installed: bool,
    /// The caller's own rating.
    pub my_rating: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `?category`, `?q`, `?page`, `?sort`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct CatalogQuery {
    /// Only this category (any case; surrounding whitespace is ignored).
    pub category: Option<String>,
    #[cfg_attr(feature = "openapi", param(schema_with = crate::openapi::search, required = false))]
    pub q: Option<String>,
    /// From 1 (default) to 10000, 20 plugins a page.
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 10_000))]
    pub page: Option<String>,
    #[cfg_attr(feature = "openapi", param(schema_with = crate::openapi::sort, required = false))]
    pub sort: Option<String>,
}

/// The stars of a rating.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RatingRequest {
    /// 1 to 5.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 5))]
    pub stars: i64,
}

/// A plugin's ratings after the caller's.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rating {
    pub plugin_id: String,
    pub stars: i64,
    pub avg_rating: f64,
    pub rating_count: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PluginRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub author: String,
    pub author_id: Option<String>,
    pub category: String,
    pub price_cents: i64,
    pub permissions: String,
    pub status: String,
    pub s3_package_key: Option<String>,
    pub install_count: i64,
    pub avg_rating: f64,
    pub rating_count: i64,
    pub blocked_at: Option<i64>,
    pub block_reason: Option<String>,
    /// Set when the developer's account was deleted: no new installs; those who have it keep it.
    pub closed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of a [`PluginRow`], as a literal for `concat!`.
macro_rules! plugin_columns {
    () => {
        "id, name, description, version, author, author_id, category, price_cents, permissions, \
         status, s3_package_key, install_count, avg_rating, rating_count, blocked_at, closed_at, \
         block_reason, created_at, updated_at"
    };
}
pub(crate) use plugin_columns;

impl PluginRow {
    pub(crate) fn summary(&self) -> PluginSummary {
        PluginSummary {
            manifest: PluginManifest {
                id: self.id.clone(),
                name: self.name.clone(),
                description: self.description.clone(),
                version: self.version.clone(),
                author: self.author.clone(),
                permissions: parse_permissions(&self.permissions),
                category: self.category.clone(),
                price_cents: self.price_cents,
            },
            install_count: self.install_count,
            avg_rating: self.avg_rating,
            rating_count: self.rating_count,
        }
    }
}

pub(crate) async fn plugin(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<PluginRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        plugin_columns!(),
        " FROM plugins WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Locks a plugin's row for the rest of the transaction (counts and averages change one
/// writer at a time); `false` when there is no such plugin.
pub(crate) async fn lock_plugin(conn: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let locked: Option<String> =
        sqlx::query_scalar("UPDATE plugins SET updated_at = updated_at WHERE id = $1 RETURNING id")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(locked.is_some())
}

/// `LIKE` pattern of a substring, with `\` escaping the wildcards.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn order_by(sort: Option<&str>) -> Result<&'static str, MarketplaceError> {
    match sort.unwrap_or("installs") {
        "installs" => Ok("install_count DESC, id ASC"),
        "rating" => Ok("avg_rating DESC, rating_count DESC, id ASC"),
        "newest" => Ok("created_at DESC, id ASC"),
        other => Err(MarketplaceError::Invalid(
            format!("sort must be rating, installs or newest, not {other:?}").into(),
        )),
    }
}

fn page_of(page: Option<&str>) -> Result<i64, MarketplaceError> {
    let Some(page) = page else { return Ok(1) };
    match page.parse::<i64>() {
        Ok(page) if (1..=MAX_PAGE).contains(&page) => Ok(page),
        _ => Err(MarketplaceError::Invalid(
            format!("page must be a whole number from 1 to {MAX_PAGE}").into(),
        )),
    }
}

impl Marketplace {
    /// One page of the catalog and the number of plugins that match (the route needs the
    /// `plugin_marketplace` tier feature).
    pub async fn list(&self, query: &CatalogQuery) -> Result<PluginList, MarketplaceError> {
        let order = order_by(query.sort.as_deref())?;
        let page = page_of(query.page.as_deref())?;
        let category = query
            .category
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if search.is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS) {
            return Err(MarketplaceError::Invalid(
                format!("q may be at most {MAX_QUERY_CHARS} characters").into(),
            ));
        }

        let mut filter =
            String::from("status = 'approved' AND blocked_at IS NULL AND closed_at IS NULL");
        let mut binds = Vec::new();
        if let Some(category) = category {
            binds.push(category.to_lowercase());
            filter.push_str(&format!(" AND LOWER(category) = ${}", binds.len()));
        }
        if let Some(search) = search {
            binds.push(contains_pattern(search));
            let n = binds.len();
            filter.push_str(&format!(
                " AND (LOWER(name) LIKE ${n} ESCAPE '\\' OR LOWER(description) LIKE ${n} ESCAPE '\\')"
            ));
        }

        // Only fixed text and `$n` placeholders are spliced in: every value is bound.
        let mut conn = self.db().pool().acquire().await?;
        let count_sql = format!("SELECT COUNT(*) FROM plugins WHERE {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        for bind in &binds {
            count = count.bind(bind.as_str());
        }
        let total = count.fetch_one(&mut *conn).await?;

        let list_sql = format!(
            "SELECT {} FROM plugins WHERE {filter} ORDER BY {order} LIMIT {PAGE_SIZE} OFFSET {}",
            plugin_columns!(),
            (page - 1) * PAGE_SIZE
        );
        let mut list = sqlx::query_as::<_, PluginRow>(sqlx::AssertSqlSafe(list_sql));
        for bind in &binds {
            list = list.bind(bind.as_str());
        }
        let rows = list.fetch_all(&mut *conn).await?;
        Ok(PluginList {
            plugins: rows.iter().map(PluginRow::summary).collect(),
            total,
            page,
        })
    }

    /// A plugin's detail. Listed plugins (and blocked ones, so that installers learn it) are
    /// visible to every Power and Team user; one not approved only to its developer and admins.
    pub async fn detail(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<PluginDetail, MarketplaceError> {
        let mut conn = self.db().pool().acquire().await?;
        let row = plugin(&mut conn, id)
            .await?
            .filter(|row| {
                row.status == "approved"
                    || row.author_id.as_deref() == Some(caller.id.as_str())
                    || caller.role == Role::Admin
            })
            .ok_or(MarketplaceError::PluginNotFound)?;
        let installed: Option<String> = sqlx::query_scalar(
            "SELECT id FROM plugin_installations WHERE plugin_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(&caller.id)
        .fetch_optional(&mut *conn)
        .await?;
        let my_rating: Option<i64> = sqlx::query_scalar(
            "SELECT stars FROM plugin_ratings WHERE plugin_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(&caller.id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(PluginDetail {
            summary: row.summary(),
            status: row.status.clone(),
            blocked: row.blocked_at.is_some(),
            block_reason: row.block_reason.clone(),
            installed: installed.is_some(),
            my_rating,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Rates a plugin the caller installed (one rating per user; a new one replaces it) and
    /// updates the plugin's average and count in the same transaction.
    pub async fn rate(
        &self,
        caller: &Caller,
        id: &str,
        stars: i64,
    ) -> Result<Rating, MarketplaceError> {
        if !(1..=5).contains(&stars) {
            return Err(MarketplaceError::Invalid(
                "stars must be a whole number from 1 to 5".into(),
            ));
        }
        let mut tx = self.db().pool().begin().await?;
        // The lock first: the average below is computed after any other rating committed.
        if !lock_plugin(&mut tx, id).await? {
            return Err(MarketplaceError::PluginNotFound);
        }
        let installed: Option<String> = sqlx::query_scalar(
            "SELECT id FROM plugin_installations WHERE plugin_id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(&caller.id)
        .fetch_optional(&mut *tx)
        .await?;
        if installed.is_none() {
            return Err(MarketplaceError::NotInstalled);
        }
        sqlx::query(
            "INSERT INTO plugin_ratings (plugin_id, user_id, stars, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (plugin_id, user_id) DO UPDATE SET stars = excluded.stars, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(&caller.id)
        .bind(stars)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let (count, sum): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(stars), 0) AS BIGINT) FROM plugin_ratings WHERE plugin_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        #[allow(clippy::cast_precision_loss)]
        let average = if count == 0 {
            0.0
        } else {
            sum as f64 / count as f64
        };
        sqlx::query("UPDATE plugins SET avg_rating = $2, rating_count = $3 WHERE id = $1")
            .bind(id)
            .bind(average)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(plugin_id = id, stars, "plugin rated");
        Ok(Rating {
            plugin_id: id.to_owned(),
            stars,
            avg_rating: average,
            rating_count: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_escape_the_wildcards() {
        assert_eq!(contains_pattern("Time"), "%time%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }

    #[test]
    fn sorts_and_pages_are_checked() {
        assert!(order_by(None).unwrap().ends_with("id ASC"));
        assert!(order_by(Some("popular")).is_err());
        assert_eq!(page_of(None).unwrap(), 1);
        assert!(page_of(Some("0")).is_err());
        assert!(page_of(Some("x")).is_err());
        assert_eq!(page_of(Some("3")).unwrap(), 3);
    }
}
