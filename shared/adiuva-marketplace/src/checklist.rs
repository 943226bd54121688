//! The automated checklist a submission passes before a human reviews it. Every check runs on
//! every submission, and each result (passed or not, with what it found) is stored with the
//! version and shown to the reviewer and the developer; a submission that fails any check is
//! refused with all the reasons at once.
//!
//! The checks: the reference's three (the id matches `^[a-z0-9-]+$`, permissions come from the
//! allowed set, no binary blobs in the manifest), then the manifest's fields and lengths, a
//! semver version higher than the last approved one, a name not too close to another plugin's,
//! the package (uploaded by this developer, small enough, the checksum the manifest names), and
//! for a paid plugin a developer account that can receive payouts.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use adiuva_storage::{MAX_PACKAGE_BYTES, PackageMeta};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The permissions a plugin may ask for (the reference's set).
pub const ALLOWED_PERMISSIONS: [&str; 10] = [
    "read:tasks",
    "write:tasks",
    "read:projects",
    "write:projects",
    "read:notes",
    "write:notes",
    "read:timelines",
    "write:timelines",
    "read:calendar",
    "write:calendar",
];

/// The manifest's fields: the reference's `PluginManifest` plus the uploaded package.
const FIELDS: [&str; 10] = [
    "id",
    "name",
    "version",
    "description",
    "author",
    "category",
    "permissions",
    "price_cents",
    "package_id",
    "package_checksum",
];

/// A paid plugin's price bounds, in euro cents (Stripe's minimum charge is €0.50).
pub const MIN_PRICE_CENTS: i64 = 50;
pub const MAX_PRICE_CENTS: i64 = 100_000;

/// A run of this many base64 or hex characters in a manifest string is an encoded binary.
const BLOB_RUN: usize = 200;

/// Names more similar than this (1 - edit distance / length, on lowercase letters and digits)
/// are too close: "Time-Trackr" to "Time Tracker" (0.91), not "GitLab Sync" to "GitHub Sync"
/// (0.8). Checked in integers by [`closeness_bound`].
#[cfg(test)]
const MAX_NAME_SIMILARITY: f64 = 0.8;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// `id_format`, `permissions`, `no_binary_blobs`, `manifest_fields`, `version`,
    /// `name_unique`, `package` or `payouts`.
    pub check: String,
    pub passed: bool,
    /// What the check found.
    pub detail: String,
}

fn result(check: &str, problems: Vec<String>, ok: impl Into<String>) -> CheckResult {
    CheckResult {
        check: check.to_owned(),
        passed: problems.is_empty(),
        detail: if problems.is_empty() {
            ok.into()
        } else {
            problems.join("; ")
        },
    }
}

/// The longest id (and the shortest), as [`valid_id`] checks them.
pub const MAX_ID_CHARS: usize = 64;
/// The longest name: what the catalog shows.
pub const MAX_NAME_CHARS: usize = 64;
/// The longest version (`MAJOR.MINOR.PATCH` with pre-release and build).
pub const MAX_VERSION_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_AUTHOR_CHARS: usize = 64;
pub const MAX_CATEGORY_CHARS: usize = 32;
/// Each permission: the allowed ones are shorter.
pub const MAX_PERMISSION_CHARS: usize = 32;
/// Distinct permissions from the allowed set: never more than the set.
pub const MAX_PERMISSIONS: usize = ALLOWED_PERMISSIONS.len();
/// A package id is a server-made id.
pub const MAX_PACKAGE_ID_CHARS: usize = 64;
/// A lowercase hex SHA-256.
pub const CHECKSUM_CHARS: usize = 64;
/// The unknown fields a refusal names, each by at most [`NAMED_FIELD_CHARS`] characters.
const NAMED_FIELDS: usize = 5;
const NAMED_FIELD_CHARS: usize = 32;
/// Binary-content findings a refusal lists.
const NAMED_FINDINGS: usize = 5;

/// A submitted manifest, read leniently so every problem is reported: a missing, mistyped or
/// too long field is empty here and reported by `manifest_fields`.
///
/// It is read with every bound applied while the JSON is parsed ([`Deserialize`]): a string is
/// kept only within its field's limit (its length is known from the bytes before a character
/// is counted), the permissions stop at [`MAX_PERMISSIONS`], and unknown fields and mistyped
/// values are only scanned for binary content, never kept. Nothing the checks later compare
/// (the name against every other plugin's) is longer than its limit, and a body of any shape
/// costs memory for the fields' limits, not for its size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub author: String,
    pub category: String,
    pub permissions: Vec<String>,
    pub price_cents: i64,
    pub package_id: String,
    pub package_checksum: String,
    /// What is wrong with the manifest's shape (missing fields, wrong types, unknown fields,
    /// lengths past a limit).
    problems: Vec<String>,
    /// The fields past their limit (their length is reported once, by the shape).
    too_long: Vec<&'static str>,
    /// Binary content found anywhere in the manifest, by field.
    binary: Vec<String>,
}

