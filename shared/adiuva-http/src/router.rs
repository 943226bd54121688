//! A function's routes, built from the handlers' `#[route]` declarations, and with the
//! `openapi` feature their OpenAPI document.
//!
//! The router is built the same way in every binary: each handler is routed at the path and
//! for the methods its declaration names ([`Declaration::PATH`] and [`Declaration::METHODS`]).
//! Only the local server and the tests turn the `openapi` features on (this crate's and the
//! functions'), where `#[route]` also hands its arguments to `utoipa::path` and each declaration
//! adds its operation and schemas to a document. A Lambda build compiles no utoipa at all.
//!
//! ```text
//! let routes = Routes::new()
//!     .routes(routes!(create_record, list_records))
//!     .routes(routes!(changes))
//!     .with_state(storage);
//! ```

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, MethodRouter, Route};
use tower::{Layer, Service};

use crate::routes::{DeclaredRoute, Policies, Policy};

/// The handlers of one path, each routed for the methods its `#[route]` names, with
/// their policy and, when the document is built, their operations. Made by
/// [`routes!`](crate::routes!); [`public`](Self::public), [`idempotent`](Self::idempotent),
/// [`admin`](Self::admin) and [`feature`](Self::feature) declare the policy of every handler
/// of the call.
pub struct MethodRoutes<S = ()> {
    path: Option<String>,
    router: MethodRouter<S>,
    /// Each handler's name and the methods it is routed for.
    handlers: Vec<(&'static str, Vec<String>)>,
    policy: Policy,
    #[cfg(feature = "openapi")]
    document: document::Operations,
}

impl<S> std::fmt::Debug for MethodRoutes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRoutes")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> Default for MethodRoutes<S> {
    fn default() -> Self {
        Self {
            path: None,
            router: MethodRouter::new(),
            handlers: Vec::new(),
            policy: Policy::default(),
            #[cfg(feature = "openapi")]
            document: document::Operations::default(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> MethodRoutes<S> {
    /// Served without a caller (see [`Policy::public`]).
    pub fn public(mut self) -> Self {
        self.policy.public = true;
        self
    }

    /// POSTs that create something: the same `Idempotency-Key` replays their first answer
    /// (see [`Policy::idempotent`]).
    pub fn idempotent(mut self) -> Self {
        self.policy.idempotent = true;
        self
    }

    /// Only for callers with the admin role (see [`Policy::admin`]).
    pub fn admin(mut self) -> Self {
        self.policy.admin = true;
        self
    }

    /// Only callers whose tier includes `feature`, named as in the tier matrix
    /// (`Feature::PluginMarketplace.name()`; see [`Policy::feature`]). The pipeline refuses a
    /// name the matrix does not have when the function is built.
    pub fn feature(mut self, feature: &'static str) -> Self {
        self.policy.feature = Some(feature);
        self
    }

    /// Adds `handler` (named `name`), declared by `P` (its `#[route]` struct). Called
    /// by [`routes!`](crate::routes!), which names `P`.
    #[doc(hidden)]
    pub fn handler<P, H, T>(mut self, name: &'static str, handler: H) -> Self
    where
        P: Declaration,
        H: Handler<T, S>,
        T: 'static,
    {
        let path = route_path(P::PATH);
        if let Some(previous) = &self.path {
            assert_eq!(
                previous, &path,
                "routes!(...) takes the handlers of one path"
            );
        }
        let filter = P::METHODS
            .iter()
            .map(|method| method_filter(method))
            .reduce(MethodFilter::or)
            .unwrap_or_else(|| panic!("the declaration of {path} names no method"));
        self.router = self.router.on(filter, handler);
        self.handlers.push((
            name,
            P::METHODS
                .iter()
                .map(|method| (*method).to_owned())
                .collect(),
        ));
        #[cfg(feature = "openapi")]
        P::document(&mut self.document);
        self.path = Some(path);
        self
    }
}

/// A handler's declaration, the `__path_<handler>` struct its `#[route]` writes: the path and
/// methods it is routed for, and with the `openapi` feature (of this crate and of the handler's)
/// its operation in the document.
pub trait Declaration {
    /// The path template, as axum and OpenAPI write it (`/api/v1/records/{id}`).
    const PATH: &'static str;
    /// The methods, as HTTP writes them (`GET`).
    const METHODS: &'static [&'static str];

    /// Adds the operation and the schemas it refers to. A handler whose crate builds without
    /// `openapi` documents nothing (the contract test finds every declared route in the
    /// document).
    #[cfg(feature = "openapi")]
    fn document(operations: &mut Operations) {
        let _ = operations;
    }
}

#[cfg(feature = "openapi")]
pub use document::Operations;

/// A declared path as the router and the document key it: the empty path is `/`.
fn route_path(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// The methods axum routes.
fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        "OPTIONS" => MethodFilter::OPTIONS,
        "HEAD" => MethodFilter::HEAD,
        "PATCH" => MethodFilter::PATCH,
        "TRACE" => MethodFilter::TRACE,
        other => panic!("{other} is not a method a route can declare"),
    }
}

/// The handlers of one path, from their `#[route]` declarations:
/// `routes!(create_record, list_records)`. Each handler is routed for the methods its
/// declaration names; the handlers of one call share one path and one policy
/// (`routes!(login).public()`, `routes!(create_record).idempotent()`,
/// `routes!(block).admin()`; authenticated when none is said).
#[macro_export]
macro_rules! routes {
    ($($handler:ident),+ $(,)?) => {
        $crate::__private::paste! {
            $crate::MethodRoutes::default()
                $(.handler::<[<__path_ $handler>], _, _>(stringify!($handler), $handler))+
        }
    };
}

/// A function's routes: an axum router, the policies of its routes, and with the `openapi`
/// feature the document of its declared routes, starting from the API's base document (title,
/// version, bearer scheme).
pub struct Routes<S = ()> {
    router: Router<S>,
    policies: Policies,
    #[cfg(feature = "openapi")]
    document: utoipa::openapi::OpenApi,
}

impl<S> std::fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            policies: Policies::default(),
            #[cfg(feature = "openapi")]
            document: crate::contract::base_document(),
        }
    }

