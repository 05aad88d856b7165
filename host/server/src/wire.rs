//! JSON shapes of the native API. Prices and amounts are decimal CLORE here and integer
//! base units everywhere else; the conversion happens once, in this module.

use std::collections::BTreeMap;

use gigaspot_market::account::{Account, Role};
use gigaspot_market::agent_protocol::{BackgroundStatus, SettingsCheck, WorkloadStatus};
use gigaspot_market::bid::{Bid, BidState, OcRequest};
use gigaspot_market::context::GpuOc;
use gigaspot_market::ledger::{Party, Transfer, TransferKind};
use gigaspot_market::machine::{Gpu, Machine};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;
use gigaspot_market::suspension::BidFailures;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;

/// A decimal CLORE amount in a request, read exactly from the JSON number's text (never
/// through a float): more than 8 decimals, a negative or an oversized amount is refused by
/// deserialisation, so the error names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clore(pub Amount);

impl<'de> Deserialize<'de> for Clore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json's arbitrary_precision keeps the literal text of the number.
        let number = serde_json::Number::deserialize(d)?;
        Amount::parse_clore(&number.to_string())
            .map(Clore)
            .map_err(|e| serde::de::Error::custom(format!("{e} (CLORE, at most 8 decimals)")))
    }
}

impl Serialize for Clore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The exact decimal text, as a JSON number.
        let text = self.0.to_string();
        let number: serde_json::Number = text.parse().map_err(serde::ser::Error::custom)?;
        number.serialize(s)
    }
}

impl utoipa::PartialSchema for Clore {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(184_467_440_737.095_5))
            .description(Some(
                "CLORE as a JSON number with at most 8 decimals, read exactly from its text",
            ))
            .examples([serde_json::json!(12.5)])
            .into()
    }
}

impl utoipa::ToSchema for Clore {}

/// Roles an account can ask for at registration.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Bids on machines.
    Client,
    /// Offers machines.
    Host,
}

/// `POST /api/v1/accounts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Display name, 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// `client` and/or `host`.
    #[schema(min_items = 1, max_items = 2)]
    pub roles: Vec<RoleName>,
}

/// An account as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// Account id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Roles, lowercase.
    pub roles: Vec<String>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        AccountView {
            id: a.id,
            name: a.name.clone(),
            roles: a
                .roles
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect(),
        }
    }
}

/// Reply of a registration: the key is shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAccountReply {
    /// The account.
    pub account: AccountView,
    /// Its API key; only its hash is stored.
    pub api_key: String,
}

/// Maps requested role names to roles.
pub fn roles(names: &[RoleName]) -> Result<Vec<Role>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_field(
            "roles",
            "ask for at least one of client, host",
        ));
    }
    let mut roles: Vec<Role> = names
        .iter()
        .map(|r| match r {
            RoleName::Client => Role::Client,
            RoleName::Host => Role::Host,
        })
        .collect();
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// `POST /api/v1/deposits` (operator).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// The credited account.
    pub account: u64,
    /// CLORE, up to 8 decimals.
    pub amount: Clore,
    /// The operator's unique reference (1 to 128 bytes); repeating it repeats nothing.
    #[schema(min_length = 1, max_length = 32)]
    pub reference: String,
}

/// A transfer as the API shows it; `null` stands for outside the market.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferView {
    /// Unique id.
    pub id: String,
    /// Debited account.
    pub from: Option<u64>,
    /// Credited account.
    pub to: Option<u64>,
    /// CLORE.
    pub amount: f64,
    /// `deposit`, `withdrawal`, `charge` or `fee`.
    pub kind: String,
    /// Billing interval of a charge or fee.
    pub interval: Option<u64>,
    /// Bid of a charge or fee.
    pub bid: Option<u64>,
    /// Machine of a charge or fee.
    pub machine: Option<u64>,
    /// Unix seconds.
    pub at: u64,
    /// For a charge or fee: the seconds of the interval the workload was confirmed
    /// running, which the charge is for (`price × served_s / 86,400`, rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_s: Option<u64>,
    /// For a charge or fee: the interval's length, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
}

/// One line of an account's ledger: a transfer and its booking sequence number.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// Booking sequence number; pass the last one as `before` for the next page.
    pub seq: u64,
    /// The transfer.
    #[serde(flatten)]
    pub transfer: TransferView,
}

impl From<&Transfer> for TransferView {
    fn from(t: &Transfer) -> Self {
        let party = |p: Party| match p {
            Party::External => None,
            Party::Account(a) => Some(a),
        };
        TransferView {
            id: t.id.clone(),
            from: party(t.from),
            to: party(t.to),
            amount: t.amount.as_clore(),
            kind: match t.kind {
                TransferKind::Deposit => "deposit",
                TransferKind::Withdrawal => "withdrawal",
                TransferKind::Charge => "charge",
                TransferKind::Fee => "fee",
                TransferKind::WithdrawalRequest => "withdrawal_request",
                TransferKind::WithdrawalReturn => "withdrawal_return",
            }
            .into(),
            interval: t.interval,
            bid: t.bid,
            machine: t.machine,
            at: t.at,
            served_s: None,
            interval_s: None,
        }
    }
}

