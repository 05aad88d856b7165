//! Operator endpoints: market parameters, the GPU clock table, plugins (upload, list,
//! activate, roll back, order validators), and API keys for every account.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use gigaspot_market::account::Role;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::params::MarketParams;
use gigaspot_market::verdict::component_digest;
use gigaspot_market::{Strategy, Validator};
use gigaspot_plugin_runtime::PluginKind;
use gigaspot_store::{ActivePlugins, PluginState, PluginVersionRecord, StoreError};
use serde::{Deserialize, Serialize};

use sha2::Digest;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::{Caller, generate_key, key_hash};
use crate::plugin_wire::{
    ActivePluginsView, ActiveStrategyView, ActiveValidatorView, NewKeyReply, PluginsOverview,
    RemovedVersion, ValidatorsView,
};

/// Largest plugin upload, in bytes: a Python plugin (componentize-py bundles the
/// interpreter) is about 17.5 MiB.
pub const MAX_PLUGIN_BYTES: usize = 32 << 20;

/// `GET /api/v1/params`.
#[utoipa::path(
    get,
    path = "/api/v1/params",
    tag = "operator",
    responses((status = 200, description = "The market parameters", body = gigaspot_market::params::MarketParams), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn params(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<MarketParams>, ApiError> {
    Ok(Json(state.store(|s| s.params()).await?))
}

/// `PUT /api/v1/params` (operator).
#[utoipa::path(
    put,
    path = "/api/v1/params",
    tag = "operator",
    request_body = gigaspot_market::params::MarketParams,
    responses((status = 200, description = "The parameters as set", body = gigaspot_market::params::MarketParams), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_params(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(params): JsonBody<MarketParams>,
) -> Result<Json<MarketParams>, ApiError> {
    caller.require(Role::Operator, "set market parameters")?;
    let stored = params.clone();
    state.store(move |s| s.set_params(&stored)).await?;
    Ok(Json(params))
}

/// `GET /api/v1/gpu-table`.
#[utoipa::path(
    get,
    path = "/api/v1/gpu-table",
    tag = "operator",
    responses((status = 200, description = "Clock ranges per GPU model", body = gigaspot_market::gpu_ranges::GpuRangeTable), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn gpu_table(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<GpuRangeTable>, ApiError> {
    Ok(Json(state.store(|s| s.gpu_table()).await?))
}

/// `PUT /api/v1/gpu-table` (operator).
#[utoipa::path(
    put,
    path = "/api/v1/gpu-table",
    tag = "operator",
    request_body = gigaspot_market::gpu_ranges::GpuRangeTable,
    responses((status = 200, description = "The table as set", body = gigaspot_market::gpu_ranges::GpuRangeTable), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_gpu_table(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(table): JsonBody<GpuRangeTable>,
) -> Result<Json<GpuRangeTable>, ApiError> {
    caller.require(Role::Operator, "edit the GPU table")?;
    table
        .validate()
        .map_err(|(field, reason)| ApiError::new(StatusCode::BAD_REQUEST, Some(&field), reason))?;
    let stored = table.clone();
    state.store(move |s| s.set_gpu_table(&stored)).await?;
    Ok(Json(table))
}

/// Query of a plugin upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The configuration string handed to the plugin's `configure`.
    #[serde(default)]
    pub config: String,
}

/// A stored plugin version and how it is doing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// `strategy` or `validator`.
    pub kind: String,
    /// Its configuration string.
    pub config: String,
    /// Unix seconds.
    pub installed_at: u64,
    /// Role in the registry (`strategy`, `previous-strategy`, `validator`, ...), if installed.
    pub role: Option<String>,
    /// Calls made to it.
    pub calls: u64,
    /// Faults by kind.
    pub faults: gigaspot_plugin_runtime::FaultCounts,
    /// Skipped after repeated faults.
    pub quarantined: bool,
    /// Its latest fault in words (for a panic, the plugin's own message), if any.
    pub last_fault: Option<String>,
}

/// `POST /api/v1/plugins?config=...` (operator), body: the component (`application/wasm`).
/// Loads it (import audit, compile, configure) and stores it; activation is separate.
#[utoipa::path(
    post,
    path = "/api/v1/plugins",
    tag = "plugins",
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream")), description = "A WebAssembly component of the plugin contract (any supported version, wit/since_vX.Y.Z/)"), params(("config" = Option<String>, Query, description = "The configuration handed to the plugin's configure")),
    responses((status = 201, description = "The version, installed (not active)", body = crate::api_operator::PluginView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    caller.require(Role::Operator, "upload plugins")?;
    let runtime = state.runtime.clone();
    let wasm = body.to_vec();
    let config = query.config;
    let installed_at = state.now();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)));
    let cache_runtime = state.runtime.clone();
    crate::deadline::work_started();
    let loaded = tokio::task::spawn_blocking(move || -> Result<PluginVersionRecord, ApiError> {
        let refused = |e: gigaspot_plugin_runtime::LoadError| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("plugin"),
                e.to_string(),
            )
        };
        let (kind, plugin_ref) = match runtime.kind_of(&wasm).map_err(refused)? {
            PluginKind::Strategy => (
                "strategy",
                runtime
                    .load_strategy(&wasm, &config)
                    .map_err(refused)?
                    .plugin_ref()
                    .clone(),
            ),
            PluginKind::Validator => (
                "validator",
                runtime
                    .load_validator(&wasm, &config)
                    .map_err(refused)?
                    .plugin_ref()
                    .clone(),
            ),
        };
        Ok(PluginVersionRecord {
            digest: plugin_ref.digest,
            name: plugin_ref.name,
            version: plugin_ref.version,
            kind: kind.into(),
            config,
            installed_at,
            wasm,
        })
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "the upload was interrupted",
        )
    })?;
    let record = match loaded {
        Ok(record) => record,
        Err(refusal) => {
            // A refused component leaves nothing behind unless a stored version owns it.
            let wanted = digest.clone();
            let owned = state
                .store(move |s| {
                    Ok(s.plugin_versions()?
                        .iter()
                        .any(|r| component_digest(&r.digest) == wanted))
                })
                .await?;
            if !owned && let Some(hex) = digest.strip_prefix("sha256:") {
                cache_runtime.cache().forget(hex);
            }
            return Err(refusal);
        }
    };
    let stored = record.clone();
    state.store(move |s| s.put_plugin_version(&stored)).await?;
    Ok((StatusCode::CREATED, Json(view(&record, &state))))
}

