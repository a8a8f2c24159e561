//! The management API (`/v1`): routes, authentication, and the OpenAPI document
//! generated from the route annotations.
//!
//! Routes validate, write intent to the store and answer; they never hold a lock
//! across an await and never block the runtime.

mod aliases;
mod auth;
pub mod bundle;
mod computes;
mod environments;
mod events;
mod json;
mod keys;
mod metrics;
mod models;
mod operations;
mod query;
pub mod services;
mod snapshots;
mod sse;
mod studio;
pub mod traffic;
pub mod updates;
mod upload;
mod workspace;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use json::ApiJson;

use crate::blobs::BlobStore;
use crate::config::ServerConfig;
use crate::envs::EnvBuilder;
use crate::error::ApiError;
use crate::reconciler::Runtime;
use crate::store::{ServiceStore, Store};

/// What every route can reach.
#[derive(Clone)]
pub struct AppState {
    /// Metadata.
    pub store: Arc<dyn Store>,
    /// Artifacts.
    pub blobs: BlobStore,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The workspace token.
    pub token: Arc<str>,
    /// Cleared when shutdown starts.
    pub ready: Arc<AtomicBool>,
    /// Environment builds.
    pub envs: Arc<EnvBuilder>,
    /// Services, revisions, operations.
    pub services: Arc<dyn ServiceStore>,
    /// The local compute target.
    pub runtime: Arc<Runtime>,
    /// Base URL clients reach this server at.
    pub endpoint: Arc<str>,
    /// Signs scoring tokens.
    pub signer: crate::tokens::TokenSigner,
    /// The workspace event log and webhooks.
    pub events: Arc<crate::events::EventBus>,
    /// Web-console sessions and the recent traffic series.
    pub studio: Arc<crate::studio::Studio>,
    /// Services following model aliases and `@latest`.
    pub follow: Arc<crate::follow::Follow>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Register models, environments and services, and change them in place. Every call needs the workspace token as `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    security(("workspace_token" = [])),
    tags(
        (name = "models", description = "The model registry"),
        (name = "environments", description = "Python environments and their builds"),
        (name = "snapshots", description = "Uploaded source directories"),
        (name = "services", description = "Scoring services, their revisions and operations"),
        (name = "events", description = "The workspace event log and webhooks"),
        (name = "computes", description = "Compute targets by name (Azure ML v1 `ComputeTarget`)"),
        (name = "workspace", description = "This server")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "workspace_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/v1` router with authentication, plus the OpenAPI document it serves.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(models::register_model, models::list_models))
        .routes(routes!(models::show_latest_model))
        .routes(routes!(
            models::show_model,
            models::update_model,
            models::delete_model
        ))
        .routes(routes!(models::download_model))
        .routes(routes!(aliases::set_alias, aliases::remove_alias))
        .routes(routes!(aliases::list_aliases))
        .routes(routes!(aliases::list_all_aliases))
        .routes(routes!(
            environments::register_environment,
            environments::list_environments
        ))
        .routes(routes!(environments::show_latest_environment))
        .routes(routes!(environments::show_environment))
        .routes(routes!(environments::build_environment))
        .routes(routes!(snapshots::upload_snapshot))
        .routes(routes!(snapshots::show_snapshot))
        .routes(routes!(services::create_service, services::list_services))
        .routes(routes!(
            services::show_service,
            services::delete_service,
            updates::update_service
        ))
        .routes(routes!(updates::rollback_service))
        .routes(routes!(updates::redeploy_service))
        .routes(routes!(updates::list_revisions, traffic::stage_revision))
        .routes(routes!(traffic::show_traffic, traffic::set_traffic))
        .routes(routes!(traffic::promote_rollout))
        .routes(routes!(traffic::abort_rollout))
        .routes(routes!(traffic::set_mirror, traffic::stop_mirror))
        .routes(routes!(traffic::mirror_diffs))
        .routes(routes!(services::service_keys))
        .routes(routes!(keys::regenerate_key))
        .routes(routes!(keys::service_token))
        .routes(routes!(services::service_logs))
        .routes(routes!(operations::show_operation))
        .routes(routes!(workspace::workspace_info))
        .routes(routes!(computes::list_computes))
        .routes(routes!(
            computes::show_compute,
            computes::put_compute,
            computes::delete_compute
        ))
        .routes(routes!(events::list_events))
        .routes(routes!(events::create_webhook, events::list_webhooks))
        .routes(routes!(events::delete_webhook))
        .routes(routes!(studio::list_series))
        .routes(routes!(studio::service_series))
        .routes(routes!(studio::mint_code))
        .split_for_parts();
    let doc = Arc::new(doc);
    let api = api.route(
        "/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    );
    let api = api.route("/metrics", axum::routing::get(metrics::scrape));
    let api = api
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!(
                "there is no management API route `{}`; `GET /v1/openapi.json` lists them",
                uri.path()
            ))
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            ApiError::MethodNotAllowed(format!(
                "`{}` does not accept {method}; `GET /v1/openapi.json` lists the methods of each route",
                uri.path()
            ))
        });
    let bundle = bundle::router(state.clone());
    api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_workspace_token,
    ))
    // Uploads enforce their own limits while streaming (413 before and during).
    .layer(DefaultBodyLimit::disable())
    .with_state(state)
    // Bundle routes take a bundle token, never the workspace token.
    .merge(bundle)
}
