//! The typed answers of the plugin routes, the health route and key creation (what the
//! OpenAPI document describes them with).

use gigaspot_market::verdict::PluginRef;
use gigaspot_plugin_runtime::PluginRegistry;
use serde::Serialize;

use crate::api_operator::PluginView;

/// One link of the strategy fallback chain.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChainLinkView {
    /// `active`, `previous` or `built-in`.
    pub role: String,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The version id.
    pub digest: String,
    /// Whether it is skipped after too many consecutive faults.
    pub quarantined: bool,
}

/// The strategy fallback chain, first to last.
pub fn chain(registry: &PluginRegistry) -> Vec<ChainLinkView> {
    registry
        .strategy_chain()
        .into_iter()
        .map(|link| ChainLinkView {
            role: link.role.to_owned(),
            name: link.plugin.name,
            version: link.plugin.version,
            digest: link.plugin.digest,
            quarantined: link.quarantined,
        })
        .collect()
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The name of the strategy that answers now (the first of the chain not quarantined).
    pub strategy: String,
    /// Its version id.
    pub strategy_digest: String,
    /// Its version.
    pub strategy_version: String,
    /// The strategy the operator activated.
    pub active_strategy: PluginRef,
    /// The fallback chain.
    pub strategy_chain: Vec<ChainLinkView>,
}

impl Health {
    /// The health of a service whose plugins are `registry`'s.
    pub fn of(registry: &PluginRegistry) -> Self {
        let answering = registry.answering_strategy();
        Health {
            status: "ok".into(),
            strategy: answering.name,
            strategy_digest: answering.digest,
            strategy_version: answering.version,
            active_strategy: registry.active_strategy(),
            strategy_chain: chain(registry),
        }
    }
}

/// `GET /api/v1/plugins`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PluginsOverview {
    /// The strategy the operator activated.
    pub active_strategy: PluginRef,
    /// The strategy that answers now.
    pub answering_strategy: PluginRef,
    /// The fallback chain.
    pub strategy_chain: Vec<ChainLinkView>,
    /// The installed validators, in running order.
    pub validators: Vec<PluginRef>,
    /// Every stored version.
    pub versions: Vec<PluginView>,
}

/// What runs after an activation: the active strategy and the validators.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActivePluginsView {
    /// The active strategy.
    pub active_strategy: PluginRef,
    /// The installed validators, in running order.
    pub validators: Vec<PluginRef>,
}

impl ActivePluginsView {
    /// What `registry` runs now.
    pub fn of(registry: &PluginRegistry) -> Self {
        ActivePluginsView {
            active_strategy: registry.active_strategy(),
            validators: registry.validators(),
        }
    }
}

/// The strategy active after a roll-back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveStrategyView {
    /// The active strategy.
    pub active_strategy: PluginRef,
}

/// The validator version active after a roll-back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveValidatorView {
    /// The validator now installed under the name.
    pub validator: PluginRef,
}

/// The installed validators.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValidatorsView {
    /// In running order.
    pub validators: Vec<PluginRef>,
}

/// A removed version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RemovedVersion {
    /// Its version id.
    pub removed: String,
    /// Compiled artefacts deleted with it (0 when another version shares the component).
    pub artefacts_removed: usize,
}

/// `POST /api/v1/keys`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewKeyReply {
    /// The caller's account.
    pub account: u64,
    /// The new key, shown once.
    pub api_key: String,
}
