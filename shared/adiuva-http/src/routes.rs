//! The policy of each route, declared where its function registers it (see
//! [`routes!`](crate::routes!) and [`MethodRoutes`](crate::MethodRoutes)): whether it is public
//! (served without a caller, never rate limited by tier), whether it honours an
//! `Idempotency-Key` (a POST that creates something), whether only admins may call it, and
//! which feature of the tier matrix the caller's tier must include. Every other route needs a
//! bearer token.
//!
//! ```text
//! Routes::new()
//!     .routes(routes!(create_record).idempotent())
//!     .routes(routes!(list_records))
//!     .routes(routes!(login).public())
//!     .routes(routes!(review).admin())
//!     .routes(routes!(browse).feature(Feature::PluginMarketplace.name()))
//! ```
//!
//! The pipeline (adiuva-pipeline) and the OpenAPI contract ([`crate::contract`]) read the
//! [`Policies`] of the function they serve; `cargo xtask` reads them (through
//! `adiuva-local routes`) to write the API Gateway routes, the watch router, the sample events
//! and the route list of `infra/README.md`. A path is public for all its methods or none, so a
//! wrong method on a public path is a 405, not a 401: registering a path with both panics.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde::Serialize;

/// What a route asks of the pipeline besides its handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Served without a caller: it authenticates otherwise (passwords, refresh tokens, signed
    /// URLs, Stripe signatures) or needs nothing (health).
    pub public: bool,
    /// A POST that creates something: the same `Idempotency-Key` replays its first answer.
    pub idempotent: bool,
    /// Only callers with the admin role (403 `admin_required` for everyone else).
    pub admin: bool,
    /// A feature the caller's tier must include, by its name in the tier matrix
    /// (`plugin_marketplace`): 403 `tier_required` otherwise, before the handler runs.
    pub feature: Option<&'static str>,
}

/// One declared route: the handler's `#[route]` method and path, the handler's name and
/// its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredRoute {
    pub method: String,
    pub path: String,
    /// The handler's function name (its `operationId`).
    pub handler: &'static str,
    #[serde(flatten)]
    pub policy: Policy,
}

/// The policies of a function's routes, by method and path template.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    routes: BTreeMap<(String, String), DeclaredRoute>,
    /// Paths served without a caller that are not declared routes (the local server's own:
    /// the OpenAPI document, signed upload URLs, the stub and docs pages).
    public_paths: BTreeSet<String>,
    /// Paths with at least one authenticated method.
    authenticated_paths: BTreeSet<String>,
}

impl Policies {
    /// Adds a declared route. Panics when the path would mix public and authenticated methods,
    /// or when an idempotent route is not a POST.
    pub(crate) fn declare(&mut self, route: DeclaredRoute) {
        assert!(
            !route.policy.idempotent || route.method == "POST",
            "{} {}: only a POST can be idempotent",
            route.method,
            route.path
        );
        assert!(
            !(route.policy.public
                && (route.policy.admin
                    || route.policy.idempotent
                    || route.policy.feature.is_some())),
            "{} {}: a public route has no caller to be an admin, to have a tier or to key idempotency on",
            route.method,
            route.path
        );
        self.mark(&route.path, route.policy.public);
        let key = (route.method.clone(), route.path.clone());
        if let Some(previous) = self.routes.insert(key, route.clone()) {
            assert_eq!(
                previous, route,
                "{} {} is declared twice",
                route.method, route.path
            );
        }
    }

    /// Marks `path` as served without a caller (a route that is not declared).
    pub(crate) fn public_path(&mut self, path: &str) {
        self.mark(path, true);
        self.public_paths.insert(path.to_owned());
    }

    fn mark(&mut self, path: &str, public: bool) {
        let mixed = if public {
            self.authenticated_paths.contains(path)
        } else {
            self.is_public_path(path)
        };
        assert!(
            !mixed,
            "{path} would mix public and authenticated methods: a path is public for all its methods or none"
        );
        if !public {
            self.authenticated_paths.insert(path.to_owned());
        }
    }

    pub(crate) fn merge(&mut self, other: Policies) {
        for route in other.routes.into_values() {
            self.declare(route);
        }
        for path in other.public_paths {
            self.public_path(&path);
        }
    }