impl Manifest {
    pub fn is_paid(&self) -> bool {
        self.price_cents > 0
    }

    /// What a refused submission keeps: its id and version (both read within their bounds),
    /// nothing else it was sent with.
    pub(crate) fn verdict_only(&self) -> Manifest {
        Manifest {
            id: self.id.clone(),
            version: self.version.clone(),
            ..Manifest::default()
        }
    }

    /// The manifest's fields were all within their limits (nothing was dropped).
    fn within(&self, field: &str) -> bool {
        !self.too_long.contains(&field)
    }
}

/// A string field's bound: the text, or why it was not kept.
enum Text {
    Kept(String),
    TooLong,
    Mistyped,
}

/// Reads a string of at most `max` characters without copying a longer one. Anything else is
/// skipped (scanned for binary content).
struct TextSeed<'a> {
    max: usize,
    field: &'static str,
    binary: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = Text;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Text, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The length of `text` in characters if it is at most `max`: a text of more than `4 * max`
/// bytes is longer without counting.
fn chars_within(text: &str, max: usize) -> bool {
    text.len() <= max || (text.len() <= 4 * max && text.chars().count() <= max)
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text, E> {
        if !chars_within(text, self.max) {
            return Ok(Text::TooLong);
        }
        if let Some(problem) = binary_content(text) {
            push_finding(self.binary, format!("`{}` {problem}", self.field));
        }
        Ok(Text::Kept(text.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text::Mistyped)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Text, E> {
        Ok(Text::Mistyped)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Text, E> {
        Ok(Text::Mistyped)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Text, E> {
        Ok(Text::Mistyped)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
        Ok(Text::Mistyped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        Scan {
            field: self.field,
            binary: self.binary,
        }
        .visit_seq(seq)?;
        Ok(Text::Mistyped)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        Scan {
            field: self.field,
            binary: self.binary,
        }
        .visit_map(map)?;
        Ok(Text::Mistyped)
    }
}

fn push_finding(binary: &mut Vec<String>, finding: String) {
    if binary.len() < NAMED_FINDINGS && !binary.contains(&finding) {
        binary.push(finding);
    }
}

/// Walks a value the manifest does not keep (an unknown field, a mistyped one) looking for
/// binary content, without building it: memory stays constant whatever its size, and its
/// depth is bounded by serde_json's recursion limit.
struct Scan<'a> {
    field: &'static str,
    binary: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        if let Some(problem) = binary_content(text) {
            push_finding(self.binary, format!("`{}` {problem}", self.field));
        }
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Scan {
                field: self.field,
                binary: &mut *self.binary,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key.binary {
                push_finding(
                    self.binary,
                    format!("a field name inside `{}` holds binary content", self.field),
                );
            }
            map.next_value_seed(Scan {
                field: self.field,
                binary: &mut *self.binary,
            })?;
        }
        Ok(())
    }
}

/// A field name: which of [`FIELDS`] it is, or a short escaped prefix of an unknown one.
struct Key {
    known: Option<&'static str>,
    shown: String,
    binary: bool,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Key, E> {
        let known = FIELDS.iter().copied().find(|field| *field == text);
        Ok(Key {
            known,
            shown: if known.is_some() {
                String::new()
            } else {
                shown(text)
            },
            binary: binary_content(text).is_some(),
        })
    }
}

/// A short, escaped prefix of client text, for a message.
fn shown(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(NAMED_FIELD_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(NAMED_FIELD_CHARS).is_some() {
        shown.push('…');
    }
    shown
}

/// The permissions: at most [`MAX_PERMISSIONS`] strings of at most [`MAX_PERMISSION_CHARS`].
struct PermissionsSeed<'a> {
    manifest: &'a mut Manifest,
}

impl<'de> DeserializeSeed<'de> for PermissionsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PermissionsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let manifest = self.manifest;
        let (mut not_text, mut too_long, mut too_many) = (false, false, false);
        loop {
            if manifest.permissions.len() == MAX_PERMISSIONS {
                // One more is one too many: the rest is only scanned.
                let scan = Scan {
                    field: "permissions",
                    binary: &mut manifest.binary,
                };
                if seq.next_element_seed(scan)?.is_none() {
                    break;
                }
                too_many = true;
                continue;
            }
            let seed = TextSeed {
                max: MAX_PERMISSION_CHARS,
                field: "permissions",
                binary: &mut manifest.binary,
            };
            match seq.next_element_seed(seed)? {
                None => break,
                Some(Text::Kept(permission)) => manifest.permissions.push(permission),
                Some(Text::TooLong) => too_long = true,
                Some(Text::Mistyped) => not_text = true,
            }
        }
        if not_text {
            manifest
                .problems
                .push("`permissions` must hold only strings".to_owned());
        }
        if too_long {
            manifest.problems.push(format!(
                "a permission is longer than {MAX_PERMISSION_CHARS} characters"
            ));
        }
        if too_many {
            manifest.problems.push(format!(
                "`permissions` may list at most {MAX_PERMISSIONS} permissions"
            ));
        }
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        Scan {
            field: "permissions",
            binary: &mut self.manifest.binary,
        }
        .visit_str::<E>(text)?;
        self.manifest.problems.push(ARRAY_OF_STRINGS.to_owned());
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Scan {
            field: "permissions",
            binary: &mut self.manifest.binary,
        }
        .visit_map(map)?;
        self.manifest.problems.push(ARRAY_OF_STRINGS.to_owned());
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.manifest.problems.push(ARRAY_OF_STRINGS.to_owned());
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_bool(false)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_bool(false)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_bool(false)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_bool(false)
    }
}

const ARRAY_OF_STRINGS: &str = "`permissions` must be an array of strings";

/// `price_cents`: a whole number, or nothing kept.
struct PriceSeed;

impl<'de> DeserializeSeed<'de> for PriceSeed {
    type Value = Option<i64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PriceSeed {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number of cents")
    }

    fn visit_i64<E: serde::de::Error>(self, cents: i64) -> Result<Option<i64>, E> {
        Ok(Some(cents))
    }

    fn visit_u64<E: serde::de::Error>(self, cents: u64) -> Result<Option<i64>, E> {
        Ok(i64::try_from(cents).ok())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<i64>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<i64>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    /// Only a JSON object is a manifest (anything else is a 422 before any check); its fields
    /// are read leniently, within their bounds (see [`Manifest`]).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ManifestVisitor)
    }
}

struct ManifestVisitor;

impl<'de> Visitor<'de> for ManifestVisitor {
    type Value = Manifest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a plugin manifest (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Manifest, A::Error> {
        let mut manifest = Manifest::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut more_unknown = false;
        let mut price = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key.binary {
                push_finding(
                    &mut manifest.binary,
                    "a field name of the manifest holds binary content".to_owned(),
                );
            }
            let Some(field) = key.known.filter(|field| !seen.contains(field)) else {
                match key.known {
                    Some(field) => manifest.problems.push(format!("`{field}` is given twice")),
                    None if unknown.len() < NAMED_FIELDS => unknown.push(key.shown),
                    None => more_unknown = true,
                }
                map.next_value_seed(Scan {
                    field: "manifest",
                    binary: &mut manifest.binary,
                })?;
                continue;
            };
            seen.push(field);
            match field {
                "permissions" => map.next_value_seed(PermissionsSeed {
                    manifest: &mut manifest,
                })?,
                "price_cents" => {
                    price = Some(map.next_value_seed(PriceSeed)?);
                }
                _ => {
                    let max = match field {
                        "id" => MAX_ID_CHARS,
                        "name" => MAX_NAME_CHARS,
                        "version" => MAX_VERSION_CHARS,
                        "description" => MAX_DESCRIPTION_CHARS,
                        "author" => MAX_AUTHOR_CHARS,
                        "category" => MAX_CATEGORY_CHARS,
                        "package_id" => MAX_PACKAGE_ID_CHARS,
                        _ => CHECKSUM_CHARS,
                    };
                    let text = map.next_value_seed(TextSeed {
                        max,
                        field,
                        binary: &mut manifest.binary,
                    })?;
                    let slot = match field {
                        "id" => &mut manifest.id,
                        "name" => &mut manifest.name,
                        "version" => &mut manifest.version,
                        "description" => &mut manifest.description,
                        "author" => &mut manifest.author,
                        "category" => &mut manifest.category,
                        "package_id" => &mut manifest.package_id,
                        _ => &mut manifest.package_checksum,
                    };
                    match text {
                        Text::Kept(text) => *slot = text,
                        Text::TooLong => {
                            manifest.too_long.push(field);
                            manifest
                                .problems
                                .push(format!("`{field}` is longer than {max} characters"));
                        }
                        Text::Mistyped => manifest
                            .problems
                            .push(format!("`{field}` must be a string")),
                    }
                }
            }
        }
        for field in FIELDS {
            if field != "price_cents" && !seen.contains(&field) {
                manifest.problems.push(format!("`{field}` is missing"));
            }
        }
        match price {
            None => {}
            Some(Some(cents)) => manifest.price_cents = cents,
            Some(None) => manifest
                .problems
                .push("`price_cents` must be a whole number of cents".to_owned()),
        }
        if !unknown.is_empty() {
            let more = if more_unknown { ", …" } else { "" };
            manifest
                .problems
                .push(format!("unknown fields: {}{more}", unknown.join(", ")));
        }
        Ok(manifest)
    }
}

/// What the checks need to know beyond the manifest.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The plugin's latest approved version, if any.
    pub last_approved: Option<String>,
    /// `(id, name)` of every other plugin that is listed or under review.
    pub other_names: Vec<(String, String)>,
    /// The package the manifest names, if it is this developer's.
    pub package: Option<PackageMeta>,
    /// The developer's Connect account can receive payouts.
    pub payouts_ready: bool,
}

