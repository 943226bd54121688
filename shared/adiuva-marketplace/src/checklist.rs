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

use adiuva_storage::{MAX_PACKAGE_BYTES, PackageMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
/// (0.8).
const MAX_NAME_SIMILARITY: f64 = 0.8;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// A submitted manifest, read leniently so every problem is reported: a missing or mistyped
/// field is empty here and reported by `manifest_fields`.
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
    /// What is wrong with the manifest's shape (missing fields, wrong types, unknown fields).
    problems: Vec<String>,
    /// The manifest as sent, for the binary blob scan.
    raw: Value,
}

impl Manifest {
    pub fn read(raw: Value) -> Self {
        let mut manifest = Manifest::default();
        let Some(fields) = raw.as_object() else {
            manifest
                .problems
                .push("the manifest must be a JSON object".to_owned());
            manifest.raw = raw;
            return manifest;
        };
        let text = |name: &str, problems: &mut Vec<String>| match fields.get(name) {
            Some(Value::String(value)) => value.clone(),
            Some(_) => {
                problems.push(format!("`{name}` must be a string"));
                String::new()
            }
            None => {
                problems.push(format!("`{name}` is missing"));
                String::new()
            }
        };
        let mut problems = Vec::new();
        manifest.id = text("id", &mut problems);
        manifest.name = text("name", &mut problems);
        manifest.version = text("version", &mut problems);
        manifest.description = text("description", &mut problems);
        manifest.author = text("author", &mut problems);
        manifest.category = text("category", &mut problems);
        manifest.package_id = text("package_id", &mut problems);
        manifest.package_checksum = text("package_checksum", &mut problems);
        match fields.get("permissions") {
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str() {
                        Some(permission) => manifest.permissions.push(permission.to_owned()),
                        None => problems.push("`permissions` must hold only strings".to_owned()),
                    }
                }
            }
            Some(_) => problems.push("`permissions` must be an array of strings".to_owned()),
            None => problems.push("`permissions` is missing".to_owned()),
        }
        match fields.get("price_cents") {
            None => {}
            Some(value) => match value.as_i64() {
                Some(cents) => manifest.price_cents = cents,
                None => problems.push("`price_cents` must be a whole number of cents".to_owned()),
            },
        }
        let unknown: Vec<&str> = fields
            .keys()
            .map(String::as_str)
            .filter(|key| !FIELDS.contains(key))
            .collect();
        if !unknown.is_empty() {
            problems.push(format!("unknown fields: {}", unknown.join(", ")));
        }
        manifest.problems = problems;
        manifest.raw = raw;
        manifest
    }

    pub fn is_paid(&self) -> bool {
        self.price_cents > 0
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
        no_binary_blobs(&manifest.raw),
        manifest_fields(manifest),
        version(&manifest.version, facts.last_approved.as_deref()),
        name_unique(&manifest.name, &facts.other_names),
        package(manifest, facts.package.as_ref()),
        payouts(manifest, facts.payouts_ready),
    ]
}

/// The id's own check, also used before anything is stored under it.
pub fn valid_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn id_format(id: &str) -> CheckResult {
    let mut problems = Vec::new();
    if !valid_id(id) {
        problems.push(format!(
            "the id {id:?} must match ^[a-z0-9-]+$ and be 3 to 64 characters"
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

fn no_binary_blobs(raw: &Value) -> CheckResult {
    let mut problems = Vec::new();
    scan(raw, "manifest", &mut problems);
    result(
        "no_binary_blobs",
        problems,
        "no binary content in the manifest",
    )
}

fn scan(value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::String(text) => {
            if let Some(problem) = binary_content(text) {
                problems.push(format!("{at} {problem}"));
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                scan(item, &format!("{at}[{index}]"), problems);
            }
        }
        Value::Object(fields) => scan_object(fields, at, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn scan_object(fields: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
    for (key, value) in fields {
        let path = if at == "manifest" {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        if binary_content(key).is_some() {
            problems.push(format!("a field name of {at} holds binary content"));
        }
        scan(value, &path, problems);
    }
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
    if text.to_ascii_lowercase().contains("data:") && text.contains(";base64,") {
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
    let mut length = |field: &str, value: &str, min: usize, max: usize| {
        let chars = value.chars().count();
        if !(min..=max).contains(&chars) {
            problems.push(format!(
                "`{field}` must be {min} to {max} characters (it is {chars})"
            ));
        } else if value.trim() != value {
            problems.push(format!("`{field}` must not start or end with spaces"));
        }
    };
    length("name", &manifest.name, 3, 64);
    length("description", &manifest.description, 10, 2000);
    length("author", &manifest.author, 1, 64);
    length("category", &manifest.category, 2, 32);
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
    if adiuva_checksum::parse(&manifest.package_checksum).is_err() {
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

/// Levenshtein distance.
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

/// 1 for the same normalized name, 0 for nothing in common.
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
    let problems: Vec<String> = others
        .iter()
        .filter(|(_, other)| similarity(name, other) > MAX_NAME_SIMILARITY)
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
    use serde_json::json;

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
        run(&Manifest::read(manifest), facts)
            .into_iter()
            .filter(|check| !check.passed)
            .map(|check| check.check)
            .collect()
    }

    #[test]
    fn a_good_manifest_passes_every_check() {
        let results = run(&Manifest::read(good()), &facts());
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
        let nested = json!({"a": [{"b": "data:application/octet-stream;base64,AA"}]});
        assert!(!no_binary_blobs(&nested).passed);
    }
}
