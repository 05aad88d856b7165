//! Helpers for tools that stand in for agents without running one: the tests, the
//! benchmarks and the crash writer.

use gigaspot_market::clearing::Decision;
use gigaspot_market::machine::MachineId;

use crate::error::StoreResult;
use crate::store::Store;

/// Marks `machine` online and working, as its agent's first heartbeat would.
pub fn bring_online(store: &dyn Store, machine: MachineId) -> StoreResult<()> {
    store.modify_machine(machine, &mut |m| {
        m.live.online = true;
        m.live.working = true;
        Ok(())
    })?;
    Ok(())
}

/// Rewrites the stored decision of `machine` at `interval` in the sled database `db` (a
/// stopped market's folder) with `edit`: what a test of the replay tampers with. `false`
/// when there is no such decision.
pub fn tamper_decision(
    db: &sled::Db,
    machine: MachineId,
    interval: u64,
    edit: impl FnOnce(&mut Decision),
) -> StoreResult<bool> {
    crate::decision_chunks::edit(db, crate::keys::DECISION_CHUNK, machine, interval, edit)
}
