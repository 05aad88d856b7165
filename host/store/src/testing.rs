//! Helpers for tools that stand in for agents without running one: the tests, the
//! benchmarks and the crash writer.

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