/// Runs every check.
pub fn run(manifest: &Manifest, facts: &Facts) -> Vec<CheckResult> {
    vec![
        id_format(&manifest.id),
        permissions(&manifest.permissions),
        no_binary_blobs(&manifest.binary),
        manifest_fields(manifest),
        version(&manifest.version, facts.last_approved.as_deref()),
        name_unique(&manifest.name, &facts.other_names),
        package(manifest, facts.package.as_ref()),
        payouts(manifest, facts.payouts_ready),
    ]
}

/// The id's own check, also used before anything is stored under it.
pub fn valid_id(id: &str) -> bool {
    (3..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn id_format(id: &str) -> CheckResult {
    let mut problems = Vec::new();
    if !valid_id(id) {
        // The id was read within its bound (64 characters): short enough to show, escaped.
        problems.push(format!(
            "the id {id:?} must match ^[a-z0-9-]+$ and be 3 to {MAX_ID_CHARS} characters"
        ));
    }
    result("id_format", problems, format!("{id} is a valid id"))
}

fn permissions(asked: &[String]) -> CheckResult {
    let problems: Vec<String> = asked
        .iter()
        .filter(|permission| !ALLOWED_PERMISSIONS.contains(&permission.as_str()))
        .map(|permission| format!("the permission {permission:?} is not in the allowed set"))
        .collect();
    result(
        "permissions",
        problems,
        format!("{} permissions, all from the allowed set", asked.len()),
    )
}

fn no_binary_blobs(findings: &[String]) -> CheckResult {
    result(
        "no_binary_blobs",
        findings.to_vec(),
        "no binary content in the manifest",
    )
}

/// Why a string looks like binary content: control characters, a data URI, or a long run of
/// base64 or hex.
fn binary_content(text: &str) -> Option<&'static str> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Some("holds control characters");
    }
    let data = text
        .as_bytes()
        .windows(5)
        .any(|window| window.eq_ignore_ascii_case(b"data:"));
    if data && text.contains(";base64,") {
        return Some("holds a data URI");
    }
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-') {
            run += 1;
            if run >= BLOB_RUN {
                return Some("holds a long base64 or hex run (an encoded binary)");
            }
        } else {
            run = 0;
        }
    }
    None
}