/// A balance.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalanceView {
    /// Account id.
    pub account: u64,
    /// CLORE.
    pub balance: f64,
}

/// One GPU of a machine being registered.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    /// Model name as NVML reports it.
    pub model: String,
    /// NVML uuid.
    pub uuid: String,
    /// Card minimum power limit, W.
    pub card_min_w: u32,
    /// Card maximum power limit, W.
    pub card_max_w: u32,
    /// Host ceiling, W. Without one on any GPU the ceilings follow the background job's
    /// power limits (the card maximum without a job).
    pub ceiling_w: Option<u32>,
}

/// The host's background job as a host sets it: what the machine runs while no bid wins.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackgroundJobSpec {
    /// Container image.
    pub image: String,
    /// Container environment (write-only: views show the names, never the values).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// One entry per GPU; `pl` is mandatory and within the card's range, clocks within
    /// the model's ranges, as for a bid.
    pub oc: Vec<OcEntry>,
}

impl BackgroundJobSpec {
    /// The market's form of the request, checked by `BackgroundRequest::admit`.
    pub fn request(&self) -> gigaspot_market::background::BackgroundRequest {
        gigaspot_market::background::BackgroundRequest {
            image: self.image.clone(),
            env: self.env.clone(),
            oc: self.oc.iter().map(|o| OcRequest::from(*o)).collect(),
        }
    }
}

/// A machine's background job as views show it (the environment's names only).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackgroundJobView {
    /// Container image.
    pub image: String,
    /// The environment's variable names (values are never shown).
    pub env_keys: Vec<String>,
    /// Per-GPU settings.
    pub oc: Vec<GpuOc>,
    /// Digest of image, environment and settings; the agent reports the one it runs.
    pub revision: String,
}

impl BackgroundJobView {
    /// The view of `job`.
    pub fn new(job: &gigaspot_market::background::BackgroundJob) -> Self {
        BackgroundJobView {
            image: job.image.clone(),
            env_keys: job.env.keys().cloned().collect(),
            oc: job.oc.clone(),
            revision: job.revision(),
        }
    }
}

