//! `GET /api/v1/market/prices`: the clearing price per kW of each GPU model, interval by
//! interval (min, median, max, volume), as JSON or CSV: what clients look at before
//! bidding. Each tick records them as it clears (`Store::market_prices`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api_error::ApiError;
use crate::app::AppState;

/// The most intervals one request may ask for.
const MAX_INTERVALS: usize = 10_080;

/// One model's clearing prices in one interval.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PricePoint {
    /// Interval number.
    pub interval: u64,
    /// Unix seconds at its start.
    pub at: u64,
    /// The GPU model.
    pub model: String,
    /// Lowest winning price, CLORE per day per kW of power limit.
    pub min: f64,
    /// Median winning price per kW.
    pub median: f64,
    /// Highest winning price per kW.
    pub max: f64,
    /// Machines with a winner that have this model.
    pub machines: u32,
    /// Their GPUs of this model.
    pub gpus: u32,
    /// kW of power limit sold on them.
    pub kw: f64,
}

/// The answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MarketPrices {
    /// The models that cleared in the window, by name.
    pub models: Vec<String>,
    /// Oldest first, then by model.
    pub points: Vec<PricePoint>,
}

/// `GET /api/v1/market/prices?model=…&limit=N&format=json|csv` (anyone): the clearing
/// prices per kW of the last `limit` intervals (default 60, up to 10,080), of one GPU
/// model or of every model.
#[utoipa::path(
    get,
    path = "/api/v1/market/prices",
    tag = "market",
    params(
        ("model" = Option<String>, Query, description = "Only this GPU model (as NVML names it, e.g. `NVIDIA GeForce RTX 4090`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10080, description = "Intervals (default 60, up to 10080)"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`")
    ),
    responses((status = 200, description = "Clearing prices per kW per model and interval (JSON, or CSV with `format=csv`)", body = MarketPrices), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn market_prices(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = crate::query::limit(&query, 60, MAX_INTERVALS)?;
    let csv = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("format"),
                format!("{other:?} is neither json nor csv"),
            ));
        }
    };
    let model = query.get("model").cloned();
    let now = state.now();
    let prices = state
        .store(move |s| {
            let current = s.interval_clock()?.interval_at(now);
            s.market_prices(current.saturating_sub(limit as u64 - 1), current)
        })
        .await?;
    let mut models = std::collections::BTreeSet::new();
    let points: Vec<PricePoint> = prices
        .into_iter()
        .flat_map(|p| {
            let (interval, at) = (p.interval, p.start);
            p.models.into_iter().map(move |m| PricePoint {
                interval,
                at,
                model: m.model,
                min: m.min,
                median: m.median,
                max: m.max,
                machines: m.machines,
                gpus: m.gpus,
                kw: m.kw,
            })
        })
        .filter(|p| {
            models.insert(p.model.clone());
            model.as_ref().is_none_or(|m| *m == p.model)
        })
        .collect();
    if csv {
        let mut body = String::from("interval,at,model,min,median,max,machines,gpus,kw\n");
        for p in &points {
            body.push_str(&format!(
                "{},{},\"{}\",{},{},{},{},{},{}\n",
                p.interval,
                p.at,
                p.model.replace('"', "\"\""),
                p.min,
                p.median,
                p.max,
                p.machines,
                p.gpus,
                p.kw
            ));
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"market-prices.csv\"",
                ),
            ],
            body,
        )
            .into_response());
    }
    Ok(Json(MarketPrices {
        models: models.into_iter().collect(),
        points,
    })
    .into_response())
}