fn manifest_fields(manifest: &Manifest) -> CheckResult {
    let mut problems = manifest.problems.clone();
    let mut length = |field: &'static str, value: &str, min: usize, max: usize| {
        if !manifest.within(field) {
            // Reported by the shape, without its length: it was never counted.
            return;
        }
        let chars = value.chars().count();
        if !(min..=max).contains(&chars) {
            problems.push(format!(
                "`{field}` must be {min} to {max} characters (it is {chars})"
            ));
        } else if value.trim() != value {
            problems.push(format!("`{field}` must not start or end with spaces"));
        }
    };
    length("name", &manifest.name, 3, MAX_NAME_CHARS);
    length(
        "description",
        &manifest.description,
        10,
        MAX_DESCRIPTION_CHARS,
    );
    length("author", &manifest.author, 1, MAX_AUTHOR_CHARS);
    length("category", &manifest.category, 2, MAX_CATEGORY_CHARS);
    if !manifest
        .category
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '&' | '-'))
    {
        problems.push("`category` may hold letters, digits, spaces, & and - only".to_owned());
    }
    if manifest.name.chars().any(char::is_control) {
        problems.push("`name` must be one line".to_owned());
    }
    let distinct: BTreeSet<&String> = manifest.permissions.iter().collect();
    if distinct.len() != manifest.permissions.len() {
        problems.push("`permissions` lists a permission twice".to_owned());
    }
    if manifest.price_cents != 0
        && !(MIN_PRICE_CENTS..=MAX_PRICE_CENTS).contains(&manifest.price_cents)
    {
        problems.push(format!(
            "`price_cents` must be 0 (free) or {MIN_PRICE_CENTS} to {MAX_PRICE_CENTS} euro cents"
        ));
    }
    if manifest.within("package_checksum")
        && adiuva_checksum::parse(&manifest.package_checksum).is_err()
    {
        problems.push("`package_checksum` must be 64 lowercase hex digits (SHA-256)".to_owned());
    }
    result(
        "manifest_fields",
        problems,
        "every field present, typed and within its limits",
    )
}

