//! The GigaSPOT service: the native HTTP API under `/api/v1`, the agent heartbeat, the
//! web dashboard and the interval clock, on the market core, the store and the plugin
//! runtime.

pub mod api_accounts;
pub mod api_agent;
pub mod api_backup;
pub mod api_bids;
pub mod api_clore;
pub mod api_dashboard;
pub mod api_doc;
pub mod api_error;
pub mod api_lab;
pub mod api_machines;
pub mod api_money;
pub mod api_operator;
pub mod api_orders;
pub mod api_withdrawals;
pub mod app;
pub mod auth;
pub mod background;
pub mod backtest;
pub mod backtest_jobs;
pub mod clearing_loop;
pub mod clore_wire;
pub mod config;
pub mod dashboard;
pub mod deadline;
pub mod json_errors;
pub mod listener;
pub mod logging;
pub mod market_history;
pub mod market_prices;
pub mod metrics;
pub mod order_wire;
pub mod path_id;
pub mod plugin_versions;
pub mod plugin_wire;
pub mod query;
pub mod rate_limit;
pub mod replay;
pub mod serve;
pub mod served_time;
pub mod shadow;
pub mod snapshot;
pub mod standing_orders;
#[cfg(test)]
mod test_support;
pub mod what_wins;
pub mod wire;
