//! `infra/README.md` is what an operator deploys from, so it must name what
//! `infra/template.yaml` asks of them and what it creates: every function (resource and
//! binary, on one row of the table), every route each function serves (in the route list that
//! `cargo xtask gen` writes from the functions' declarations), every parameter, every key of the Secrets Manager secret (in the example secret), each scheduled
//! job, and the deploy commands. The lists come from the template, so a function, route,
//! parameter or secret key added there fails this test until the README has it.

use std::collections::BTreeSet;

use crate::contract::workspace_root;

struct Template {
    /// (logical id, binary, routes as `METHOD path`, scheduled jobs) of each function.
    functions: Vec<(String, String, BTreeSet<String>, BTreeSet<String>)>,
    parameters: Vec<String>,
    secret_keys: BTreeSet<String>,
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
        let mut routes = BTreeSet::new();
        let mut jobs = BTreeSet::new();
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for event in events.values() {
                let properties = &event["Properties"];
                match event["Type"].as_str() {
                    Some("HttpApi") => {
                        routes.insert(format!(
                            "{} {}",
                            properties["Method"].as_str().unwrap(),
                            properties["Path"].as_str().unwrap()
                        ));
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
        functions.push((id, binary, routes, jobs));
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
fn names_stop_at_a_name_character() {
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
    for (id, binary, routes, jobs) in &template.functions {
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
        for route in routes {
            let listed = readme
                .lines()
                .any(|line| line.starts_with(&format!("| {binary_cell} | `{route}` |")));
            if !listed {
                missing.push(format!(
                    "the route list does not name {route} of {binary_cell} (`cargo xtask gen` writes it)"
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