    /// The policy of a declared route.
    pub fn get(&self, method: &Method, path: &str) -> Option<&Policy> {
        self.routes
            .get(&(method.as_str().to_owned(), path.to_owned()))
            .map(|route| &route.policy)
    }

    /// Whether `method` on `path` (the matched path template) is served without a caller.
    pub fn is_public(&self, method: &Method, path: &str) -> bool {
        self.get(method, path).is_some_and(|policy| policy.public)
            || self.public_paths.contains(path)
    }

    /// Whether `path` is a public path: every method on it is served without a caller (and a
    /// method it does not serve is answered 405 without one).
    pub fn is_public_path(&self, path: &str) -> bool {
        self.public_paths.contains(path)
            || self
                .routes
                .values()
                .any(|route| route.path == path && route.policy.public)
    }

    /// Whether `method` on `path` honours `Idempotency-Key`.
    pub fn is_idempotent(&self, method: &Method, path: &str) -> bool {
        self.get(method, path)
            .is_some_and(|policy| policy.idempotent)
    }

    /// Every declared route, by path then method.
    pub fn routes(&self) -> impl Iterator<Item = &DeclaredRoute> {
        self.routes.values()
    }

    /// The public paths that are not declared routes (the local server's own).
    pub fn undeclared_public_paths(&self) -> impl Iterator<Item = &str> {
        self.public_paths.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, policy: Policy) -> DeclaredRoute {
        DeclaredRoute {
            method: method.to_owned(),
            path: path.to_owned(),
            handler: "handler",
            policy,
        }
    }

    const PUBLIC: Policy = Policy {
        public: true,
        idempotent: false,
        admin: false,
        feature: None,
    };

    #[test]
    fn a_public_path_is_public_for_every_method() {
        let mut policies = Policies::default();
        policies.declare(route("POST", "/login", PUBLIC));
        policies.declare(route("GET", "/me", Policy::default()));
        assert!(policies.is_public(&Method::POST, "/login"));
        assert!(policies.is_public_path("/login"));
        assert!(!policies.is_public(&Method::GET, "/me"));
        assert!(!policies.is_public_path("/me"));
        assert!(!policies.is_public_path("/unknown"));
    }

    #[test]
    #[should_panic(expected = "would mix public and authenticated methods")]
    fn a_path_cannot_mix_public_and_authenticated_methods() {
        let mut policies = Policies::default();
        policies.declare(route("GET", "/items", PUBLIC));
        policies.declare(route("POST", "/items", Policy::default()));
    }

    #[test]
    #[should_panic(expected = "would mix public and authenticated methods")]
    fn an_undeclared_public_path_cannot_be_authenticated_elsewhere() {
        let mut policies = Policies::default();
        policies.declare(route("GET", "/items", Policy::default()));
        policies.public_path("/items");
    }

    #[test]
    #[should_panic(expected = "only a POST can be idempotent")]
    fn only_a_post_is_idempotent() {
        let mut policies = Policies::default();
        let idempotent = Policy {
            idempotent: true,
            ..Policy::default()
        };
        policies.declare(route("PUT", "/items", idempotent));
    }

    #[test]
    fn merged_policies_keep_both_sides() {
        let mut left = Policies::default();
        left.declare(route("POST", "/login", PUBLIC));
        let mut right = Policies::default();
        let admin = Policy {
            admin: true,
            ..Policy::default()
        };
        right.declare(route("POST", "/admin/block", admin));
        right.public_path("/docs");
        left.merge(right);
        assert!(left.is_public(&Method::POST, "/login"));
        assert!(
            left.get(&Method::POST, "/admin/block")
                .is_some_and(|policy| policy.admin)
        );
        assert!(left.is_public(&Method::GET, "/docs"));
        assert_eq!(left.routes().count(), 2);
    }

    #[test]
    #[should_panic(expected = "a public route has no caller")]
    fn a_public_route_cannot_need_a_tier_feature() {
        let mut policies = Policies::default();
        let policy = Policy {
            feature: Some("plugin_marketplace"),
            ..PUBLIC
        };
        policies.declare(route("GET", "/catalog", policy));
    }
}
