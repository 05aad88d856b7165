//! What every store implementation checks and builds the same way before it writes:
//! account names, idempotency keys, machine specs, money movements, bid edits. Pure
//! functions over values the implementation has read inside its lock or transaction, so
//! that sled and PostgreSQL answer the same input with the same result.

use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::admission::{admit, admit_new, check_funds};
use gigaspot_market::bid::{Bid, BidChange, BidId, BidState, BidTerms, Lifetime};
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::ledger::{Party, Transfer, TransferKind};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;

use crate::error::{StoreError, StoreResult};
use crate::records::MachineSpec;

/// An account name is 1 to 64 characters.
pub(crate) fn account_name(name: &str) -> StoreResult<()> {
    if name.is_empty() || name.chars().count() > 64 {
        return Err(StoreError::Invalid {
            field: "name",
            reason: "must be 1 to 64 characters".into(),
        });
    }
    Ok(())
}

/// An `Idempotency-Key` is 1 to 255 bytes.
pub(crate) fn idempotency_key(key: Option<&str>) -> StoreResult<()> {
    match key {
        Some(k) if k.is_empty() || k.len() > 255 => Err(StoreError::Invalid {
            field: "Idempotency-Key",
            reason: "must be 1 to 255 bytes".into(),
        }),
        _ => Ok(()),
    }
}

/// `account` exists and holds `role`, or why not.
pub(crate) fn role(
    account: Option<&Account>,
    id: AccountId,
    role: Role,
    action: &'static str,
) -> StoreResult<()> {
    match account {
        None => Err(StoreError::NotFound {
            what: "account",
            id,
        }),
        Some(a) if a.has(role) => Ok(()),
        Some(_) => Err(StoreError::Forbidden {
            account: id,
            action,
        }),
    }
}

/// A machine spec a host may register: 1 to 16 GPUs, each with card minimum ≤ host
/// ceiling ≤ card maximum, and a usable energy price.
pub(crate) fn machine_spec(spec: &MachineSpec) -> StoreResult<()> {
    if spec.gpus.is_empty() || spec.gpus.len() > 16 {
        return Err(StoreError::Invalid {
            field: "gpus",
            reason: "a machine has 1 to 16 GPUs".into(),
        });
    }
    if let Some((i, _)) = spec.gpus.iter().enumerate().find(|(_, g)| {
        g.card_min_w > g.card_max_w || g.ceiling_w > g.card_max_w || g.ceiling_w < g.card_min_w
    }) {
        return Err(StoreError::Invalid {
            field: "gpus",
            reason: format!("gpu {i}: need card minimum <= host ceiling <= card maximum"),
        });
    }
    if let Some(job) = &spec.background
        && !job.fits(&spec.gpus)
    {
        return Err(StoreError::Invalid {
            field: "background_job",
            reason: "one power limit per GPU, each within the card's range".into(),
        });
    }
    if spec.background_earnings > gigaspot_market::admission::MAX_PRICE {
        return Err(StoreError::Invalid {
            field: "background_earnings",
            reason: format!(
                "at most {} CLORE/day",
                gigaspot_market::admission::MAX_PRICE
            ),
        });
    }
    gigaspot_market::machine::check_energy_price(spec.energy_price_usd_per_kwh).map_err(|reason| {
        StoreError::Invalid {
            field: "energy_price",
            reason,
        }
    })
}

/// The machine a checked `spec` registers as `id`.
pub(crate) fn new_machine(id: MachineId, spec: MachineSpec) -> Machine {
    let mut machine = Machine {
        id,
        host: spec.host,
        facts: spec.facts,
        gpus: spec.gpus,
        energy_price_usd_per_kwh: spec.energy_price_usd_per_kwh,
        reserve_price: spec.reserve_price,
        max_rental_length_s: spec.max_rental_length_s,
        live: Default::default(),
        background: spec.background,
        background_earnings: spec.background_earnings,
        explicit_ceilings: spec.explicit_ceilings,
    };
    machine.follow_background();
    machine
}

/// A change of a machine record may not move it to another id or host.
pub(crate) fn machine_change(before: &Machine, after: &Machine) -> StoreResult<()> {
    if after.id != before.id || after.host != before.host {
        return Err(StoreError::Invalid {
            field: "host",
            reason: "a machine cannot change its id or host".into(),
        });
    }
    Ok(())
}

/// The transfer of a deposit or withdrawal of `amount` for `account`, checked: a positive
/// amount and a reference of 1 to 128 bytes (its id is `deposit:<reference>` or
/// `withdrawal:<reference>`, which makes it idempotent).
pub(crate) fn money_movement(
    account: AccountId,
    amount: Amount,
    reference: &str,
    now: u64,
    kind: TransferKind,
) -> StoreResult<Transfer> {
    if amount == Amount::ZERO {
        return Err(StoreError::Invalid {
            field: "amount",
            reason: "must be positive".into(),
        });
    }
    if reference.is_empty() || reference.len() > 128 {
        return Err(StoreError::Invalid {
            field: "reference",
            reason: "must be 1 to 128 bytes".into(),
        });
    }
    let (prefix, from, to) = match kind {
        TransferKind::Withdrawal => ("withdrawal", Party::Account(account), Party::External),
        _ => ("deposit", Party::External, Party::Account(account)),
    };
    Ok(Transfer {
        id: format!("{prefix}:{reference}"),
        from,
        to,
        amount,
        kind,
        interval: None,
        bid: None,
        machine: None,
        at: now,
    })
}

