//! The key layout of the single sled tree. Ids are big-endian so that keys sort by id.

/// Schema version of the layout below. Version 2 added the agent's telemetry to machines;
/// version 3 the CPU's cores and threads and the settings' read-back; version 4 stores
/// decision records in chunks per interval (`DECISION_CHUNK`) instead of one record and
/// one index entry per machine, assignments likewise (`ASSIGNMENT_CHUNK`), and pending
/// marks as one list per interval (`PENDING_INTERVAL`); version 5 keys the served,
/// served-time and unserved marks by interval first, so that those of settled intervals
/// are pruned by range; version 6 adds the host's background job to machines; version 7
/// standing orders (`ORDER`) (version 2 to 6 stores are migrated when opened, see
/// `migrate`);
/// version 1 stores are refused (no migration: they predate any release).
pub const SCHEMA_VERSION: u32 = 7;

/// `u32` schema version.
pub const SCHEMA: &[u8] = b"meta/schema";
/// `u64`: the last id handed out to an account, machine or bid.
pub const LAST_ID: &[u8] = b"meta/last_id";
/// `u64`: the sequence number of the last transfer booked.
pub const LAST_TRANSFER: &[u8] = b"meta/last_transfer";
/// `MarketParams`.
pub const PARAMS: &[u8] = b"meta/params";
/// `GpuRangeTable`.
pub const GPU_TABLE: &[u8] = b"meta/gpu_table";
/// `u64`: the last interval cleared.
pub const CLEARED_THROUGH: &[u8] = b"meta/cleared_through";
/// `PluginState`: the registry as the operator left it (supersedes `ACTIVE_PLUGINS`).
pub const PLUGIN_STATE: &[u8] = b"meta/plugin_state";
/// `ActivePlugins`.
pub const ACTIVE_PLUGINS: &[u8] = b"meta/active_plugins";
/// `IntervalClock`: the interval epochs (absent in stores from before it existed, whose
/// intervals were uniform at the stored `billing_interval_s`).
pub const INTERVAL_CLOCK: &[u8] = b"meta/interval_clock";
/// `u64`: the account holding requested, not yet paid withdrawals.
pub const PENDING_WITHDRAWALS_ACCOUNT: &[u8] = b"meta/pending_withdrawals_account";
/// Prefix of withdrawals by id.
pub const WITHDRAWAL: &[u8] = b"wdr/";
/// Prefix of withdrawal idempotency keys by (account, key) → withdrawal id.
pub const WITHDRAWAL_KEY: &[u8] = b"wdrkey/";
/// `u64`: the operator's fee account.
pub const FEE_ACCOUNT: &[u8] = b"meta/fee_account";

