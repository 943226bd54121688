//! One function's routes with the request pipeline around them. Outermost first: request id
//! and span (with the request log, its metrics and the security headers), CORS, body limit, then the caller-aware stages when the function has them
//! (authentication, rate limiting, idempotency; see adiuva-pipeline), then the routes.
//!
//! A function crate builds its [`Function`] once, from the context; its Lambda `main`, the
//! local server (which merges every function) and the tests all call that constructor. Only
//! with the `openapi` feature (the local server, the tests) does it also hold the routes'
//! OpenAPI document.

use std::sync::Arc;

use adiuva_config::{Component, ConfigError, Context};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};

use crate::routes::Policies;
use crate::{ApiError, Routes};
use crate::{cors, request_id};
use adiuva_error::ErrorKind;

/// `CORS_ORIGINS` (a JSON or comma-separated list; the Electron app and the Vite dev servers by
/// default) and `MAX_BODY_BYTES` (4 MiB: Lambda takes 6 MB per invocation and binary bodies
/// arrive base64-encoded).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
}

impl Component for HttpSettings {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let source = context.source();
        Ok(Self {
            cors_origins: source.list(
                "CORS_ORIGINS",
                r#"["app://.", "http://localhost:3000", "http://localhost:5173"]"#,
            ),
            max_body_bytes: source.number_in("MAX_BODY_BYTES", 4 * 1024 * 1024, 1..=1 << 30)?,
        })
    }
}

/// The stages that need to know the caller, as route layers around the router, given the
/// policies of its routes; provided by adiuva-pipeline so that this crate (and the health
/// function) links no authentication or store.
pub type Stages = Arc<dyn Fn(Router, Arc<Policies>) -> Router + Send + Sync>;

/// A function's routes and its pipeline.
pub struct Function {
    /// The binary's name (`storage`, ...): the `function` dimension of its metrics. The local
    /// server's merged function is `local`.
    name: &'static str,
    routes: Routes,
    settings: HttpSettings,
    stages: Option<Stages>,
    /// Whether the routes' document holds the pipeline's part of the contract yet. It is added
    /// only when the document is used (merged or asked for).
    #[cfg(feature = "openapi")]
    completed: bool,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("caller_aware", &self.stages.is_some())
            .finish_non_exhaustive()
    }
}

impl Function {
    /// A function whose routes are all public: the pipeline without the caller and the store.
    pub fn public(
        name: &'static str,
        routes: Routes,
        context: &Context,
    ) -> Result<Self, ConfigError> {
        if let Some(route) = routes
            .policies()
            .routes()
            .find(|route| !route.policy.public)
        {
            panic!(
                "{name} has no caller stage, yet {} {} is not declared public",
                route.method, route.path
            );
        }
        Ok(Self {
            name,
            routes,
            settings: context.get()?,
            stages: None,
            #[cfg(feature = "openapi")]
            completed: false,
        })
    }

    /// A function with caller-aware stages between the body limit and the routes.
    pub fn with_stages(
        name: &'static str,
        routes: Routes,
        context: &Context,
        stages: Stages,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            name,
            routes,
            settings: context.get()?,
            stages: Some(stages),
            #[cfg(feature = "openapi")]
            completed: false,
        })
    }

    /// Adds the pipeline's part of the contract to the document (see [`crate::contract`]),
    /// once.
    #[cfg(feature = "openapi")]
    fn complete(&mut self) {
        if !self.completed {
            let policies = self.routes.policies().clone();
            crate::contract::complete(self.routes.document_mut(), &policies, self.stages.is_some());
            self.completed = true;
        }
    }

    /// Both functions' routes behind one pipeline (the local server). The caller-aware stages
    /// come from whichever function has them; they are built from the same context. Each
    /// side's document is completed first, with what its own pipeline answers.
    #[cfg(feature = "openapi")]
    pub fn merge(mut self, mut other: Function) -> Function {
        self.complete();
        other.complete();
        Function {
            name: "local",
            routes: self.routes.merge(other.routes),
            settings: self.settings,
            stages: self.stages.or(other.stages),
            completed: true,
        }
    }

    /// Adds routes served by this function's pipeline (the local server's extras).
    #[cfg(feature = "openapi")]
    pub fn with_routes(mut self, routes: Routes) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// The OpenAPI document of the routes, with what the pipeline answers (see
    /// [`crate::contract`]).
    #[cfg(feature = "openapi")]
    pub fn openapi(&self) -> utoipa::openapi::OpenApi {
        let mut document = self.routes.document().clone();
        if !self.completed {
            crate::contract::complete(&mut document, self.routes.policies(), self.stages.is_some());
        }
        document
    }

    /// The function's name (its binary's).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The policies of its routes, as declared where it registers them.
    pub fn policies(&self) -> &Policies {
        self.routes.policies()
    }

    /// The service Lambda and the local server run. Each router is one instance: its first
    /// request is its cold start.
    pub fn into_router(self) -> Router {
        let policies = Arc::new(self.routes.policies().clone());
        let router = self
            .routes
            .into_router()
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        let router = match &self.stages {
            Some(stages) => stages(router, policies),
            None => router,
        };
        router
            .layer(DefaultBodyLimit::max(self.settings.max_body_bytes))
            .layer(cors::layer(&self.settings.cors_origins))
            .layer(axum::middleware::from_fn_with_state(
                request_id::RequestLog::new(self.name),
                request_id::middleware,
            ))
    }
}

async fn not_found(uri: Uri) -> ApiError {
    // The path is the client's: an excerpt only (it also goes into the log line).
    ApiError::not_found(format!(
        "no route for {}",
        adiuva_error::excerpt(uri.path())
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            adiuva_error::excerpt(method.as_str()),
            adiuva_error::excerpt(uri.path())
        ),
    )
}