    /// Routes the handlers of one path (see [`routes!`](crate::routes!)), declares their
    /// policy and documents them.
    pub fn routes(mut self, routes: MethodRoutes<S>) -> Self {
        let Some(path) = routes.path else {
            return self;
        };
        for (handler, methods) in routes.handlers {
            for method in methods {
                self.policies.declare(DeclaredRoute {
                    method,
                    path: path.clone(),
                    handler,
                    policy: routes.policy,
                });
            }
        }
        self.router = self.router.route(&path, routes.router);
        #[cfg(feature = "openapi")]
        routes.document.add_to(&mut self.document);
        self
    }

    /// Routes `method_router` at `path` without documenting it (the local server's extras);
    /// it needs a caller.
    pub fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, method_router);
        self
    }

    /// Routes `method_router` at `path` without documenting it, served without a caller (the
    /// local server's document, signed upload URLs, stub and docs pages).
    pub fn public_route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.policies.public_path(path);
        self.route(path, method_router)
    }

    /// A layer around every route so far (see [`axum::Router::route_layer`]): a route guard.
    pub fn route_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.route_layer(layer);
        self
    }

    /// Both sets of routes (and documents).
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.policies.merge(other.policies);
        #[cfg(feature = "openapi")]
        self.document.merge(other.document);
        self
    }

    /// The routes with their state given (see [`axum::Router::with_state`]).
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            policies: self.policies,
            #[cfg(feature = "openapi")]
            document: self.document,
        }
    }
}

impl<S> Routes<S> {
    /// The policies of the routes declared so far.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }
}

impl Routes {
    pub(crate) fn into_router(self) -> Router {
        self.router
    }

    #[cfg(feature = "openapi")]
    pub(crate) fn document(&self) -> &utoipa::openapi::OpenApi {
        &self.document
    }

    #[cfg(feature = "openapi")]
    pub(crate) fn document_mut(&mut self) -> &mut utoipa::openapi::OpenApi {
        &mut self.document
    }
}

/// Routes that are not documented (the local server's WebSocket, stub page and upload URLs).
impl<S> From<Router<S>> for Routes<S> {
    fn from(router: Router<S>) -> Self {
        Self {
            router,
            policies: Policies::default(),
            #[cfg(feature = "openapi")]
            document: utoipa::openapi::OpenApiBuilder::new().build(),
        }
    }
}

