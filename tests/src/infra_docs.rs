//! `infra/README.md` is what an operator deploys from, so it must name what
//! `infra/template.yaml` asks of them and what it creates: every function (resource and
//! binary, on one row of the table), the route groups each function serves (on its row), every
//! parameter, every key of the Secrets Manager secret (in the example secret), each scheduled
//! job, and the deploy commands. The lists come from the template, so a function, route,
//! parameter or secret key added there fails this test until the README has it.

use std::collections::BTreeSet;

use crate::contract::workspace_root;

struct Template {
    /// (logical id, binary, route groups, scheduled jobs) of each function.
    functions: Vec<(String, String, BTreeSet<String>, BTreeSet<String>)>,
    parameters: Vec<String>,
    secret_keys: BTreeSet<String>,
}

/// A route's group: its path after `/api/v1`, up to two segments, stopping at the first path
/// parameter (`/storage/records/{id}` -> `/storage/records`, `/plugins/{id}/install` ->
/// `/plugins`).
fn group(path: &str) -> String {
    let rest = path.strip_prefix("/api/v1").unwrap_or(path);
    let segments: Vec<&str> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .take_while(|segment| !segment.starts_with('{'))
        .take(2)
        .collect();
    format!("/{}", segments.join("/"))
}

fn template() -> Template {
    let text = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let yaml: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let mut functions = Vec::new();
    for (id, resource) in yaml["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap().to_owned();
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no Binary"))
            .to_owned();
        let mut groups = BTreeSet::new();
        let mut jobs = BTreeSet::new();
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                let properties = &event["Properties"];
                match event["Type"].as_str() {
                    Some("HttpApi") => {
                        groups.insert(group(properties["Path"].as_str().unwrap()));
                    }
                    Some("Schedule") => {
                        let input: serde_json::Value =
                            serde_json::from_str(properties["Input"].as_str().unwrap_or("{}"))
                                .unwrap();
                        if let Some(job) = input["job"].as_str() {
                            jobs.insert(job.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        functions.push((id, binary, groups, jobs));
    }
    let parameters = yaml["Parameters"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    // `{{resolve:secretsmanager:${AppSecretName}:SecretString:KEY}}`, wherever it is.
    let secret_keys = text
        .split("SecretString:")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(key, _)| key.to_owned()))
        .collect();
    Template {
        functions,
        parameters,
        secret_keys,
    }
}

/// `needle` occurs in `haystack` and is not the start of a longer name (`/backup` in
/// `/backup/history` counts; `/plugin` in `/plugins` does not).
fn names(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        !haystack[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|next| next.is_ascii_alphanumeric() || next == '_' || next == '-')
    })
}

#[test]
fn group_is_the_static_start_of_a_route() {
    assert_eq!(group("/api/v1/storage/records/{id}"), "/storage/records");
    assert_eq!(group("/api/v1/storage/changes"), "/storage/changes");
    assert_eq!(group("/api/v1/plugins/{id}/install"), "/plugins");
    assert_eq!(group("/api/v1/admin/plugins/queue"), "/admin/plugins");
    assert_eq!(group("/api/v1/chat"), "/chat");
    assert!(names("`/backup/history`", "/backup"));
    assert!(!names("`/plugins`", "/plugin"));
}

#[test]
fn the_infra_readme_names_everything_the_template_declares() {
    let readme = std::fs::read_to_string(workspace_root().join("infra/README.md")).unwrap();
    let template = template();
    assert!(
        template.functions.len() >= 12,
        "{}",
        template.functions.len()
    );
    assert!(
        template.secret_keys.len() >= 6,
        "{:?}",
        template.secret_keys
    );
    let mut missing = Vec::new();
    for (id, binary, groups, jobs) in &template.functions {
        let resource = format!("`{id}`");
        let binary_cell = format!("`{binary}`");
        let Some(row) = readme
            .lines()
            .find(|line| line.starts_with('|') && line.contains(&resource))
        else {
            missing.push(format!("no table row names the function {resource}"));
            continue;
        };
        if !row.contains(&binary_cell) {
            missing.push(format!(
                "the row of {resource} does not name its binary {binary_cell}"
            ));
        }
        for group in groups {
            if !names(row, group) {
                missing.push(format!(
                    "the row of {resource} does not name its routes {group}"
                ));
            }
        }
        for job in jobs {
            if !names(row, &format!("`{job}`")) {
                missing.push(format!(
                    "the row of {resource} does not name its job `{job}`"
                ));
            }
        }
    }
    for parameter in &template.parameters {
        if !readme.contains(&format!("`{parameter}`")) {
            missing.push(format!("the parameter `{parameter}`"));
        }
    }
    for key in &template.secret_keys {
        // In the example secret, so that a copy of it has every key.
        if !readme.contains(&format!("\"{key}\":")) {
            missing.push(format!("the secret key {key} in the example secret"));
        }
    }
    for step in [
        "sam build --beta-features",
        "sam deploy --guided",
        "cargo run --release -p local -- migrate",
    ] {
        if !readme.contains(step) {
            missing.push(format!("the deploy step `{step}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "infra/README.md misses what infra/template.yaml declares:\n  {}",
        missing.join("\n  ")
    );
}
