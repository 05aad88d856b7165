//! Replays recorded clearings: re-runs the recorded plugin versions on the recorded inputs
//! and checks every decision bit for bit (input digest, plugin versions, every rejection
//! and score, the winner). This is the market's proof that its decisions are
//! reproducible.
//!
//! Plugin calls are grouped as the clearing grouped them (the machines of one decision
//! chunk share an instance per version, those cleared on the sequential path apart), so a
//! plugin that keeps state within a group replays too.

use std::collections::BTreeMap;

use gigaspot_market::bid::BidId;
use gigaspot_market::clearing::{Decision, Verdict, judge};
use gigaspot_market::machine::MachineId;
use gigaspot_market::plugin_input::PluginInput;
use gigaspot_store::{MACHINES_PER_GROUP, RecordedClearing, Store, StoreError};
use serde::Serialize;

use crate::plugin_versions::PluginVersions;

/// One way a replayed clearing differs from its record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The interval.
    pub interval: u64,
    /// The machine.
    pub machine: MachineId,
    /// What differs, in words.
    pub what: String,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    /// The first and last interval asked for.
    pub first: u64,
    /// The last interval asked for.
    pub last: u64,
    /// Intervals with recorded clearings.
    pub intervals: u64,
    /// Clearings whose plugins were re-run.
    pub replayed: u64,
    /// Clearings without plugin calls (the machine was unavailable).
    pub without_plugins: u64,
    /// Clearings whose input was not recorded (cleared before inputs were kept).
    pub unrecorded: u64,
    /// Every difference found.
    pub differences: Vec<Difference>,
    /// Why the replay stopped before `last`, if it did.
    pub stopped: Option<String>,
}

/// Replays every recorded clearing of the intervals `first..=last`; `progress` is told
/// each interval done and answers whether to go on (a time limit).
pub fn replay(
    store: &dyn Store,
    versions: &PluginVersions,
    first: u64,
    last: u64,
    mut progress: impl FnMut(u64, &ReplayReport) -> bool,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport {
        first,
        last,
        ..ReplayReport::default()
    };
    for interval in first..=last {
        let clearings = store.recorded_clearings(interval)?;
        if clearings.is_empty() {
            continue;
        }
        report.intervals += 1;
        for group in groups(&clearings) {
            gigaspot_plugin_runtime::in_group(|| {
                for clearing in group {
                    replay_one(clearing, versions, &mut report);
                }
            });
        }
        if !progress(interval, &report) && interval < last {
            report.stopped = Some(format!("stopped after interval {interval}: time limit"));
            report.last = interval;
            break;
        }
    }
    Ok(report)
}

/// The clearing's plugin groups, in the order it ran them: per decision chunk, the
/// machines cleared in parallel, then those cleared on the sequential path.
pub fn groups(clearings: &[RecordedClearing]) -> Vec<Vec<&RecordedClearing>> {
    let mut groups: BTreeMap<(usize, bool), Vec<&RecordedClearing>> = BTreeMap::new();
    for (at, clearing) in clearings.iter().enumerate() {
        let coupled = clearing.input.as_ref().is_some_and(|(r, _)| r.coupled);
        groups
            .entry((at / MACHINES_PER_GROUP, coupled))
            .or_default()
            .push(clearing);
    }
    groups.into_values().collect()
}

fn replay_one(clearing: &RecordedClearing, versions: &PluginVersions, report: &mut ReplayReport) {
    let decision = &clearing.decision;
    let mut differ = |what: String| {
        report.differences.push(Difference {
            interval: decision.interval,
            machine: decision.machine,
            what,
        })
    };
    let Some((_, input)) = &clearing.input else {
        if decision.input_digest.is_empty() {
            report.without_plugins += 1;
        } else {
            report.unrecorded += 1;
        }
        return;
    };
    report.replayed += 1;
    for what in differences(decision, input, versions) {
        differ(what);
    }
}

/// How re-running `decision`'s plugin versions on `input` differs from the record.
pub fn differences(
    decision: &Decision,
    input: &PluginInput,
    versions: &PluginVersions,
) -> Vec<String> {
    let mut out = Vec::new();
    let (_, digest) = input.digests();
    if digest != decision.input_digest {
        out.push(format!(
            "input digest {} recorded, {digest} rebuilt",
            decision.input_digest
        ));
    }
    let plugins = match versions.fixed(decision.strategy.as_ref(), &decision.validators) {
        Ok(p) => p,
        Err(e) => {
            out.push(format!("cannot replay: {e}"));
            return out;
        }
    };
    let judged = judge(&input.context, &input.candidates, &plugins);
    if judged.validators != decision.validators {
        out.push(format!(
            "validators {:?} recorded, {:?} answered",
            names(&decision.validators),
            names(&judged.validators)
        ));
    }
    if judged.strategy != decision.strategy {
        out.push(format!(
            "strategy {:?} recorded, {:?} answered",
            decision.strategy.as_ref().map(|s| &s.digest),
            judged.strategy.as_ref().map(|s| &s.digest)
        ));
    }
    let recorded = plugin_verdicts(decision.verdicts.iter().map(|v| (v.bid, &v.verdict)));
    let replayed = plugin_verdicts(judged.verdicts.iter().map(|v| (v.bid, &v.verdict)));
    for (bid, verdict) in &recorded {
        match replayed.get(bid) {
            Some(again) if same(verdict, again) => {}
            Some(again) => out.push(format!(
                "bid {bid}: {verdict:?} recorded, {again:?} replayed"
            )),
            None => out.push(format!(
                "bid {bid}: {verdict:?} recorded, no verdict replayed"
            )),
        }
    }
    for (bid, again) in &replayed {
        if !recorded.contains_key(bid) {
            out.push(format!(
                "bid {bid}: no verdict recorded, {again:?} replayed"
            ));
        }
    }
    let winner = decision.winner.map(|w| w.bid);
    if winner != judged.winner {
        out.push(format!(
            "winner {winner:?} recorded, {:?} replayed",
            judged.winner
        ));
    }
    out
}

fn names(refs: &[gigaspot_market::verdict::PluginRef]) -> Vec<&str> {
    refs.iter().map(|r| r.digest.as_str()).collect()
}

/// The plugins' verdicts (rejections and scores) by bid.
fn plugin_verdicts<'a>(
    verdicts: impl Iterator<Item = (BidId, &'a Verdict)>,
) -> BTreeMap<BidId, &'a Verdict> {
    verdicts
        .filter(|(_, v)| !matches!(v, Verdict::Ineligible { .. }))
        .collect()
}

/// Equal bit for bit (a score's IEEE bits, a rejection's version, code and message).
fn same(a: &Verdict, b: &Verdict) -> bool {
    match (a, b) {
        (Verdict::Scored { score: x }, Verdict::Scored { score: y }) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}