/// The document side, exactly as utoipa-axum collects it: each declaration's operation with
/// its tags, under its path and methods, and the schemas it refers to.
#[cfg(feature = "openapi")]
mod document {
    use utoipa::openapi::path::Paths;
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::{Components, OpenApi, RefOr};

    /// The operations of one path and the schemas they refer to, which each declaration adds
    /// (see [`Declaration::document`](super::Declaration::document)).
    #[derive(Default)]
    pub struct Operations {
        paths: Paths,
        schemas: Vec<(String, RefOr<Schema>)>,
    }

    impl std::fmt::Debug for Operations {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Operations")
                .field("paths", &self.paths.paths.keys().collect::<Vec<_>>())
                .finish_non_exhaustive()
        }
    }

    impl Operations {
        /// Adds the operation `utoipa::path` wrote for `P`, under its path and methods, with
        /// its tags, and the schemas it refers to. Called by the declarations `#[route]` writes.
        pub fn add<P>(&mut self)
        where
            P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        {
            let path = super::route_path(&P::path());
            let methods = P::methods();
            let mut operation = P::operation();
            let tags = <P as utoipa::__dev::Tags<'static>>::tags();
            if !tags.is_empty() {
                let operation_tags = operation.tags.get_or_insert_with(Vec::new);
                operation_tags.extend(tags.iter().map(ToString::to_string));
            }
            <P as utoipa::__dev::SchemaReferences>::schemas(&mut self.schemas);
            self.paths.add_path_operation(&path, methods, operation);
        }

        pub(super) fn add_to(self, document: &mut OpenApi) {
            for (path, item) in self.paths.paths {
                match document.paths.paths.get_mut(&path) {
                    Some(existing) => existing.merge_operations(item),
                    None => {
                        document.paths.paths.insert(path, item);
                    }
                }
            }
            document
                .components
                .get_or_insert_with(Components::new)
                .schemas
                .extend(self.schemas);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[crate::route(get, path = "/items", responses((status = 200, description = "The items")))]
    async fn list(State(name): State<&'static str>) -> &'static str {
        name
    }

    #[crate::route(post, path = "/items", responses((status = 201, description = "Created")))]
    async fn create() -> StatusCode {
        StatusCode::CREATED
    }

    #[crate::route(put, path = "/items/{id}", params(("id" = String, Path)),
        responses((status = 200, description = "Stored")))]
    async fn store(axum::extract::Path(id): axum::extract::Path<String>) -> String {
        id
    }

    fn router() -> Router {
        Routes::new()
            .routes(routes!(list, create))
            .routes(routes!(store))
            .with_state("items")
            .into_router()
            .fallback(|| async { (StatusCode::NOT_FOUND, "fallback") })
    }

    async fn call(method: Method, uri: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn each_handler_answers_the_path_and_methods_it_declares() {
        assert_eq!(
            call(Method::GET, "/items").await,
            (StatusCode::OK, "items".to_owned())
        );
        assert_eq!(call(Method::POST, "/items").await.0, StatusCode::CREATED);
        assert_eq!(
            call(Method::PUT, "/items/a1").await,
            (StatusCode::OK, "a1".to_owned())
        );
        assert_eq!(
            call(Method::DELETE, "/items").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(Method::GET, "/items/a1").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(Method::GET, "/elsewhere").await,
            (StatusCode::NOT_FOUND, "fallback".to_owned())
        );
    }

    #[test]
    #[should_panic(expected = "takes the handlers of one path")]
    fn one_call_takes_one_path() {
        let _ = Routes::<&'static str>::new().routes(routes!(list, store));
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_document_has_each_declared_operation() {
        let routes: Routes = Routes::new()
            .routes(routes!(list, create))
            .routes(routes!(store))
            .with_state("items");
        let document = serde_json::to_value(routes.document()).unwrap();
        assert_eq!(document["info"]["title"], "Adiuva Cloud API");
        assert_eq!(document["paths"]["/items"]["get"]["operationId"], "list");
        assert_eq!(document["paths"]["/items"]["post"]["operationId"], "create");
        assert_eq!(
            document["paths"]["/items/{id}"]["put"]["operationId"],
            "store"
        );
    }
}
