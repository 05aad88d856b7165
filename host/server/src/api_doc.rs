//! The route table and the OpenAPI document, from one source: every API route is added here
//! with the handler's `#[utoipa::path]` annotation (utoipa-axum's `routes!`), so the router
//! and the document cannot disagree. `docs/openapi.json` is this document, written by
//! `gigaspot openapi` (a test keeps them equal).

use std::sync::OnceLock;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::app::AppState;
use crate::{
    api_accounts, api_agent, api_backup, api_bids, api_clore, api_dashboard, api_lab, api_machines,
    api_money, api_operator, api_orders, api_withdrawals, market_history, market_prices, metrics,
    what_wins,
};

/// The document's frame: title, version, tags and the two ways to authenticate.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "GigaSPOT",
        description = "A self-hostable market for GPU power: the native API under /api/v1, the agent heartbeat, the Clore GigaSPOT-compatible surface under /v1, and /metrics.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "service", description = "Health, this document and metrics"),
        (name = "accounts", description = "Registration and API keys"),
        (name = "money", description = "Deposits, balances, the ledger and withdrawals"),
        (name = "machines", description = "Hosts' machines, their order books and history"),
        (name = "market", description = "The whole market over time"),
        (name = "bids", description = "Clients' bids"),
        (name = "agent", description = "The host agent's heartbeat"),
        (name = "operator", description = "Market parameters, the GPU table and backups"),
        (name = "plugins", description = "Ranking strategies and bid validators (WebAssembly components)"),
        (name = "clore", description = "The Clore GigaSPOT-compatible surface (see clore-compat.md)")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`gs_…`), or on the heartbeat the machine's agent token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "clore_auth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "auth",
                "An API key in Clore's `auth` header",
            ))),
        );
    }
}

/// `routes` with a body limit of its own (plugin uploads are larger than other bodies).
fn with_body_limit(
    (schemas, paths, router): UtoipaMethodRouter<AppState>,
    bytes: usize,
) -> UtoipaMethodRouter<AppState> {
    (schemas, paths, router.layer(DefaultBodyLimit::max(bytes)))
}

/// Every documented route: the native API, the heartbeat, `/v1` and `/metrics`.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api_accounts::health))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics::render))
        .routes(routes!(api_accounts::register))
        .routes(routes!(api_accounts::me))
        .routes(routes!(api_operator::new_key))
        .routes(routes!(api_operator::revoke_current))
        .routes(routes!(api_money::deposit))
        .routes(routes!(api_money::balance))
        .routes(routes!(api_money::ledger))
        .routes(routes!(api_withdrawals::list, api_withdrawals::request))
        .routes(routes!(api_withdrawals::paid))
        .routes(routes!(api_withdrawals::rejected))
        .routes(routes!(api_machines::list, api_machines::register))
        .routes(routes!(api_machines::show, api_machines::update))
        .routes(routes!(api_machines::latest_decision))
        .routes(routes!(what_wins::quote))
        .routes(routes!(api_dashboard::book))
        .routes(routes!(api_dashboard::machine_history))
        .routes(routes!(market_history::market_history))
        .routes(routes!(market_prices::market_prices))
        .routes(routes!(api_bids::mine, api_bids::create))
        .routes(routes!(api_bids::show, api_bids::edit, api_bids::cancel))
        .routes(routes!(api_bids::decision))
        .routes(routes!(api_orders::mine, api_orders::create))
        .routes(routes!(
            api_orders::show,
            api_orders::edit,
            api_orders::cancel
        ))
        .routes(routes!(api_agent::heartbeat))
        .routes(routes!(api_operator::params, api_operator::set_params))
        .routes(routes!(
            api_operator::gpu_table,
            api_operator::set_gpu_table
        ))
        .routes(with_body_limit(
            routes!(api_operator::list, api_operator::upload),
            api_operator::MAX_PLUGIN_BYTES,
        ))
        .routes(routes!(api_operator::remove_version))
        .routes(routes!(api_operator::activate))
        .routes(routes!(api_lab::set_shadow))
        .routes(routes!(api_lab::get_shadow, api_lab::remove_shadow))
        .routes(routes!(api_lab::promote_shadow))
        .routes(routes!(api_lab::list_backtests, api_lab::start_backtest))
        .routes(routes!(api_lab::show_backtest))
        .routes(routes!(api_lab::start_replay))
        .routes(routes!(api_operator::rollback_strategy))
        .routes(routes!(api_operator::rollback_validator))
        .routes(routes!(api_operator::remove_validator))
        .routes(routes!(api_operator::order_validators))
        .routes(routes!(api_backup::backup))
        .routes(routes!(api_clore::get_gigaspot))
        .routes(routes!(api_clore::snapshot))
        .routes(routes!(api_clore::create_orders))
        .routes(routes!(api_clore::edit_orders))
        .routes(routes!(api_clore::cancel_orders))
        .routes(routes!(api_clore::my_orders))
        .routes(routes!(api_clore::wallets))
}

/// The OpenAPI document of every route.
pub fn document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The document as pretty JSON with a final newline (what `docs/openapi.json` holds).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .expect("the OpenAPI document serialises");
        text.push('\n');
        text
    })
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "service",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value))
)]
pub async fn openapi_json() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}