fn view(record: &PluginVersionRecord, state: &AppState) -> PluginView {
    let stats = state.registry.stats();
    let stat = stats.iter().find(|s| s.plugin.digest == record.digest);
    PluginView {
        digest: record.digest.clone(),
        name: record.name.clone(),
        version: record.version.clone(),
        kind: record.kind.clone(),
        config: record.config.clone(),
        installed_at: record.installed_at,
        role: stat.map(|s| s.role.to_string()),
        calls: stat.map_or(0, |s| s.calls),
        faults: stat.map_or_else(Default::default, |s| s.faults),
        quarantined: stat.is_some_and(|s| s.quarantined),
        last_fault: stat.and_then(|s| s.last_fault.clone()),
    }
}

/// `GET /api/v1/plugins` (operator): stored versions with digests and fault counts.
#[utoipa::path(
    get,
    path = "/api/v1/plugins",
    tag = "plugins",
    responses((status = 200, description = "The active strategy, the fallback chain, the validators and every installed version", body = PluginsOverview), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PluginsOverview>, ApiError> {
    caller.require(Role::Operator, "list plugins")?;
    let records = state.store(|s| s.plugin_versions()).await?;
    let active = state.registry.active_strategy();
    Ok(Json(PluginsOverview {
        active_strategy: active,
        answering_strategy: state.registry.answering_strategy(),
        strategy_chain: crate::plugin_wire::chain(&state.registry),
        validators: state.registry.validators(),
        versions: records.iter().map(|r| view(r, &state)).collect(),
    }))
}

/// `POST /api/v1/plugins/{digest}/activate` (operator): a stored strategy becomes active
/// (the active one becomes the previous); a stored validator is installed (replacing the
/// validator of the same name, kept as its previous version).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{digest}/activate",
    tag = "plugins",
    params(("digest" = String, Path, description = "The version id")),
    responses((status = 200, description = "The version is active from the next boundary", body = ActivePluginsView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
) -> Result<Json<ActivePluginsView>, ApiError> {
    caller.require(Role::Operator, "activate plugins")?;
    // The built-in strategy is a version like any other.
    if digest == state.registry.builtin().digest {
        state.registry.activate_builtin();
        tracing::info!(%digest, "the built-in strategy activated");
        remember_active(&state).await?;
        return Ok(Json(ActivePluginsView::of(&state.registry)));
    }
    let wanted = digest.clone();
    let record = state
        .store(move |s| {
            Ok(s.plugin_versions()?
                .into_iter()
                .find(|r| r.digest == wanted))
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                None,
                format!("no stored plugin {digest}"),
            )
        })?;
    let runtime = state.runtime.clone();
    let registry = state.registry.clone();
    crate::deadline::work_started();
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let refused = |e: gigaspot_plugin_runtime::LoadError| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("plugin"),
                e.to_string(),
            )
        };
        if record.kind == "strategy" {
            let plugin: Arc<dyn Strategy> = Arc::new(
                runtime
                    .load_strategy(&record.wasm, &record.config)
                    .map_err(refused)?,
            );
            registry.activate_strategy(plugin);
        } else {
            let plugin: Arc<dyn Validator> = Arc::new(
                runtime
                    .load_validator(&record.wasm, &record.config)
                    .map_err(refused)?,
            );
            registry.install_validator(plugin);
        }
        Ok(())
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "activation was interrupted",
        )
    })??;
    remember_active(&state).await?;
    Ok(Json(ActivePluginsView::of(&state.registry)))
}