/// Prefix of accounts by id.
pub const ACCOUNT: &[u8] = b"acct/";
/// Prefix of API key hashes → account id.
pub const API_KEY: &[u8] = b"key/";
/// Prefix of agent token hashes → machine id.
pub const AGENT_TOKEN: &[u8] = b"agent/";
/// Prefix of machines by id.
pub const MACHINE: &[u8] = b"mach/";
/// Prefix of bids by id.
pub const BID: &[u8] = b"bid/";
/// Prefix of balances by account id.
pub const BALANCE: &[u8] = b"bal/";
/// Prefix of transfers by booking sequence.
pub const TRANSFER: &[u8] = b"xfer/";
/// Prefix of transfer ids → booking sequence (uniqueness).
pub const TRANSFER_ID: &[u8] = b"xid/";
/// Prefix of the per-account ledger index by (account, booking sequence) → nothing: one
/// entry per account a transfer touches. Derived from `TRANSFER`; written in the same
/// batch as the transfer.
pub const ACCOUNT_TRANSFER: &[u8] = b"axfer/";
/// Present once `ACCOUNT_TRANSFER` covers every transfer (stores from before the index
/// get it built when they are opened).
pub const ACCOUNT_TRANSFER_BUILT: &[u8] = b"meta/account_transfer_index";
/// Prefix of `IntervalStats` by interval: what market history shows of each interval.
pub const INTERVAL_STATS: &[u8] = b"hist/";
/// Prefix of assignments in chunks by (interval, first machine) → each machine's
/// `Assignment` (see `decision_chunks`). Every clearing assigns every machine.
pub const ASSIGNMENT_CHUNK: &[u8] = b"asgc/";
/// Schema 3: prefix of assignments by (machine, interval).
pub const LEGACY_ASSIGNMENT: &[u8] = b"asg/";
/// Prefix of the machines whose assignment of an interval has a winner not yet settled,
/// by interval → sorted list of machine ids.
pub const PENDING_INTERVAL: &[u8] = b"pendi/";
/// Schema 3: prefix of assignments with a winner not yet settled, by (machine, interval).
pub const LEGACY_PENDING: &[u8] = b"pend/";
/// Prefix of served reports by (interval, machine) → bid id (see [`mark`]). Marks are
/// read until their interval is settled, then pruned.
pub const SERVED: &[u8] = b"srvi/";
/// Prefix of the time served per (interval, machine) → `ServedTime`. An interval with a
/// `SERVED` mark but no time (written before served time existed) counts as served whole.
pub const SERVED_TIME: &[u8] = b"srvti/";
/// Prefix of the agent's reports of an assigned bid not served, by (interval, machine) →
/// `Unserved`.
pub const UNSERVED: &[u8] = b"unsrvi/";
/// Prefix of the served time of settled intervals served for less than their length, by
/// (machine, interval) → `ServedTime`: what the ledger shows beside such a charge once the
/// interval's marks are pruned (a charge without one was served whole).
pub const PARTIAL_TIME: &[u8] = b"srvp/";
/// Schema 4: prefix of served reports by (machine, interval).
pub const LEGACY_SERVED: &[u8] = b"srv/";
/// Schema 4: prefix of served time by (machine, interval).
pub const LEGACY_SERVED_TIME: &[u8] = b"srvt/";
/// Schema 4: prefix of unserved reports by (machine, interval).
pub const LEGACY_UNSERVED: &[u8] = b"unsrv/";
/// Prefix of bids' runs of intervals unserved by their own fault, by bid → `BidFailures`.
pub const BID_FAILURES: &[u8] = b"bidfail/";
/// Prefix of machines' assigned/served tallies, by (machine, day) → `Tally`.
pub const TALLY: &[u8] = b"tally/";
/// Prefix of full decision records in chunks by (interval, first machine) → each
/// machine's `Decision` (see `decision_chunks`).
pub const DECISION_CHUNK: &[u8] = b"dch/";
/// Prefix of compacted decision records in chunks by (interval, first machine) → each
/// machine's `CompactDecision` (see `retention`).
pub const DECISION_COMPACT_CHUNK: &[u8] = b"dcc/";
/// Prefix of the plugins' input records in chunks by (interval, first machine) → each
/// machine's `InputRecord` (see `plugin_inputs`), kept as long as the full decisions.
pub const INPUT_CHUNK: &[u8] = b"inpc/";
/// Prefix of machines' books by (machine, first interval) → the book's sha256 (32 bytes)
/// then the book (`PluginInput`, postcard): written when a machine's book changes.
pub const BOOK: &[u8] = b"book/";
/// Prefix of `IntervalPrices` by interval: the clearing prices per GPU model.
pub const PRICES: &[u8] = b"prices/";
/// Prefix of `ShadowDiff` by interval: how the shadow strategy's picks differed.
pub const SHADOW_DIFF: &[u8] = b"shadow/";
/// `String`: the version id of the strategy run in shadow (absent: none).
pub const SHADOW_STRATEGY: &[u8] = b"meta/shadow_strategy";
/// Standing orders by id.
pub const ORDER: &[u8] = b"ordr/";
/// Schema 3 and before: prefix of decision records by (machine, interval).
pub const LEGACY_DECISION: &[u8] = b"dec/";
/// Schema 3: prefix of the index of full decision records by (interval, machine).
pub const LEGACY_DECISION_BY_INTERVAL: &[u8] = b"deci/";
/// Schema 3: present once `LEGACY_DECISION_BY_INTERVAL` covered every full record.
pub const LEGACY_DECISION_INDEX_BUILT: &[u8] = b"meta/decision_index";
/// Schema 3: prefix of compacted decision records by (machine, interval).
pub const LEGACY_DECISION_COMPACT: &[u8] = b"decc/";
/// Prefix of the plugin versions named by an interval's compacted records, by interval →
/// list of version ids (the records refer to them by position).
pub const DECISION_VERSIONS: &[u8] = b"decv/";
/// Prefix of idempotency keys by (account, key) → bid id.
pub const IDEMPOTENCY: &[u8] = b"idem/";
/// Prefix of plugin versions by digest.
pub const PLUGIN: &[u8] = b"plug/";

/// `prefix` followed by the big-endian bytes of each id.
pub fn key(prefix: &[u8], ids: &[u64]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8 * ids.len());
    k.extend_from_slice(prefix);
    for id in ids {
        k.extend_from_slice(&id.to_be_bytes());
    }
    k
}

/// The key of a served, served-time or unserved mark: interval first, so that the marks
/// of settled intervals are one range.
pub fn mark(prefix: &[u8], machine: u64, interval: u64) -> Vec<u8> {
    key(prefix, &[interval, machine])
}

/// `prefix` followed by raw bytes.
pub fn key_bytes(prefix: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + tail.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(tail);
    k
}

/// The idempotency key of `account`'s request `key` under `prefix` (bids or withdrawals).
pub fn idempotency(prefix: &[u8], account: u64, key: &str) -> Vec<u8> {
    let mut k = self::key(prefix, &[account]);
    k.extend_from_slice(key.as_bytes());
    k
}
