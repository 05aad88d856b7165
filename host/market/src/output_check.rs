//! The contract every plugin answer must meet before the market uses it.

use std::collections::{HashMap, HashSet};

use crate::context::CandidateBid;
use crate::verdict::{PluginFault, Rejection, Score};

/// Longest rejection code the market stores, in bytes.
pub const MAX_REJECTION_CODE_LEN: usize = 64;
/// Longest rejection message the market stores, in bytes.
pub const MAX_REJECTION_MESSAGE_LEN: usize = 1024;

/// Checks that `scores` names each bid of `bids` exactly once, with finite scores.
pub fn check_scores(bids: &[CandidateBid], scores: &[Score]) -> Result<(), PluginFault> {
    if scores.len() != bids.len() {
        return Err(bad(format!(
            "{} scores for {} bids: each bid must be scored exactly once",
            scores.len(),
            bids.len()
        )));
    }
    if let Some(s) = scores.iter().find(|s| !s.score.is_finite()) {
        return Err(bad(format!(
            "bid {} has a non-finite score ({})",
            s.bid_id, s.score
        )));
    }
    // Plugins usually answer in input order: then each (distinct) bid is scored once,
    // which a pass without hashing shows.
    if scores.iter().zip(bids).all(|(s, b)| s.bid_id == b.id) {
        return Ok(());
    }
    // Map each input id to whether it has been scored yet.
    let mut seen: HashMap<u64, bool> = bids.iter().map(|b| (b.id, false)).collect();
    for s in scores {
        match seen.get_mut(&s.bid_id) {
            None => return Err(bad(format!("score for unknown bid {}", s.bid_id))),
            Some(true) => return Err(bad(format!("bid {} scored twice", s.bid_id))),
            Some(scored) => *scored = true,
        }
    }
    Ok(())
}

/// Checks that every rejection names a known bid at most once, with a short kebab-case
/// code and a bounded message.
pub fn check_rejections(
    bids: &[CandidateBid],
    rejections: &[Rejection],
) -> Result<(), PluginFault> {
    let known: HashSet<u64> = bids.iter().map(|b| b.id).collect();
    let mut rejected = HashSet::with_capacity(rejections.len());
    for r in rejections {
        if !known.contains(&r.bid_id) {
            return Err(bad(format!("rejection of unknown bid {}", r.bid_id)));
        }
        if !rejected.insert(r.bid_id) {
            return Err(bad(format!("bid {} rejected twice", r.bid_id)));
        }
        if !is_reason_code(&r.code) {
            return Err(bad(format!(
                "rejection of bid {} has code {:?}: codes are 1 to {MAX_REJECTION_CODE_LEN} \
                 characters of a-z, 0-9 and '-'",
                r.bid_id, r.code
            )));
        }
        if r.message.len() > MAX_REJECTION_MESSAGE_LEN {
            return Err(bad(format!(
                "rejection of bid {} has a message of {} bytes (limit {MAX_REJECTION_MESSAGE_LEN})",
                r.bid_id,
                r.message.len()
            )));
        }
    }
    Ok(())
}

fn is_reason_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_REJECTION_CODE_LEN
        && code
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn bad(message: String) -> PluginFault {
    PluginFault::BadOutput(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(id: u64) -> CandidateBid {
        CandidateBid {
            id,
            owner_id: 1,
            price_per_day: 1,
            oc: vec![],
            total_power_limit_w: 100,
            created_at: 0,
            image: "img".into(),
            env_keys: vec![],
        }
    }

    fn score(bid_id: u64, score: f64) -> Score {
        Score { bid_id, score }
    }

    fn reject(bid_id: u64, code: &str) -> Rejection {
        Rejection {
            bid_id,
            code: code.into(),
            message: "no".into(),
        }
    }

    #[test]
    fn accepts_each_bid_once_in_any_order_with_any_finite_score() {
        let bids = [bid(1), bid(2), bid(3)];
        let scores = [score(3, -1.0), score(1, 0.0), score(2, 7.5)];
        assert_eq!(check_scores(&bids, &scores), Ok(()));
    }

    #[test]
    fn rejects_missing_duplicate_unknown_and_non_finite_scores() {
        let bids = [bid(1), bid(2)];
        let cases: [&[Score]; 5] = [
            &[score(1, 1.0)],
            &[score(1, 1.0), score(1, 2.0)],
            &[score(1, 1.0), score(9, 2.0)],
            &[score(1, 1.0), score(2, f64::NAN)],
            &[score(1, f64::INFINITY), score(2, 1.0)],
        ];
        for scores in cases {
            assert!(
                matches!(check_scores(&bids, scores), Err(PluginFault::BadOutput(_))),
                "{scores:?} must be refused"
            );
        }
    }

    #[test]
    fn rejections_must_be_known_unique_and_well_formed() {
        let bids = [bid(1), bid(2)];
        assert_eq!(
            check_rejections(&bids, &[reject(2, "image-denied")]),
            Ok(())
        );
        assert_eq!(check_rejections(&bids, &[]), Ok(()));
        let long_code = "a".repeat(MAX_REJECTION_CODE_LEN + 1);
        let cases = [
            vec![reject(3, "x")],
            vec![reject(1, "x"), reject(1, "y")],
            vec![reject(1, "")],
            vec![reject(1, "Image Denied")],
            vec![reject(1, &long_code)],
            vec![Rejection {
                bid_id: 1,
                code: "x".into(),
                message: "m".repeat(MAX_REJECTION_MESSAGE_LEN + 1),
            }],
        ];
        for rejections in cases {
            assert!(
                matches!(
                    check_rejections(&bids, &rejections),
                    Err(PluginFault::BadOutput(_))
                ),
                "{rejections:?} must be refused"
            );
        }
    }
}