/// Records the registry's state (active, previous and quarantined versions) so that a
/// restart resumes exactly it.
async fn remember_active(state: &AppState) -> Result<(), ApiError> {
    let active = active_plugins(&state.registry);
    let plugins = plugin_state(&state.registry);
    state
        .store(move |s| {
            s.set_active_plugins(&active)?;
            s.set_plugin_state(&plugins)
        })
        .await
}

/// The registry's state as the store keeps it.
pub fn plugin_state(registry: &gigaspot_plugin_runtime::PluginRegistry) -> PluginState {
    let r = registry.state();
    PluginState {
        strategy: r.strategy,
        previous_strategy: r.previous_strategy,
        validators: r.validators,
        quarantined: r.quarantined,
    }
}

/// The registry's active versions by digest (the built-in fallback is no stored version).
pub fn active_plugins(registry: &gigaspot_plugin_runtime::PluginRegistry) -> ActivePlugins {
    let strategy = registry.active_strategy().digest;
    ActivePlugins {
        strategy: strategy.starts_with("sha256:").then_some(strategy),
        validators: registry
            .validators()
            .into_iter()
            .map(|v| v.digest)
            .collect(),
    }
}

/// `POST /api/v1/plugins/strategy/rollback` (operator).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/strategy/rollback",
    tag = "plugins",
    responses((status = 200, description = "The previous strategy is active again", body = ActiveStrategyView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn rollback_strategy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ActiveStrategyView>, ApiError> {
    caller.require(Role::Operator, "roll back plugins")?;
    let now_active = state
        .registry
        .rollback_strategy()
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, None, e.to_string()))?;
    remember_active(&state).await?;
    Ok(Json(ActiveStrategyView {
        active_strategy: now_active,
    }))
}