/// What a repeated money movement answers: the first booking when it moved the same
/// amount between the same parties, otherwise a refusal naming the reused reference.
pub(crate) fn repeated_movement(
    existing: Transfer,
    wanted: &Transfer,
    reference: &str,
) -> StoreResult<Transfer> {
    if existing.from == wanted.from && existing.to == wanted.to && existing.amount == wanted.amount
    {
        return Ok(existing);
    }
    let what = if wanted.kind == TransferKind::Withdrawal {
        "withdrawal"
    } else {
        "deposit"
    };
    Err(StoreError::Invalid {
        field: "reference",
        reason: format!("{reference:?} was already used for another {what}"),
    })
}

/// What a bid is admitted against, as read inside the store's lock or transaction.
pub(crate) struct Against<'a> {
    /// The machine bid on, if it exists.
    pub machine: Option<&'a Machine>,
    /// The clock range table.
    pub table: &'a GpuRangeTable,
    /// The market parameters.
    pub params: &'a MarketParams,
    /// The bidder's balance.
    pub balance: Amount,
}

/// A new bid `id` of `owner` on the terms, admitted by the market rules.
pub(crate) fn new_bid(
    id: BidId,
    owner: AccountId,
    terms: &BidTerms,
    now: u64,
    at: &Against<'_>,
) -> StoreResult<Bid> {
    let admitted = admit_new(terms, owner, at.machine, at.table, at.params, at.balance)?;
    Ok(Bid {
        id,
        owner,
        machine: terms.machine,
        price_per_day: terms.price_per_day,
        image: terms.image.clone(),
        env: terms.env.clone(),
        oc: admitted.oc,
        created_at: now,
        expires_at: now.saturating_add(admitted.lifetime_s),
        state: BidState::Active,
    })
}

/// `bid` when `owner` may still change it at `now`, or why not.
pub(crate) fn own_changeable(
    bid: Option<Bid>,
    owner: AccountId,
    id: BidId,
    now: u64,
) -> StoreResult<Bid> {
    let bid = bid.ok_or(StoreError::NotFound { what: "bid", id })?;
    if bid.owner != owner {
        return Err(StoreError::Forbidden {
            account: owner,
            action: "change another account's bid",
        });
    }
    bid.check_changeable(now)
        .map_err(|reason| StoreError::Invalid {
            field: "bid",
            reason,
        })?;
    Ok(bid)
}

/// `bid` after its owner's `change`, admitted again (and funded at the new price); an
/// edit keeps the bid's expiry and puts a suspended bid back in the market.
pub(crate) fn edited_bid(bid: &Bid, change: &BidChange, at: &Against<'_>) -> StoreResult<Bid> {
    let terms = BidTerms {
        machine: bid.machine,
        price_per_day: change.price_per_day,
        image: change.image.clone().unwrap_or_else(|| bid.image.clone()),
        env: change.env.clone().unwrap_or_else(|| bid.env.clone()),
        oc: change.oc.clone(),
        // An edit keeps the bid's expiry; the lifetime is not re-checked.
        lifetime: Lifetime::Default(1),
    };
    let admitted = admit(&terms, bid.owner, at.machine, at.table, at.params)?;
    check_funds(change.price_per_day, at.balance, at.params)?;
    Ok(Bid {
        price_per_day: change.price_per_day,
        oc: admitted.oc,
        image: terms.image,
        env: terms.env,
        state: BidState::Active,
        ..bid.clone()
    })
}

/// Market parameters an operator may set.
pub(crate) fn params(params: &MarketParams) -> StoreResult<()> {
    params.check().map_err(|e| StoreError::Invalid {
        field: e.field,
        reason: e.reason,
    })
}

/// A clock range table whose every range has min ≤ max.
pub(crate) fn gpu_table(table: &GpuRangeTable) -> StoreResult<()> {
    if let Some(model) = table.models.iter().find(|(_, r)| {
        r.core_lock.min > r.core_lock.max
            || r.mem_lock.min > r.mem_lock.max
            || r.core_offset.min > r.core_offset.max
            || r.mem_offset.min > r.mem_offset.max
    }) {
        return Err(StoreError::Invalid {
            field: "gpu_table",
            reason: format!("{}: a range has min > max", model.0),
        });
    }
    Ok(())
}

/// A checked spec's new standing order `id` of `owner`, active from `now`.
pub(crate) fn new_order(
    id: u64,
    owner: AccountId,
    spec: &gigaspot_market::standing_order::OrderSpec,
    now: u64,
) -> StoreResult<gigaspot_market::standing_order::StandingOrder> {
    use gigaspot_market::standing_order::{OrderState, StandingOrder};
    spec.check().map_err(|r| StoreError::InvalidField {
        field: r.field,
        reason: r.reason,
    })?;
    Ok(StandingOrder {
        id,
        owner,
        spec: spec.clone(),
        created_at: now,
        expires_at: now.saturating_add(spec.lifetime_s),
        state: OrderState::Active,
        note: None,
        held: Vec::new(),
        placed: Vec::new(),
        spent: Amount::ZERO,
        ledger_seen: 0,
    })
}

/// A change of a standing order may not move it to another id or owner.
pub(crate) fn order_change(
    before: &gigaspot_market::standing_order::StandingOrder,
    after: &gigaspot_market::standing_order::StandingOrder,
) -> StoreResult<()> {
    if after.id != before.id || after.owner != before.owner {
        return Err(StoreError::Invalid {
            field: "owner",
            reason: "an order cannot change its id or owner".into(),
        });
    }
    Ok(())
}
