//! A strategy of a contract version the runtime does not implement
//! (`gigaspot:plugin@9.0.0`): it must be refused at load with the supported versions named.

wit_bindgen::generate!({ world: "strategy", path: "wit" });

struct Future;

impl Guest for Future {
    fn info() -> String {
        "future-contract".into()
    }

    fn configure(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn rank(prices: Vec<u64>) -> Vec<f64> {
        prices.into_iter().map(|p| p as f64).collect()
    }
}

export!(Future);