/// Absent: unchanged; `null`: cleared; a value: set. (serde gives `None` for a missing
/// field through `#[serde(default)]`, and calls this only for a present one.)
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/machines` (host).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMachine {
    /// GPUs in order, 1 to 16.
    #[schema(min_items = 1, max_items = 16)]
    pub gpus: Vec<GpuSpec>,
    /// USD per kWh.
    pub energy_price: f64,
    /// CLORE per day (default 0).
    pub reserve_price: Option<Clore>,
    /// Longest rental in seconds (default 30 days).
    pub max_rental_length: Option<u64>,
    /// CPU model.
    #[serde(default)]
    pub cpu: String,
    /// RAM in GiB.
    #[serde(default)]
    pub ram_gib: u32,
    /// CUDA version.
    #[serde(default)]
    pub cuda: String,
    /// ISO country code.
    #[serde(default)]
    pub country: String,
    /// The host's background job, run while no bid wins (default: none, the machine
    /// idles).
    #[serde(default)]
    pub background_job: Option<BackgroundJobSpec>,
    /// What the background job earns, CLORE per day (default 0): a floor of the
    /// machine's minimum bid.
    #[serde(default)]
    pub background_earnings: Option<Clore>,
}

/// `PATCH /api/v1/machines/{id}` (the machine's host): any subset.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineUpdate {
    /// USD per kWh.
    pub energy_price: Option<f64>,
    /// CLORE per day.
    pub reserve_price: Option<Clore>,
    /// Per-GPU power ceilings in W, one per GPU; `null` drops them, so that the ceilings
    /// follow the background job's power limits again.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<u32>>, nullable)]
    pub ceilings_w: Option<Option<Vec<u32>>>,
    /// A new background job; `null` removes it (the machine then idles).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<BackgroundJobSpec>, nullable)]
    pub background_job: Option<Option<BackgroundJobSpec>>,
    /// What the background job earns, CLORE per day.
    pub background_earnings: Option<Clore>,
}

/// A machine as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineView {
    /// Machine id.
    pub id: u64,
    /// Host account.
    pub host: u64,
    /// GPUs.
    pub gpus: Vec<GpuSpec>,
    /// USD per kWh.
    pub energy_price: f64,
    /// CLORE per day.
    pub reserve_price: f64,
    /// CLORE per day: the larger of the reserve price and the energy cost at the cards'
    /// minimum power limits.
    pub min_bid: f64,
    /// USD per CLORE used for energy floors.
    pub clore_price: f64,
    /// CLORE per day that each watt of a bid's total power limit adds to its energy floor:
    /// a bid must offer at least `max(reserve_price, Σ pl × floor_per_watt)` (rounded up
    /// to 10^-8 CLORE).
    pub floor_per_watt: f64,
    /// CLORE per day that the host's background job earns, as the host declared it.
    pub background_earnings: f64,
    /// Which floor sets `min_bid`: `reserve_price`, `energy_floor` or
    /// `background_earnings`.
    pub min_bid_from: String,
    /// The energy cost of a day at the cards' minimum power limits, CLORE.
    pub energy_floor: f64,
    /// The host's background job, if it set one.
    pub background_job: Option<BackgroundJobView>,
    /// The GPUs' ceilings are the host's own (`ceiling_w`); otherwise they follow the
    /// background job's power limits.
    pub explicit_ceilings: bool,
    /// What the machine does now: `bid` (a bid's workload runs), `background` (the host's
    /// background job runs) or `idle`.
    pub activity: String,
    /// Seconds.
    pub max_rental_length: u64,
    /// Served ÷ assigned intervals over the last 7 days, not counting intervals the winner
    /// failed by its own fault; 1.0 without any.
    pub reliability: f64,
    /// CPU model (from the agent's reading of the host).
    pub cpu: String,
    /// Physical CPU cores (0 until the agent reported).
    pub cores: u32,
    /// CPU threads (0 until the agent reported).
    pub threads: u32,
    /// Memory, GiB.
    pub ram_gib: u32,
    /// Highest CUDA version the driver supports.
    pub cuda: String,
    /// ISO country code (the host's).
    pub country: String,
    /// Agent connected.
    pub online: bool,
    /// Agent reports the machine fit.
    pub working: bool,
    /// The bid holding the machine this interval.
    pub current_bid: Option<u64>,
    /// What the agent last reported.
    pub agent: AgentView,
}

/// The agent's last report on a machine: what actually runs, with which settings.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    /// The bid whose workload runs with its settings applied and read back.
    pub running_bid: Option<u64>,
    /// The workload's container: bid, state (`created`, `running`, `exited`), exit code.
    pub workload: Option<WorkloadStatus>,
    /// Settings in force per GPU.
    pub applied_settings: Vec<GpuOc>,
    /// Measured power per GPU, W.
    pub measured_power_w: Vec<u32>,
    /// Images present on the machine.
    pub cached_images: Vec<String>,
    /// The agent's most recent failure, e.g. a power limit the driver refused.
    pub last_error: Option<String>,
    /// Per GPU, which of the running bid's settings were read back and confirmed
    /// (`verified`), could not be confirmed (`unverified`, with a note), or were not asked
    /// for (`not_requested`).
    #[serde(default)]
    pub verification: Vec<SettingsCheck>,
    /// The background job's container while the agent runs it: revision, state, whether
    /// its settings read back.
    #[serde(default)]
    pub background: Option<BackgroundStatus>,
}

impl MachineView {
    /// The view of `m` under `params`, with its current winner.
    pub fn new(m: &Machine, params: &MarketParams, current_bid: Option<u64>) -> Self {
        let basis = m.min_bid_basis(params);
        MachineView {
            id: m.id,
            host: m.host,
            gpus: m.gpus.iter().map(gpu_spec).collect(),
            energy_price: m.energy_price_usd_per_kwh,
            reserve_price: m.reserve_price.as_clore(),
            min_bid: basis.min_bid().as_clore(),
            clore_price: params.clore_usd,
            floor_per_watt: m.floor_per_watt(params),
            background_earnings: m.background_earnings.as_clore(),
            min_bid_from: basis.binding().into(),
            energy_floor: basis.energy_floor.as_clore(),
            background_job: m.background.as_ref().map(BackgroundJobView::new),
            explicit_ceilings: m.explicit_ceilings,
            activity: activity(m).into(),
            max_rental_length: m.max_rental_length_s,
            reliability: 1.0,
            cpu: m.facts.cpu.clone(),
            cores: m.facts.cores,
            threads: m.facts.threads,
            ram_gib: m.facts.ram_gib,
            cuda: m.facts.cuda.clone(),
            country: m.facts.country.clone(),
            online: m.live.online,
            working: m.live.working,
            current_bid,
            agent: AgentView {
                running_bid: m.live.running_bid,
                workload: m.live.workload.clone(),
                applied_settings: m.live.applied_settings.clone(),
                measured_power_w: m.live.measured_power_w.clone(),
                cached_images: m.live.cached_images.clone(),
                last_error: m.live.last_error.clone(),
                verification: m.live.verification.clone(),
                background: m.live.background.clone(),
            },
        }
    }
}

/// What the machine does as its agent last reported: `bid`, `background` or `idle`.
fn activity(m: &Machine) -> &'static str {
    use gigaspot_market::agent_protocol::ContainerState;
    if m.live.running_bid.is_some() {
        "bid"
    } else if m
        .live
        .background
        .as_ref()
        .is_some_and(|b| b.state == ContainerState::Running)
    {
        "background"
    } else {
        "idle"
    }
}

fn gpu_spec(g: &Gpu) -> GpuSpec {
    GpuSpec {
        model: g.model.clone(),
        uuid: g.uuid.clone(),
        card_min_w: g.card_min_w,
        card_max_w: g.card_max_w,
        ceiling_w: Some(g.ceiling_w),
    }
}

/// Reply of a machine registration: the agent token is shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewMachineReply {
    /// The machine.
    pub machine: MachineView,
    /// The token its agent authenticates with; acts for this machine only.
    pub agent_token: String,
}

/// One GPU's settings in a bid.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OcEntry {
    /// Power limit, W (mandatory).
    pub pl: Option<u32>,
    /// Locked core clock, MHz.
    pub core_lock: Option<u32>,
    /// Locked memory clock, MHz.
    pub mem_lock: Option<u32>,
    /// Core clock offset, MHz.
    pub core_offset: Option<i32>,
    /// Memory clock offset, MHz.
    pub mem_offset: Option<i32>,
}

impl From<OcEntry> for OcRequest {
    fn from(o: OcEntry) -> Self {
        OcRequest {
            pl: o.pl,
            core_lock: o.core_lock,
            mem_lock: o.mem_lock,
            core_offset: o.core_offset,
            mem_offset: o.mem_offset,
        }
    }
}

/// `POST /api/v1/bids` (client).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBid {
    /// Machine id.
    pub machine: u64,
    /// CLORE per day.
    pub price: Clore,
    /// Container image reference.
    pub image: String,
    /// Container environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// One entry per GPU.
    #[schema(min_items = 1, max_items = 16)]
    pub oc: Vec<OcEntry>,
    /// Seconds the bid stays active (default 7 days).
    pub lifetime_s: Option<u64>,
}

/// `PATCH /api/v1/bids/{id}` (owner).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BidEdit {
    /// CLORE per day.
    pub price: Clore,
    /// One entry per GPU.
    pub oc: Vec<OcEntry>,
    /// A new container image (default: unchanged).
    pub image: Option<String>,
    /// A new container environment (default: unchanged).
    pub env: Option<BTreeMap<String, String>>,
}

/// A bid's settings as the API shows them.
pub fn oc_entries(oc: &[GpuOc]) -> Vec<OcEntry> {
    oc.iter()
        .map(|o| OcEntry {
            pl: Some(o.power_limit_w),
            core_lock: o.core_lock_mhz,
            mem_lock: o.mem_lock_mhz,
            core_offset: o.core_offset_mhz,
            mem_offset: o.mem_offset_mhz,
        })
        .collect()
}

/// A bid as its owner, the machine's host and operators see it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BidView {
    /// Bid id.
    pub id: u64,
    /// Owner account.
    pub owner: u64,
    /// Machine id.
    pub machine: u64,
    /// CLORE per day.
    pub price: f64,
    /// Image reference.
    pub image: String,
    /// Names of the environment variables (values stay private).
    pub env_keys: Vec<String>,
    /// Per-GPU settings.
    pub oc: Vec<OcEntry>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// `active`, `suspended`, `cancelled` or `expired`.
    pub state: String,
    /// Why a suspended bid left the market, and how to put it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<String>,
    /// The standing order that placed it, if one did (shown to its owner).
    #[serde(default)]
    pub order: Option<u64>,
}

/// A bid's state as the APIs name it at `now`.
pub fn state_name(b: &Bid, now: u64) -> &'static str {
    match b.state_at(now) {
        BidState::Active => "active",
        BidState::Suspended => "suspended",
        BidState::Cancelled => "cancelled",
        BidState::Expired => "expired",
    }
}

impl BidView {
    /// The view of `b` at `now`; `suspension` says why a suspended bid is out.
    pub fn new(b: &Bid, now: u64) -> Self {
        let state = state_name(b, now);
        BidView {
            id: b.id,
            owner: b.owner,
            machine: b.machine,
            price: b.price_per_day.as_clore(),
            image: b.image.clone(),
            env_keys: b.env.keys().cloned().collect(),
            oc: oc_entries(&b.oc),
            created_at: b.created_at,
            expires_at: b.expires_at,
            state: state.into(),
            suspension: None,
            order: None,
        }
    }

    /// The view with the reason of its suspension, when it is suspended.
    pub fn with_suspension(mut self, failures: Option<&BidFailures>) -> Self {
        if self.state == "suspended" {
            self.suspension = failures.map(BidFailures::explain);
        }
        self
    }
}
