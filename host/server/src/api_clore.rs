//! The Clore GigaSPOT-compatible surface under `/v1` (shared/docs/clore-compat.md): bots
//! written for Clore's API work by changing only the base URL.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gigaspot_market::account::Account;
use gigaspot_market::admission::{is_oc_refusal, is_too_low};
use gigaspot_market::bid::{BidChange, BidState, BidTerms, Lifetime, OcRequest};
use gigaspot_market::ledger::Party;
use gigaspot_market::money::Amount;
use gigaspot_store::StoreError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::key_hash;
use crate::clore_wire::{
    CancelOrdersReply, CloreOrder, CreateOrdersReply, EditOrdersReply, GetGigaspotReply,
    MyOrdersReply, Wallet, WalletsReply,
};
use crate::wire::{Clore, OcEntry};

/// The only currency, as Clore names it.
const CURRENCY: &str = "CLORE-Blockchain";
/// Most order ids one cancel call may carry.
const MAX_CANCEL_IDS: usize = 64;
/// Lifetime of orders created through this surface: the longest allowed.
const ORDER_LIFETIME_S: u64 = gigaspot_market::params::MAX_BID_LIFETIME_S;

/// A `/v1` answer: HTTP status and a JSON body that always carries `code`.
pub struct CloreReply(StatusCode, Value, Option<u64>);

impl IntoResponse for CloreReply {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        if let Some(seconds) = self.2 {
            // An integer number of seconds: clients call int() on it.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

fn reply(body: impl serde::Serialize) -> CloreReply {
    // The typed bodies of clore_wire.rs always serialise.
    CloreReply(
        StatusCode::OK,
        serde_json::to_value(body).unwrap_or(Value::Null),
        None,
    )
}

fn code(status: StatusCode, code: u8, error: Option<String>) -> CloreReply {
    let mut body = json!({"code": code});
    if let Some(error) = error {
        body["error"] = json!(error);
    }
    CloreReply(status, body, None)
}

fn invalid(error: impl Into<String>) -> CloreReply {
    code(StatusCode::BAD_REQUEST, 2, Some(error.into()))
}

fn database(_: crate::api_error::ApiError) -> CloreReply {
    code(StatusCode::INTERNAL_SERVER_ERROR, 1, None)
}

/// The caller of a `/v1` request: header `auth: <api key>`; 401 `{"code": 3}` otherwise.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Account, CloreReply> {
    let unauthorized = || code(StatusCode::UNAUTHORIZED, 3, None);
    let key = headers
        .get("auth")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauthorized)?;
    let hash = key_hash(key.trim());
    if let Err(retry_after) = state.limiter.check(hash) {
        return Err(rate_limited(retry_after));
    }
    // Keys and accounts are in the store's in-memory working set: looked up inline.
    let account = state
        .store
        .account_by_key(&hash)
        .and_then(|id| id.map(|id| state.store.account(id)).transpose())
        .map_err(|e| database(e.into()))?
        .flatten();
    account.ok_or_else(unauthorized)
}

/// 429 `{"code": 5}` with an integer `Retry-After` header.
pub fn rate_limited(retry_after: u64) -> CloreReply {
    CloreReply(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"code": 5}),
        Some(retry_after),
    )
}

/// A refusal on `/v1`: Clore's numeric code (clore-compat.md), e.g. 3 for a bad `auth`
/// header, 5 for a rate limit.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CloreCode {
    /// The code.
    pub code: u32,
}