/// `POST /api/v1/plugins/validators/{name}/rollback` (operator).
#[utoipa::path(
    post,
    path = "/api/v1/plugins/validators/{name}/rollback",
    tag = "plugins",
    params(("name" = String, Path, description = "The validator's name")),
    responses((status = 200, description = "The validator's previous version is active again", body = ActiveValidatorView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn rollback_validator(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ActiveValidatorView>, ApiError> {
    caller.require(Role::Operator, "roll back plugins")?;
    let now_active = state
        .registry
        .rollback_validator(&name)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, None, e.to_string()))?;
    remember_active(&state).await?;
    Ok(Json(ActiveValidatorView {
        validator: now_active,
    }))
}

/// `DELETE /api/v1/plugins/{digest}` (operator): removes a stored version that is not in
/// use (active or a roll-back target: 409), and its compiled artefact unless another
/// stored version shares the component.
#[utoipa::path(
    delete,
    path = "/api/v1/plugins/{digest}",
    tag = "plugins",
    params(("digest" = String, Path, description = "The version id")),
    responses((status = 200, description = "The version was removed", body = RemovedVersion), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
) -> Result<Json<RemovedVersion>, ApiError> {
    caller.require(Role::Operator, "remove plugin versions")?;
    let registry = state.registry.state();
    let in_use = registry.strategy.as_ref() == Some(&digest)
        || registry.previous_strategy.as_ref() == Some(&digest)
        || registry
            .validators
            .iter()
            .any(|(a, p)| *a == digest || p.as_ref() == Some(&digest));
    if in_use {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("digest"),
            format!("{digest} is active or a roll-back target; activate or roll back first"),
        ));
    }
    let wanted = digest.clone();
    let (removed, shared) = state
        .store(move |s| {
            let removed = s.remove_plugin_version(&wanted)?;
            let component = component_digest(&wanted).to_owned();
            let shared = s
                .plugin_versions()?
                .iter()
                .any(|r| component_digest(&r.digest) == component);
            Ok((removed, shared))
        })
        .await?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no stored plugin {digest}"),
        ));
    }
    let mut artefacts = 0;
    if !shared && let Some(hex) = component_digest(&digest).strip_prefix("sha256:") {
        artefacts = state.runtime.cache().forget(hex);
    }
    tracing::info!(%digest, artefacts, "plugin version removed");
    Ok(Json(RemovedVersion {
        removed: digest,
        artefacts_removed: artefacts,
    }))
}

/// `DELETE /api/v1/plugins/validators/{name}` (operator): uninstalls the validator (and
/// its previous version); its stored versions stay and can be activated again.
#[utoipa::path(
    delete,
    path = "/api/v1/plugins/validators/{name}",
    tag = "plugins",
    params(("name" = String, Path, description = "The validator's name")),
    responses((status = 200, description = "The validator no longer runs", body = ValidatorsView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_validator(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ValidatorsView>, ApiError> {
    caller.require(Role::Operator, "remove validators")?;
    state
        .registry
        .remove_validator(&name)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, Some("name"), e.to_string()))?;
    tracing::info!(validator = %name, "validator uninstalled");
    remember_active(&state).await?;
    Ok(Json(ValidatorsView {
        validators: state.registry.validators(),
    }))
}

/// Body of `PUT /api/v1/plugins/validators/order`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidatorOrder {
    /// Every installed validator's name, in the order they should run.
    pub names: Vec<String>,
}

/// `PUT /api/v1/plugins/validators/order` (operator).
#[utoipa::path(
    put,
    path = "/api/v1/plugins/validators/order",
    tag = "plugins",
    request_body = crate::api_operator::ValidatorOrder,
    responses((status = 200, description = "The validators in their new order", body = ValidatorsView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn order_validators(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(order): JsonBody<ValidatorOrder>,
) -> Result<Json<ValidatorsView>, ApiError> {
    caller.require(Role::Operator, "order validators")?;
    let names: Vec<&str> = order.names.iter().map(String::as_str).collect();
    state
        .registry
        .order_validators(&names)
        .map_err(|e| ApiError::bad_field("names", e.to_string()))?;
    remember_active(&state).await?;
    Ok(Json(ValidatorsView {
        validators: state.registry.validators(),
    }))
}

/// `POST /api/v1/keys`: a new API key for the caller's account, shown once.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "accounts",
    responses((status = 201, description = "A new API key for the caller (shown once)", body = NewKeyReply), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn new_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<NewKeyReply>), ApiError> {
    let key = generate_key();
    let hash = key_hash(&key);
    let account = caller.0.id;
    state.store(move |s| s.add_api_key(account, hash)).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyReply {
            account,
            api_key: key,
        }),
    ))
}

/// `DELETE /api/v1/keys/current`: revokes the key this request is made with.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/current",
    tag = "accounts",
    responses((status = 204, description = "The key used for this request is revoked"), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn revoke_current(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthenticated)?;
    let hash = key_hash(key.trim());
    let removed = state.store(move |s| s.remove_api_key(&hash)).await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::from(StoreError::NotFound { what: "key", id: 0 }))
    }
}