fn version(given: &str, last_approved: Option<&str>) -> CheckResult {
    let mut problems = Vec::new();
    match semver::Version::parse(given) {
        Err(_) => problems.push(format!(
            "the version {given:?} is not a semantic version (MAJOR.MINOR.PATCH)"
        )),
        Ok(version) => {
            if let Some(last) = last_approved.and_then(|last| semver::Version::parse(last).ok())
                && version.cmp(&last) != Ordering::Greater
            {
                problems.push(format!(
                    "the version {given} must be higher than the approved {last}"
                ));
            }
        }
    }
    let ok = match last_approved {
        Some(last) => format!("{given} is higher than the approved {last}"),
        None => format!("{given} is a semantic version (first version)"),
    };
    result("version", problems, ok)
}

/// Lowercase letters and digits only: "Time-Tracker" and "time tracker" are the same name.
fn normalized(name: &str) -> Vec<char> {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance, the whole matrix: the reference the bounded one is tested against.
#[cfg(test)]
fn distance(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Levenshtein distance if it is at most `bound`, else `None`, in O(len × bound): only the
/// cells within `bound` of the diagonal can hold a distance within the bound (each step off it
/// costs one), so only that band is computed, and the computation stops as soon as a whole
/// row of the band exceeds the bound (a row's minimum never decreases further down).
/// `cells` counts the cells computed, for the tests' bound on the work.
fn bounded_distance(a: &[char], b: &[char], bound: usize, cells: &mut u64) -> Option<usize> {
    if a.len().abs_diff(b.len()) > bound {
        return None;
    }
    const FAR: usize = usize::MAX / 2;
    // previous[j]: the distance between a[..i] and b[..j], FAR outside the band.
    let mut previous: Vec<usize> = (0..=b.len())
        .map(|j| if j <= bound { j } else { FAR })
        .collect();
    let mut current = vec![FAR; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        let row = i + 1;
        let low = row.saturating_sub(bound).max(1);
        let high = (row + bound).min(b.len());
        // The cell left of the band is outside it (this buffer holds the row before last).
        if low > 1 {
            current[low - 1] = FAR;
        }
        current[0] = if row <= bound { row } else { FAR };
        let mut row_min = current[0];
        for j in low..=high {
            *cells += 1;
            let substitution = previous[j - 1] + usize::from(*ca != b[j - 1]);
            let value = substitution
                .min(previous[j].saturating_add(1))
                .min(current[j - 1].saturating_add(1));
            current[j] = value;
            row_min = row_min.min(value);
        }
        if row_min > bound {
            return None;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    Some(previous[b.len()]).filter(|distance| *distance <= bound)
}

/// The largest distance at which two names whose longer one has `longest` characters are too
/// close: similarity `1 - d / longest > 0.8` is `5 d < longest`, in integers.
fn closeness_bound(longest: usize) -> Option<usize> {
    longest.checked_sub(1).map(|n| n / 5)
}

/// The names are too close: `1 - distance / longer length > 0.8` on normalized names.
/// Names of too different lengths are never compared, and a comparison stops once the
/// distance is past the bound, so one check costs O(length × bound), not O(length²).
fn too_close(a: &[char], b: &[char], cells: &mut u64) -> bool {
    let longest = a.len().max(b.len());
    match closeness_bound(longest) {
        // Two empty names are the same name.
        None => true,
        Some(bound) => bounded_distance(a, b, bound, cells).is_some(),
    }
}

/// 1 for the same normalized name, 0 for nothing in common (whole matrix: tests only).
#[cfg(test)]
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (normalized(a), normalized(b));
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let similarity = 1.0 - distance(&a, &b) as f64 / longest as f64;
    similarity
}

fn name_unique(name: &str, others: &[(String, String)]) -> CheckResult {
    let mut cells = 0;
    name_unique_counted(name, others, &mut cells)
}

fn name_unique_counted(name: &str, others: &[(String, String)], cells: &mut u64) -> CheckResult {
    if !chars_within(name, MAX_NAME_CHARS) {
        // Never the case for a parsed manifest; a guard for the bound the cost rests on.
        return result(
            "name_unique",
            vec![format!(
                "the name is longer than {MAX_NAME_CHARS} characters"
            )],
            "",
        );
    }
    let mine = normalized(name);
    let problems: Vec<String> = others
        .iter()
        .filter(|(_, other)| chars_within(other, 4 * MAX_NAME_CHARS))
        .filter(|(_, other)| too_close(&mine, &normalized(other), cells))
        .map(|(id, other)| format!("the name {name:?} is too close to {other:?} ({id})"))
        .collect();
    result(
        "name_unique",
        problems,
        "no other plugin has a similar name",
    )
}

fn package(manifest: &Manifest, package: Option<&PackageMeta>) -> CheckResult {
    let mut problems = Vec::new();
    match package {
        None => problems.push(format!(
            "no committed package {:?} of yours: upload it with purpose plugin_package first",
            manifest.package_id
        )),
        Some(package) => {
            if u64::try_from(package.size_bytes).unwrap_or(u64::MAX) > MAX_PACKAGE_BYTES {
                problems.push(format!(
                    "the package is {} bytes; the limit is {MAX_PACKAGE_BYTES}",
                    package.size_bytes
                ));
            }
            if adiuva_checksum::same_digest(&package.checksum, &manifest.package_checksum).is_err()
            {
                problems.push(
                    "the package's SHA-256 is not the manifest's package_checksum".to_owned(),
                );
            }
        }
    }
    let ok = package.map_or_else(String::new, |package| {
        format!(
            "{} bytes, SHA-256 {} verified",
            package.size_bytes, package.checksum
        )
    });
    result("package", problems, ok)
}

fn payouts(manifest: &Manifest, ready: bool) -> CheckResult {
    let mut problems = Vec::new();
    if manifest.is_paid() && !ready {
        problems.push(
            "a paid plugin needs a developer account that can receive payouts: \
             POST /api/v1/developer/connect and finish the onboarding"
                .to_owned(),
        );
    }
    let ok = if manifest.is_paid() {
        "payouts are enabled on the developer's account"
    } else {
        "free plugin: no payouts needed"
    };
    result("payouts", problems, ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn read(manifest: Value) -> Manifest {
        serde_json::from_value(manifest).unwrap()
    }

    const SUM: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn good() -> Value {
        json!({
            "id": "focus-timer", "name": "Focus Timer", "version": "1.2.0",
            "description": "Pomodoro sessions for tasks.", "author": "Ada",
            "category": "Productivity", "permissions": ["read:tasks", "write:tasks"],
            "price_cents": 0, "package_id": "p1", "package_checksum": SUM,
        })
    }

    fn facts() -> Facts {
        Facts {
            last_approved: None,
            other_names: vec![("time-tracker".into(), "Time Tracker".into())],
            package: Some(PackageMeta {
                package_id: "p1".into(),
                size_bytes: 10,
                checksum: SUM.into(),
                s3_key: "u/_plugins/p1".into(),
                created_at: 0,
            }),
            payouts_ready: false,
        }
    }

    fn failures(manifest: Value, facts: &Facts) -> Vec<String> {
        run(&read(manifest), facts)
            .into_iter()
            .filter(|check| !check.passed)
            .map(|check| check.check)
            .collect()
    }

    #[test]
    fn a_good_manifest_passes_every_check() {
        let results = run(&read(good()), &facts());
        assert_eq!(results.len(), 8);
        assert!(results.iter().all(|check| check.passed), "{results:?}");
    }

    #[test]
    fn each_check_fails_on_its_own_problem() {
        let with = |key: &str, value: Value| {
            let mut manifest = good();
            manifest[key] = value;
            manifest
        };
        let cases = [
            (with("id", json!("Focus_Timer")), "id_format"),
            (
                with("permissions", json!(["read:tasks", "root"])),
                "permissions",
            ),
            (
                with("description", json!(format!("icon {}", "QUJD".repeat(60)))),
                "no_binary_blobs",
            ),
            (with("description", json!("short")), "manifest_fields"),
            (with("version", json!("1.2")), "version"),
            (with("name", json!("Time-Trackr")), "name_unique"),
            (with("package_checksum", json!("ab".repeat(32))), "package"),
            (with("price_cents", json!(499)), "payouts"),
        ];
        for (manifest, check) in cases {
            assert_eq!(failures(manifest, &facts()), [check], "{check}");
        }
    }

    #[test]
    fn every_reason_is_reported_at_once() {
        let manifest = json!({
            "id": "Bad Id", "name": "x", "version": "one", "description": "tiny",
            "author": "", "category": "Productivity", "permissions": ["sudo"],
            "price_cents": 10, "package_id": "nope", "package_checksum": "x",
            "icon": "data:image/png;base64,AAAA",
        });
        let mut facts = facts();
        facts.package = None;
        assert_eq!(
            failures(manifest, &facts),
            [
                "id_format",
                "permissions",
                "no_binary_blobs",
                "manifest_fields",
                "version",
                "package",
                "payouts"
            ]
        );
    }

    #[test]
    fn versions_must_grow_past_the_approved_one() {
        for (given, last, ok) in [
            ("1.0.1", Some("1.0.0"), true),
            ("2.0.0-beta.1", Some("1.9.9"), true),
            ("1.0.0", Some("1.0.0"), false),
            ("1.0.0-rc.1", Some("1.0.0"), false),
            ("0.9.0", Some("1.0.0"), false),
            ("1.0.0", None, true),
            ("v1.0.0", None, false),
        ] {
            assert_eq!(version(given, last).passed, ok, "{given} after {last:?}");
        }
    }

    #[test]
    fn names_too_close_are_refused_and_different_ones_pass() {
        assert!((similarity("Time Tracker", "time-tracker") - 1.0).abs() < f64::EPSILON);
        assert!(similarity("Slack Notifier", "Slack Notifier Pro") > MAX_NAME_SIMILARITY);
        assert!(similarity("GitHub Sync", "GitLab Sync") <= MAX_NAME_SIMILARITY);
        assert!(similarity("Focus Timer", "Time Tracker") <= MAX_NAME_SIMILARITY);
    }

    #[test]
    fn binary_content_is_found_anywhere_in_the_manifest() {
        assert!(binary_content("plain text, with a URL https://example.com/x").is_none());
        assert!(binary_content("bell \u{7}").is_some());
        assert!(binary_content(&"0123456789abcdef".repeat(13)).is_some());
        let mut nested = good();
        nested["a"] = json!([{"b": "data:application/octet-stream;base64,AA"}]);
        let results = run(&read(nested), &facts());
        assert!(!results[2].passed, "{results:?}");
        assert!(results[2].detail.contains("data URI"), "{results:?}");
    }
}

#[cfg(test)]
mod bounds {
    use super::*;
    use serde_json::{Value, json};

    fn good() -> Value {
        json!({
            "id": "focus-timer", "name": "Focus Timer", "version": "1.2.0",
            "description": "Pomodoro sessions for tasks.", "author": "Ada",
            "category": "Productivity", "permissions": ["read:tasks"],
            "price_cents": 0, "package_id": "p1", "package_checksum": "ab".repeat(32),
        })
    }

    /// A small deterministic generator (xorshift), so the comparison is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }

        /// A word over a small alphabet (so that close words are common).
        fn word(&mut self, max: usize) -> Vec<char> {
            let len = self.below(max + 1);
            (0..len)
                .map(|_| ['a', 'b', 'c', 'd'][self.below(4)])
                .collect()
        }
    }

    #[test]
    fn the_banded_distance_agrees_with_the_full_one_within_the_band_and_gives_up_beyond() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut within, mut beyond) = (0, 0);
        for _ in 0..20_000 {
            let a = rng.word(20);
            let mut b = a.clone();
            // Mostly small edits of `a`, sometimes an unrelated word.
            if rng.below(4) == 0 {
                b = rng.word(20);
            } else {
                for _ in 0..rng.below(6) {
                    let at = rng.below(b.len() + 1);
                    match rng.below(3) {
                        0 => b.insert(at, 'e'),
                        1 if at < b.len() => {
                            b.remove(at);
                        }
                        _ if at < b.len() => b[at] = 'f',
                        _ => {}
                    }
                }
            }
            let bound = rng.below(6);
            let full = distance(&a, &b);
            let mut cells = 0;
            let banded = bounded_distance(&a, &b, bound, &mut cells);
            if full <= bound {
                within += 1;
                assert_eq!(banded, Some(full), "{a:?} {b:?} within {bound}");
            } else {
                beyond += 1;
                assert_eq!(banded, None, "{a:?} {b:?} beyond {bound}");
            }
            // Never more than the band: (2 * bound + 1) cells a row.
            assert!(cells <= (a.len() * (2 * bound + 1)) as u64);
        }
        assert!(within > 1000 && beyond > 1000, "{within} {beyond}");
    }

    #[test]
    fn the_integer_rule_is_the_similarity_rule() {
        let mut rng = Rng(7);
        for _ in 0..5_000 {
            let (a, b) = (rng.word(12), rng.word(12));
            let (sa, sb): (String, String) = (a.iter().collect(), b.iter().collect());
            let mut cells = 0;
            assert_eq!(
                too_close(&a, &b, &mut cells),
                similarity(&sa, &sb) > MAX_NAME_SIMILARITY,
                "{sa:?} {sb:?}"
            );
        }
    }

    /// The work of the name check is bounded by the bounds: a name past 64 characters is never
    /// kept, and a 64-character name against 10,000 others of every length computes at most a
    /// band of cells for the few of similar length.
    #[test]
    fn the_name_check_does_bounded_work() {
        let mut manifest = good();
        manifest["name"] = json!("n".repeat(100_000));
        let parsed: Manifest = serde_json::from_value(manifest).unwrap();
        assert!(parsed.name.is_empty());
        assert!(
            parsed
                .problems
                .contains(&"`name` is longer than 64 characters".to_owned()),
            "{:?}",
            parsed.problems
        );

        let others: Vec<(String, String)> = (0..10_000)
            .map(|n| (format!("p{n}"), "x".repeat(1 + n % 64)))
            .collect();
        let mut cells = 0;
        let name = "x".repeat(30) + &"y".repeat(34);
        let check = name_unique_counted(&name, &others, &mut cells);
        assert!(check.passed, "{check:?}");
        // Only names of 52 to 64 characters are compared (the bound for 64 is 12), each in at
        // most 64 rows of 25 cells, and each gives up early.
        let compared = others.iter().filter(|(_, n)| n.len() >= 52).count() as u64;
        assert!(cells <= compared * 64 * 25, "{cells}");
        assert!(cells < 5_000_000, "{cells}");
    }

    #[test]
    fn every_field_is_bounded_while_parsing() {
        for (field, long) in [
            ("id", json!("a".repeat(65))),
            ("name", json!("n".repeat(65))),
            ("version", json!(format!("1.0.0-{}", "a".repeat(60)))),
            ("description", json!("d".repeat(2001))),
            ("author", json!("a".repeat(65))),
            ("category", json!("c".repeat(33))),
            ("package_id", json!("p".repeat(65))),
            ("package_checksum", json!("a".repeat(65))),
            ("permissions", json!(["r".repeat(33)])),
            ("permissions", json!(vec!["read:tasks"; 11])),
        ] {
            let mut manifest = good();
            manifest[field] = long;
            let parsed: Manifest = serde_json::from_value(manifest).unwrap();
            let failed: Vec<String> = run(&parsed, &Facts::default())
                .into_iter()
                .filter(|check| !check.passed)
                .flat_map(|check| [check.check, check.detail])
                .collect();
            assert!(
                failed.iter().any(|c| c == "manifest_fields"),
                "{field}: {failed:?}"
            );
            assert!(failed.iter().all(|d| d.len() < 600), "{field}: {failed:?}");
        }
        // Characters, not bytes: 64 four-byte characters are a valid name length.
        let mut manifest = good();
        manifest["name"] = json!("𝄞".repeat(64));
        let parsed: Manifest = serde_json::from_value(manifest).unwrap();
        assert_eq!(parsed.name.chars().count(), 64);
    }

    /// Past the bound nothing is kept: a 3.6 MiB array, anywhere in the manifest, is walked
    /// (for binary content) without being built, and at most ten permissions are kept.
    #[test]
    fn arrays_stop_at_their_bound() {
        let items = r#"{"a":1},"#.repeat(450_000);
        for field in ["permissions", "homepage", "name"] {
            let text = format!(r#"{{"{field}": [{items}{{"a":1}}], "id": "x-y-z"}}"#);
            assert!(text.len() > 3_600_000);
            let parsed: Manifest = serde_json::from_str(&text).unwrap();
            assert!(parsed.permissions.len() <= MAX_PERMISSIONS);
            assert_eq!(parsed.id, "x-y-z");
            assert!(!parsed.problems.is_empty());
        }
        let many = format!(
            r#"{{"permissions": [{}"read:tasks"]}}"#,
            r#""read:tasks","#.repeat(100_000)
        );
        let parsed: Manifest = serde_json::from_str(&many).unwrap();
        assert_eq!(parsed.permissions.len(), MAX_PERMISSIONS);
        assert!(parsed.problems.iter().any(|p| p.contains("at most 10")));
        // Not an object: refused by the parse, before any check.
        assert!(serde_json::from_str::<Manifest>(&format!("[{items}1]")).is_err());
        // Unknown field names are shown short and escaped.
        let parsed: Manifest =
            serde_json::from_str(&format!(r#"{{"{}\n": 1}}"#, "k".repeat(10_000))).unwrap();
        let unknown = parsed
            .problems
            .iter()
            .find(|p| p.starts_with("unknown"))
            .unwrap();
        assert!(unknown.len() < 64 && !unknown.contains("\\n"), "{unknown}");
    }
}