/// `GET /v1/get_gigaspot`.
#[utoipa::path(
    get,
    path = "/v1/get_gigaspot",
    tag = "clore",
    responses((status = 200, description = "The caller's id, the snapshot URL, the CLORE price and fees", body = crate::clore_wire::GetGigaspotReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn get_gigaspot(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    let now = state.now();
    let snapshots = state.snapshots.clone();
    // The common case, a snapshot still current, never leaves the async worker.
    let ts = match snapshots.fresh(state.store.generation(), now) {
        Some(ts) => ts,
        None => state
            .store(move |s| snapshots.current(s, now))
            .await
            .map_err(database)?,
    };
    let base = state.public_url(&headers);
    // In the store's in-memory working set: read inline, like the caller's key.
    let clore_usd = state
        .store
        .params()
        .map_err(|e| database(e.into()))?
        .clore_usd;
    Ok(reply(GetGigaspotReply {
        code: 0,
        my_user_id: account.id,
        v1_snapshot_url: format!("{base}/v1/snapshots/gigaspot_{ts}.json"),
        clore_price: clore_usd,
        creation_fees: BTreeMap::from([(CURRENCY.to_owned(), 0.0)]),
    }))
}

/// `GET /v1/snapshots/{file}`: a published snapshot, without authentication; immutable.
#[utoipa::path(
    get,
    path = "/v1/snapshots/{file}",
    tag = "clore",
    params(("file" = String, Path, description = "gigaspot_<ts>.json")),
    responses((status = 200, description = "A published market snapshot (immutable): each machine by id with its bids", body = BTreeMap<String, serde_json::Value>), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode))
)]
pub async fn snapshot(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let ts = file
        .strip_prefix("gigaspot_")
        .and_then(|f| f.strip_suffix(".json"))
        .and_then(|t| t.parse::<u64>().ok());
    let mut found = ts.and_then(|ts| state.snapshots.get(ts));
    // Published by another replica of a shared database: the same bytes from there.
    if found.is_none()
        && let Some(ts) = ts
        && let Ok(Some(body)) = state.store(move |s| s.published_snapshot(ts)).await
    {
        found = Some(body.into());
    }
    match found {
        Some(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => code(
            StatusCode::NOT_FOUND,
            4,
            Some("no such snapshot (old ones expire)".into()),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct OrderItem {
    currency: Option<String>,
    image: Option<String>,
    price: Option<Clore>,
    oc: Option<Vec<OcEntry>>,
    env: Option<BTreeMap<String, String>>,
}

/// Parses a JSON array of objects, or answers `code: 2`.
fn array_of_objects(body: &Bytes) -> Result<Vec<Value>, CloreReply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => Ok(items),
        Ok(_) => Err(invalid("the body must be a JSON array of objects")),
        Err(e) => Err(invalid(format!("malformed JSON: {e}"))),
    }
}

/// The id under `key` of every item, or `code: 2` naming the first item without one: an
/// item that names no machine or order cannot be reported in the id lists, so the whole
/// request is refused before anything is placed (nothing is silently dropped).
fn item_ids(items: &[Value], key: &str) -> Result<Vec<u64>, CloreReply> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.get(key) {
            Some(v) => v.as_u64().ok_or_else(|| {
                invalid(format!(
                    "item {i}: {key} must be an unsigned integer, got {}",
                    shorten(&v.to_string())
                ))
            }),
            None => Err(invalid(format!("item {i}: {key} is missing"))),
        })
        .collect()
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// `POST /v1/create_gigaspot_orders`: each order succeeds or fails on its own.
#[utoipa::path(
    post,
    path = "/v1/create_gigaspot_orders",
    tag = "clore",
    request_body(content = Vec<crate::clore_wire::CloreNewOrder>, description = "Orders, 1 to 64"),
    responses((status = 200, description = "Which servers failed and why", body = crate::clore_wire::CreateOrdersReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn create_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    let items = array_of_objects(&body)?;
    let servers = item_ids(&items, "renting_server")?;
    let now = state.now();
    let aliases = &state.config.clore.image_aliases;
    // Every readable order joins the store's batched intake at once, in request order
    // (one batch and one flush for the request, not one per order); each succeeds or
    // fails on its own. From here on the deadline no longer applies (`crate::deadline`).
    crate::deadline::work_started();
    let runtime = tokio::runtime::Handle::current();
    let submitted: Vec<_> = items
        .into_iter()
        .zip(servers)
        .map(|(raw, server)| {
            let terms = match serde_json::from_value::<OrderItem>(raw.clone()) {
                Ok(item) => order_terms(server, item, aliases),
                // The settings are what failed to read, or something else.
                Err(_)
                    if raw.get("oc").is_some_and(|oc| {
                        serde_json::from_value::<Vec<OcEntry>>(oc.clone()).is_err()
                    }) =>
                {
                    Err(Placed::BadOc)
                }
                Err(_) => Err(Placed::Failed),
            };
            let placing = terms.map(|terms| {
                let runtime = runtime.clone();
                state.store.clone().place_bid_async(
                    account.id,
                    terms,
                    now,
                    None,
                    Box::new(move |turn| {
                        runtime.spawn_blocking(turn);
                    }),
                )
            });
            (server, placing)
        })
        .collect();
    let (mut failed_oc, mut failed_rent, mut too_low) = (Vec::new(), Vec::new(), Vec::new());
    for (server, placing) in submitted {
        let outcome = match placing {
            Ok(placing) => outcome(placing.await),
            Err(unreadable) => unreadable,
        };
        match outcome {
            Placed::Ok => {}
            Placed::BadOc => {
                failed_oc.push(server);
                failed_rent.push(server);
            }
            Placed::TooLow => {
                too_low.push(server);
                failed_rent.push(server);
            }
            Placed::Failed => failed_rent.push(server),
        }
    }
    let lists = (failed_oc, failed_rent, too_low);
    Ok(reply(CreateOrdersReply {
        status: "ok".into(),
        failed_to_oc_servers: lists.0,
        failed_to_rent_servers: lists.1,
        too_low_bids_servers: lists.2,
        code: 0,
    }))
}

enum Placed {
    Ok,
    BadOc,
    TooLow,
    Failed,
}

/// The terms of one order, placed through the same store call (and so the same market
/// rules) as the native API: admission, the bid's own energy floor, an available machine,
/// one interval of funds.
fn order_terms(
    server: u64,
    item: OrderItem,
    aliases: &BTreeMap<String, String>,
) -> Result<BidTerms, Placed> {
    if item.currency.as_deref().is_some_and(|c| c != CURRENCY) {
        return Err(Placed::Failed);
    }
    let Some(oc) = item.oc else {
        return Err(Placed::BadOc);
    };
    let (Some(price), Some(image)) = (item.price, item.image) else {
        return Err(Placed::Failed);
    };
    let image = aliases.get(&image).cloned().unwrap_or(image);
    Ok(BidTerms {
        machine: server,
        price_per_day: price.0,
        image,
        env: item.env.unwrap_or_default(),
        oc: oc.into_iter().map(OcRequest::from).collect(),
        // Clore's orders carry no lifetime: the longest, clamped to the machine's maximum.
        lifetime: Lifetime::Default(ORDER_LIFETIME_S),
    })
}

/// What the store's answer to one order means on `/v1`.
fn outcome(placed: Result<gigaspot_store::PlacedBid, StoreError>) -> Placed {
    match placed {
        Ok(_) => Placed::Ok,
        Err(StoreError::Refused(r)) => {
            tracing::info!(field = %r.field, reason = %r, "admission refused (/v1 order)");
            if is_oc_refusal(&r) {
                Placed::BadOc
            } else if is_too_low(&r) {
                Placed::TooLow
            } else {
                Placed::Failed
            }
        }
        Err(_) => Placed::Failed,
    }
}

#[derive(Deserialize)]
struct EditItem {
    price: Clore,
    oc: Option<Vec<OcEntry>>,
}

/// `POST /v1/edit_gigaspot_orders`.
#[utoipa::path(
    post,
    path = "/v1/edit_gigaspot_orders",
    tag = "clore",
    request_body(content = Vec<crate::clore_wire::CloreEdit>, description = "Edits"),
    responses((status = 200, description = "The outcome per order", body = crate::clore_wire::EditOrdersReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn edit_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    let items = array_of_objects(&body)?;
    let ids = item_ids(&items, "order_id")?;
    let now = state.now();
    let lists = state
        .store(move |s| {
            let (mut failed, mut ok, mut low) = (Vec::new(), Vec::new(), Vec::new());
            for (raw, id) in items.into_iter().zip(ids) {
                let Ok(item) = serde_json::from_value::<EditItem>(raw) else {
                    failed.push(id);
                    continue;
                };
                let outcome = s.bid(id).ok().flatten().map(|bid| {
                    let oc: Vec<OcRequest> = match item.oc {
                        Some(oc) => oc.into_iter().map(OcRequest::from).collect(),
                        None => bid.oc.iter().copied().map(OcRequest::from).collect(),
                    };
                    let change = BidChange {
                        price_per_day: item.price.0,
                        oc,
                        image: None,
                        env: None,
                    };
                    s.edit_bid(account.id, id, &change, now)
                });
                match outcome {
                    Some(Ok(_)) => ok.push(id),
                    Some(Err(StoreError::Refused(r))) if is_too_low(&r) => {
                        low.push(id);
                        failed.push(id);
                    }
                    _ => failed.push(id),
                }
            }
            Ok((failed, ok, low))
        })
        .await
        .map_err(database)?;
    Ok(reply(EditOrdersReply {
        failed_to_update_ids: lists.0,
        success_to_update_ids: lists.1,
        too_low_bid_ids: lists.2,
        code: 0,
    }))
}

/// `POST /v1/cancel_orders`: `{"order_ids": [...]}`, 1 to 64 ids.
#[utoipa::path(
    post,
    path = "/v1/cancel_orders",
    tag = "clore",
    request_body(content = crate::clore_wire::CloreCancel, description = "Order ids to cancel"),
    responses((status = 200, description = "The outcome per order", body = crate::clore_wire::CancelOrdersReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn cancel_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cancel {
        order_ids: Vec<u64>,
    }
    let request: Cancel = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("expected {{\"order_ids\": [ints]}}: {e}")))?;
    if request.order_ids.is_empty() || request.order_ids.len() > MAX_CANCEL_IDS {
        return Err(invalid(format!(
            "order_ids must hold 1 to {MAX_CANCEL_IDS} ids"
        )));
    }
    let now = state.now();
    let failed = state
        .store(move |s| {
            Ok(request
                .order_ids
                .into_iter()
                .filter(|id| s.cancel_bid(account.id, *id, now).is_err())
                .collect::<Vec<u64>>())
        })
        .await
        .map_err(database)?;
    Ok(reply(CancelOrdersReply {
        failed_to_cancel: failed,
        code: 0,
    }))
}

/// `GET /v1/my_orders`: the caller's bids, under Clore's key `orders` (what Clore's own
/// clients read) with Clore's per-order fields beside ours, and again under `my_orders`
/// for readers of the first release.
#[utoipa::path(
    get,
    path = "/v1/my_orders",
    tag = "clore",
    responses((status = 200, description = "The caller's orders", body = crate::clore_wire::MyOrdersReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn my_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    let now = state.now();
    let orders = state
        .store(move |s| {
            let spend = spend_by_bid(s, account.id)?;
            let orders: Vec<CloreOrder> = s
                .bids_of(account.id)?
                .into_iter()
                .map(|b| CloreOrder {
                    id: b.id,
                    renting_server: b.machine,
                    si: b.machine,
                    kind: "spot".into(),
                    status: crate::wire::state_name(&b, now).into(),
                    price: b.price_per_day.as_clore(),
                    currency: CURRENCY.into(),
                    active: b.is_live(now),
                    expired: b.state_at(now) == BidState::Expired,
                    spend: spend.get(&b.id).copied().unwrap_or_default().as_clore(),
                    pl: b.total_power_limit_w(),
                    created_at: rfc3339(b.created_at),
                    created_at_unix: b.created_at,
                    expires_at: b.expires_at,
                    suspension: (b.state == BidState::Suspended)
                        .then(|| s.bid_failures(b.id).ok().flatten().map(|f| f.explain()))
                        .flatten(),
                    image: b.image,
                })
                .collect();
            Ok(orders)
        })
        .await
        .map_err(database)?;
    Ok(reply(MyOrdersReply {
        orders: orders.clone(),
        my_orders: orders,
        code: 0,
    }))
}

/// What `account` paid per bid (charges and fees), from its ledger index.
fn spend_by_bid(
    s: &dyn gigaspot_store::Store,
    account: u64,
) -> Result<BTreeMap<u64, Amount>, StoreError> {
    const PAGE: usize = 1_000;
    let mut spend: BTreeMap<u64, Amount> = BTreeMap::new();
    let mut before = None;
    loop {
        let page = s.account_transfers(account, before, PAGE)?;
        for (_, t) in &page {
            if t.from == Party::Account(account)
                && let Some(bid) = t.bid
            {
                let total = spend.entry(bid).or_default();
                *total = total.checked_add(t.amount).unwrap_or(*total);
            }
        }
        match page.last() {
            Some((seq, _)) if page.len() == PAGE => before = Some(*seq),
            _ => return Ok(spend),
        }
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp, e.g. `2027-01-15T08:00:00Z`.
fn rfc3339(unix: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `GET /v1/wallets`: the caller's balance.
#[utoipa::path(
    get,
    path = "/v1/wallets",
    tag = "clore",
    responses((status = 200, description = "The caller's CLORE wallet", body = crate::clore_wire::WalletsReply), (status = "4XX", description = "Refused: `{\"code\": N}` (clore-compat.md)", body = crate::api_clore::CloreCode)),
    security(("clore_auth" = []))
)]
pub async fn wallets(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<CloreReply, CloreReply> {
    let account = caller(&state, &headers).await?;
    let balance = state
        .store(move |s| s.balance(account.id))
        .await
        .map_err(database)?;
    Ok(reply(WalletsReply {
        wallets: vec![Wallet {
            name: CURRENCY.into(),
            balance: balance.as_clore(),
            deposit: String::new(),
            withdrawal_fee: 0.0,
        }],
        code: 0,
    }))
}

/// Unknown `/v1` paths: `{"code": 4}`.
pub async fn unknown() -> CloreReply {
    code(StatusCode::NOT_FOUND, 4, Some("invalid endpoint".into()))
}
