//! The Clore GigaSPOT-compatible surface's bodies (clore-compat.md), typed so that the
//! OpenAPI document describes exactly what `/v1` answers: the handlers build their answers
//! from these.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::wire::{Clore, OcEntry};

/// An order in `POST /v1/create_gigaspot_orders` (an item that does not read as one is
/// reported in `failed_to_rent_servers`, not refused with the request).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloreNewOrder {
    /// `CLORE-Blockchain`.
    pub currency: Option<String>,
    /// Container image (or a Clore image id configured in `[clore] image_aliases`).
    pub image: Option<String>,
    /// The machine.
    pub renting_server: u64,
    /// CLORE per day.
    pub price: Clore,
    /// One entry per GPU; `pl` is mandatory.
    pub oc: Option<Vec<OcEntry>>,
    /// Container environment.
    pub env: Option<BTreeMap<String, String>>,
}

/// An edit in `POST /v1/edit_gigaspot_orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloreEdit {
    /// The order.
    pub order_id: u64,
    /// CLORE per day.
    pub price: Clore,
    /// One entry per GPU.
    pub oc: Option<Vec<OcEntry>>,
}

/// `POST /v1/cancel_orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloreCancel {
    /// 1 to 64 order ids.
    #[schema(min_items = 1, max_items = 64)]
    pub order_ids: Vec<u64>,
}

/// `GET /v1/get_gigaspot`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GetGigaspotReply {
    /// 0.
    pub code: u32,
    /// The caller's account id.
    pub my_user_id: u64,
    /// The latest published snapshot (immutable, at most one per second).
    pub v1_snapshot_url: String,
    /// USD per CLORE.
    pub clore_price: f64,
    /// Fees per currency (none).
    pub creation_fees: BTreeMap<String, f64>,
}

/// `POST /v1/create_gigaspot_orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreateOrdersReply {
    /// `ok`.
    pub status: String,
    /// Machines whose orders carried unusable settings.
    pub failed_to_oc_servers: Vec<u64>,
    /// Machines whose orders were not placed (for any reason).
    pub failed_to_rent_servers: Vec<u64>,
    /// Machines whose orders were below the machine's minimum.
    pub too_low_bids_servers: Vec<u64>,
    /// 0.
    pub code: u32,
}

/// `POST /v1/edit_gigaspot_orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EditOrdersReply {
    /// Orders not changed.
    pub failed_to_update_ids: Vec<u64>,
    /// Orders changed.
    pub success_to_update_ids: Vec<u64>,
    /// Orders whose new price was below the machine's minimum.
    pub too_low_bid_ids: Vec<u64>,
    /// 0.
    pub code: u32,
}

/// `POST /v1/cancel_orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelOrdersReply {
    /// Orders not cancelled (not the caller's, or no longer active).
    pub failed_to_cancel: Vec<u64>,
    /// 0.
    pub code: u32,
}

/// One of the caller's orders in `GET /v1/my_orders`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CloreOrder {
    /// Order (bid) id.
    pub id: u64,
    /// The machine.
    pub renting_server: u64,
    /// The machine (Clore's short key).
    pub si: u64,
    /// `spot`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `active`, `suspended`, `cancelled` or `expired`.
    pub status: String,
    /// CLORE per day.
    pub price: f64,
    /// `CLORE-Blockchain`.
    pub currency: String,
    /// Container image.
    pub image: String,
    /// Whether it takes part in clearing.
    pub active: bool,
    /// Whether its lifetime is over.
    pub expired: bool,
    /// CLORE paid for it so far (charges and fees).
    pub spend: f64,
    /// Total power limit, W.
    pub pl: u32,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Creation time, unix seconds.
    pub created_at_unix: u64,
    /// End of its lifetime, unix seconds.
    pub expires_at: u64,
    /// Why it is suspended, when it is.
    pub suspension: Option<String>,
}

/// `GET /v1/my_orders`: the orders under Clore's key and again under the first release's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MyOrdersReply {
    /// The caller's orders.
    pub orders: Vec<CloreOrder>,
    /// The same, for readers of the first release.
    pub my_orders: Vec<CloreOrder>,
    /// 0.
    pub code: u32,
}

/// A wallet in `GET /v1/wallets`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Wallet {
    /// `CLORE-Blockchain`.
    pub name: String,
    /// CLORE.
    pub balance: f64,
    /// Deposit address (none: the operator credits deposits).
    pub deposit: String,
    /// 0.
    pub withdrawal_fee: f64,
}

/// `GET /v1/wallets`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WalletsReply {
    /// One wallet.
    pub wallets: Vec<Wallet>,
    /// 0.
    pub code: u32,
}
