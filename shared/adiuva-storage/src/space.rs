//! Spaces: whose records a request reads and writes. A user's own space and a team's space are
//! the same domain (records with versions and checksums, the sync feed with its tombstones,
//! the quota row, the upload flow) over tables of the same shape: `storage_records`,
//! `storage_tombstones` and `storage_usage` keyed by `user_id`, or `team_records`,
//! `team_tombstones` and `team_usage` keyed by `team_id` (migration 0015 says why they are
//! apart). Each statement is written once, as a template naming the space's tables
//! ([`space_sql!`]), and rendered once per process for each kind of space.
//!
//! A team's records also carry `key_version` (the team key the client encrypted with) and
//! `author_id` (the member who last wrote it); a team's blobs live under `teams/{team_id}/`,
//! never under a member's own prefix, and its sync cursors are sealed for the team.

use std::borrow::Cow;

use adiuva_access::Tier;
use adiuva_access::quota::Holder;
use adiuva_db::Database;

use crate::StorageError;

/// Whose records: a user's own space (the user's id) or a team's (the team's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space<'a> {
    Personal(&'a str),
    Team(&'a str),
}

impl<'a> Space<'a> {
    /// The id the space's rows are keyed by.
    pub fn owner(self) -> &'a str {
        match self {
            Space::Personal(id) | Space::Team(id) => id,
        }
    }

    /// Which rendering of a [`space_sql!`] template this space uses.
    pub(crate) fn index(self) -> usize {
        match self {
            Space::Personal(_) => 0,
            Space::Team(_) => 1,
        }
    }

    /// The space's usage row (its quotas).
    pub(crate) fn holder(self) -> Holder<'a> {
        match self {
            Space::Personal(id) => Holder::User(id),
            Space::Team(id) => Holder::Team(id),
        }
    }

    /// Where the space's blobs live: under the user's id (as before teams), or under
    /// `teams/{team_id}/`. A user id is a UUID, so the two never overlap.
    pub(crate) fn key_prefix(self) -> String {
        match self {
            Space::Personal(user_id) => format!("{user_id}/"),
            Space::Team(team_id) => format!("teams/{team_id}/"),
        }
    }

    /// What a sync cursor is sealed for: the user's id (as before teams), or `team:{id}`, which
    /// no user id (a UUID) equals, so a team's cursor opens neither for another team nor for
    /// anyone's own storage.
    pub(crate) fn cursor_context(self) -> Cow<'a, str> {
        match self {
            Space::Personal(user_id) => Cow::Borrowed(user_id),
            Space::Team(team_id) => Cow::Owned(format!("team:{team_id}")),
        }
    }
}

/// A write into a space: by whom (the author of a team record), under which tier's quotas, and,
/// in a team's space, with which team key version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) space: Space<'a>,
    pub(crate) tier: Tier,
    pub(crate) author: &'a str,
    /// `Some` in a team's space (required there), `None` in a user's own.
    pub(crate) key_version: Option<i64>,
}

/// The names a template's placeholders stand for, per kind of space.
pub(crate) struct Names {
    records: &'static str,
    tombstones: &'static str,
    usage: &'static str,
    owner: &'static str,
    /// The extra metadata columns after the common ones (`, key_version, author_id`).
    meta: &'static str,
    /// As many NULLs, for the tombstones' side of a UNION with the records.
    null_meta: &'static str,
    /// Their placeholders in an INSERT whose common values end at `$7`.
    meta_values: &'static str,
    /// Their assignments in an UPDATE whose common ones end at `$7`.
    meta_set: &'static str,
    /// The condition selecting the space's pending uploads, its id bound as `$1`.
    uploads: &'static str,
}

pub(crate) const SPACES: [Names; 2] = [
    Names {
        records: "storage_records",
        tombstones: "storage_tombstones",
        usage: "storage_usage",
        owner: "user_id",
        meta: "",
        null_meta: "",
        meta_values: "",
        meta_set: "",
        uploads: "user_id = $1 AND team_id IS NULL",
    },
    Names {
        records: "team_records",
        tombstones: "team_tombstones",
        usage: "team_usage",
        owner: "team_id",
        meta: ", key_version, author_id",
        null_meta: ", NULL, NULL",
        meta_values: ", $8, $9",
        meta_set: ", key_version = $8, author_id = $9",
        uploads: "team_id = $1",
    },
];

/// A template rendered for one kind of space: `{records}`, `{tombstones}`, `{usage}`,
/// `{owner}`, `{meta}`, `{null_meta}`, `{meta_values}`, `{meta_set}` and `{uploads}` replaced by its names.
pub(crate) fn render(template: &str, names: &Names) -> String {
    template
        .replace("{records}", names.records)
        .replace("{tombstones}", names.tombstones)
        .replace("{usage}", names.usage)
        .replace("{owner}", names.owner)
        .replace("{meta_values}", names.meta_values)
        .replace("{meta_set}", names.meta_set)
        .replace("{null_meta}", names.null_meta)
        .replace("{meta}", names.meta)
        .replace("{uploads}", names.uploads)
}

/// The statement of a template for a space, rendered once per process for both kinds of space
/// (so it is `'static`, like a literal).
macro_rules! space_sql {
    ($space:expr, $template:expr) => {{
        static SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
            [
                $crate::space::render($template, &$crate::space::SPACES[0]),
                $crate::space::render($template, &$crate::space::SPACES[1]),
            ]
        });
        SQL[$space.index()].as_str()
    }};
}
pub(crate) use space_sql;

/// The tier of a team's space: `team` while the team's subscription is active, else `free`
/// (the matrix in adiuva-access sets its quotas, counted for the team as a whole).
pub(crate) async fn team_tier(db: &Database, team_id: &str) -> Result<Tier, StorageError> {
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(match status.as_deref() {
        Some("active") => Tier::Team,
        _ => Tier::Free,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_each_space_own_tables() {
        let template = "SELECT id{meta} FROM {records} WHERE {owner} = $1";
        assert_eq!(
            render(template, &SPACES[0]),
            "SELECT id FROM storage_records WHERE user_id = $1"
        );
        assert_eq!(
            render(template, &SPACES[1]),
            "SELECT id, key_version, author_id FROM team_records WHERE team_id = $1"
        );
    }

    #[test]
    fn spaces_never_share_a_prefix_or_a_cursor_context() {
        let user = "0b9c7f5e-1111-4222-8333-944445555666";
        assert_eq!(Space::Personal(user).key_prefix(), format!("{user}/"));
        assert_eq!(Space::Team(user).key_prefix(), format!("teams/{user}/"));
        assert_ne!(
            Space::Personal(user).cursor_context(),
            Space::Team(user).cursor_context()
        );
    }
}
