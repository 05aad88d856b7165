//! Standing orders: create, list, show, edit, cancel (the client's own). The bidding itself
//! runs at every boundary ([`crate::standing_orders`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gigaspot_market::account::Role;
use gigaspot_market::standing_order::{OrderState, StandingOrder};
use gigaspot_store::{Store, StoreError};

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::order_wire::{HeldView, NewOrder, OrderUpdate, OrderView};
use crate::path_id::PathId;

/// `POST /api/v1/orders`: a client's standing order; the market bids for it from the next
/// boundary on.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    request_body = crate::order_wire::NewOrder,
    responses((status = 201, description = "The order", body = crate::order_wire::OrderView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewOrder>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    caller.require(Role::Client, "place standing orders")?;
    let spec = request.spec()?;
    let owner = caller.0.id;
    let now = state.now();
    let view = state
        .store(move |s| {
            let order = s.create_order(owner, &spec, now)?;
            view(s, &order)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/v1/orders`: the caller's standing orders.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    responses((status = 200, description = "The caller's orders", body = Vec<crate::order_wire::OrderView>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mine(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let owner = caller.0.id;
    let views = state
        .store(move |s| {
            s.orders(Some(owner))?
                .iter()
                .map(|o| view(s, o))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(views))
}

/// `GET /api/v1/orders/{id}`: the machines held, the bids and their prices, what was
/// spent, and why it holds fewer machines than asked.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = u64, Path, description = "The order's id")),
    responses((status = 200, description = "The order", body = crate::order_wire::OrderView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<OrderView>, ApiError> {
    let owner = caller.0.id;
    let view = state.store(move |s| view(s, &own(s, owner, id)?)).await?;
    Ok(Json(view))
}

/// `PATCH /api/v1/orders/{id}`: changes the count, power or limits; a paused order is
/// active again. The new bids follow at the next boundary.
#[utoipa::path(
    patch,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    request_body = crate::order_wire::OrderUpdate, params(("id" = u64, Path, description = "The order's id")),
    responses((status = 200, description = "The order as changed", body = crate::order_wire::OrderView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(update): JsonBody<OrderUpdate>,
) -> Result<Json<OrderView>, ApiError> {
    let owner = caller.0.id;
    update.check()?;
    let view = state
        .store(move |s| {
            own(s, owner, id)?;
            let order = s.modify_order(id, &mut |o| {
                match o.state {
                    OrderState::Active | OrderState::Paused => {}
                    other => {
                        return Err(StoreError::Invalid {
                            field: "id",
                            reason: format!("the order is {other:?} and cannot change")
                                .to_lowercase(),
                        });
                    }
                }
                update
                    .apply(&mut o.spec)
                    .map_err(|e| StoreError::InvalidField {
                        field: e.field.unwrap_or_else(|| "order".into()),
                        reason: e.reason,
                    })?;
                o.spec.check().map_err(|r| StoreError::InvalidField {
                    field: r.field,
                    reason: r.reason,
                })?;
                if o.state == OrderState::Paused {
                    o.state = OrderState::Active;
                    o.note = None;
                }
                Ok(())
            })?;
            view(s, &order)
        })
        .await?;
    Ok(Json(view))
}

/// `DELETE /api/v1/orders/{id}`: cancels the order and every bid it holds.
#[utoipa::path(
    delete,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = u64, Path, description = "The order's id")),
    responses((status = 200, description = "The order, cancelled", body = crate::order_wire::OrderView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<OrderView>, ApiError> {
    let owner = caller.0.id;
    let now = state.now();
    let view = state
        .store(move |s| {
            own(s, owner, id)?;
            let mut held = Vec::new();
            let order = s.modify_order(id, &mut |o| {
                if matches!(o.state, OrderState::Cancelled | OrderState::Expired) {
                    return Err(StoreError::Invalid {
                        field: "id",
                        reason: "the order has already ended".into(),
                    });
                }
                o.state = OrderState::Cancelled;
                o.note = Some("cancelled by its owner".into());
                held = std::mem::take(&mut o.held);
                Ok(())
            })?;
            // Cancelled first: the boundary's bidding, which writes only to an active
            // order, cannot bring these back.
            for h in &held {
                // Already cancelled or expired bids are past cancelling.
                let _ = s.cancel_bid(owner, h.bid, now);
            }
            view(s, &order)
        })
        .await?;
    Ok(Json(view))
}

/// The order `id` if `owner` owns it (another's reads as absent).
fn own(s: &dyn Store, owner: u64, id: u64) -> Result<StandingOrder, StoreError> {
    s.order(id)?
        .filter(|o| o.owner == owner)
        .ok_or(StoreError::NotFound {
            what: "standing order",
            id,
        })
}

/// The order with each held bid's price and whether it holds its machine now.
fn view(s: &dyn Store, o: &StandingOrder) -> Result<OrderView, StoreError> {
    let mut machines = Vec::new();
    for h in &o.held {
        let Some(bid) = s.bid(h.bid)? else { continue };
        let winning = s
            .assignment(h.machine)?
            .and_then(|a| a.winner)
            .is_some_and(|w| w.bid == h.bid);
        machines.push(HeldView {
            machine: h.machine,
            bid: h.bid,
            price: bid.price_per_day.as_clore(),
            winning,
        });
    }
    Ok(OrderView::new(o, machines))
}
