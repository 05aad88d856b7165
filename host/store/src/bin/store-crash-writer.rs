//! `store-crash-writer DATA_DIR`: writes to a market store as fast as it can, forever,
//! printing one line per acknowledged write (`bid <id>`, `deposit <reference>`,
//! `tick <interval>`, `served <machine> <interval>`). The crash test kills it with
//! SIGKILL at random moments and checks that every acknowledged write survived.

use std::io::Write;

use gigaspot_market::account::Role;
use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
use gigaspot_market::machine::Gpu;
use gigaspot_market::money::Amount;
use gigaspot_market::{PricePerWatt, StrategyOnly};
use gigaspot_store::{IntervalEngine, MachineSpec, SledStore, Store};

const T0: u64 = 1_800_000_000;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: store-crash-writer DATA_DIR");
    let store = SledStore::open(&dir).expect("open the store");
    let plugins = StrategyOnly(PricePerWatt::new());
    let (engine, _) = IntervalEngine::start(&store, &plugins).expect("audit passes");
    let (machine, clients) = setup(&store);
    let ack = |line: String| {
        // The line is written only after the store acknowledged the write.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .expect("stdout");
    };
    let mut interval = store
        .tick_snapshot()
        .expect("snapshot")
        .cleared_through
        .unwrap_or(T0 / 60);
    let start = interval * 60;
    std::thread::scope(|scope| {
        // Concurrent bidders: their writes share flushes with the main loop's (group
        // commit), so a kill also lands between a write and the flush that covers it.
        for thread in 0..3u64 {
            let (store, ack) = (&store, &ack);
            scope.spawn(move || {
                for n in 0u64.. {
                    let terms = bid_terms(machine, n + thread);
                    let bid = store
                        .place_bid(clients[(thread % 2) as usize], &terms, start, None)
                        .expect("bid admitted");
                    ack(format!("bid {}", bid.id));
                }
            });
        }
        for n in 0u64.. {
            let client = clients[(n % 2) as usize];
            let bid = store
                .place_bid(client, &bid_terms(machine, n), interval * 60, None)
                .expect("bid admitted");
            ack(format!("bid {}", bid.id));
            if n % 5 == 0 {
                let reference = format!("top-up-{}-{n}", std::process::id());
                store
                    .deposit(client, Amount::clore(1), &reference, interval * 60)
                    .expect("deposit");
                ack(format!("deposit {reference}"));
            }
            if n % 3 == 0 {
                interval += 1;
                engine.tick(interval * 60).expect("tick");
                ack(format!("tick {interval}"));
                if let Some(w) = store
                    .assignment(machine)
                    .expect("assignment")
                    .and_then(|a| a.winner)
                {
                    store
                        .record_served(machine, interval, w.bid)
                        .expect("served");
                    ack(format!("served {machine} {interval}"));
                }
            }
        }
    });
}

/// The `n`th bid's terms: prices and power limits vary so that the winner changes.
fn bid_terms(machine: u64, n: u64) -> BidTerms {
    BidTerms {
        machine,
        price_per_day: Amount::clore(50 + n % 500),
        image: "registry.example/app:1".into(),
        env: Default::default(),
        oc: vec![
            OcRequest {
                pl: Some(150 + (n % 250) as u32),
                ..OcRequest::default()
            };
            2
        ],
        lifetime: Lifetime::Explicit(86_400),
    }
}

/// The market of the first run; later runs find it in the store.
fn setup(store: &SledStore) -> (u64, [u64; 2]) {
    if let Some(m) = store.machines().expect("machines").first() {
        return (m.id, [m.id + 1, m.id + 2]);
    }
    let host = store
        .create_account("host", &[Role::Host])
        .expect("host")
        .id;
    let spec = MachineSpec {
        host,
        facts: Default::default(),
        gpus: (0..2)
            .map(|i| Gpu {
                model: "NVIDIA GeForce RTX 3090".into(),
                uuid: format!("GPU-{i}"),
                card_min_w: 100,
                card_max_w: 400,
                ceiling_w: 400,
            })
            .collect(),
        energy_price_usd_per_kwh: 0.1,
        reserve_price: Amount::ZERO,
        max_rental_length_s: 30 * 86_400,
        background: None,
        background_earnings: Amount::ZERO,
        explicit_ceilings: true,
    };
    let machine = store.register_machine(spec).expect("machine");
    gigaspot_store::testing::bring_online(store, machine.id).expect("online");
    let a = store
        .create_account("a", &[Role::Client])
        .expect("client")
        .id;
    let b = store
        .create_account("b", &[Role::Client])
        .expect("client")
        .id;
    assert_eq!((a, b), (machine.id + 1, machine.id + 2));
    store
        .deposit(a, Amount::clore(100_000), "seed-a", T0)
        .expect("deposit");
    store
        .deposit(b, Amount::clore(100_000), "seed-b", T0)
        .expect("deposit");
    (machine.id, [a, b])
}
