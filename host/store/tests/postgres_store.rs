//! What only the PostgreSQL store has: schema versions in the database, several stores
//! (replicas) on one database, the database's own guards on money, and the errors of a
//! bad or unreachable database.

mod support;

use gigaspot_market::money::Amount;
use gigaspot_store::{PG_SCHEMA_VERSION, PgStore, Store, StoreError};
use gigaspot_tests::postgres::Postgres;
use support::{market, terms};

fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let server = Postgres::shared();
    let url = server.fresh_database();
    let db = database_name(&url);
    {
        let store = PgStore::open(&url).unwrap();
        market(&store);
    }
    let accounts = server.psql(db, "SELECT count(*) FROM accounts").unwrap();
    server
        .psql(db, "INSERT INTO gigaspot_schema (version) VALUES (99)")
        .unwrap();
    match PgStore::open(&url) {
        Err(StoreError::NewerSchema {
            found, supported, ..
        }) => assert_eq!((found, supported), (99, PG_SCHEMA_VERSION)),
        Err(other) => panic!("expected a schema refusal, got {other}"),
        Ok(_) => panic!("a newer schema was opened"),
    }
    assert_eq!(
        server.psql(db, "SELECT count(*) FROM accounts").unwrap(),
        accounts
    );
}

#[test]
fn a_version_2_database_gets_its_machines_rewritten_for_the_background_job() {
    let server = Postgres::shared();
    let url = server.fresh_database();
    let db = database_name(&url);
    let m = {
        let store = PgStore::open(&url).unwrap();
        market(&store)
    };
    // Back to version 2: the record as it was written then is the current one without
    // the four trailing bytes of the new fields (no background status, no job, zero
    // earnings, explicit ceilings).
    server
        .psql(
            db,
            "UPDATE machines SET record = substring(record from 1 for length(record) - 4); \
             DROP TABLE standing_orders; DELETE FROM gigaspot_schema WHERE version >= 3",
        )
        .unwrap();
    let store = PgStore::open(&url).unwrap();
    let machine = store.machine(m.machine.id).unwrap().unwrap();
    assert_eq!(machine.gpus, m.machine.gpus);
    assert_eq!(machine.background, None);
    assert_eq!(machine.background_earnings, Amount::ZERO);
    // The host had lowered its ceilings below the cards' maximum: they stay its own.
    assert!(machine.explicit_ceilings);
    assert!(machine.live.online);
    assert_eq!(
        server
            .psql(db, "SELECT max(version) FROM gigaspot_schema")
            .unwrap(),
        PG_SCHEMA_VERSION.to_string()
    );
}

#[test]
fn stores_on_one_database_see_each_others_writes_at_once() {
    let url = Postgres::shared().fresh_database();
    let (a, b) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
    let m = market(&a);
    let before = b.generation();
    let bid = a
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), 1, None)
        .unwrap();
    assert_ne!(
        b.generation(),
        before,
        "the other replica's caches see a change"
    );
    assert_eq!(b.bid(bid.id).unwrap(), Some(bid.clone()));
    b.deposit(m.alice, Amount::clore(5), "from-b", 2).unwrap();
    assert_eq!(a.balance(m.alice).unwrap(), Amount::clore(1005));
    // Both opened the same market: the same operator accounts, not a second set.
    assert_eq!(a.fee_account(), b.fee_account());
    assert_eq!(
        a.pending_withdrawals_account(),
        b.pending_withdrawals_account()
    );
    a.audit().unwrap();
}

#[test]
fn the_database_refuses_a_second_booking_of_a_transfer_id_and_a_negative_balance() {
    let server = Postgres::shared();
    let url = server.fresh_database();
    let store = PgStore::open(&url).unwrap();
    let m = market(&store);
    let db = database_name(&url);
    let twice = server.psql(
        db,
        "INSERT INTO transfers (seq, id, amount, record) VALUES (1000, 'deposit:alice-1', 1, '\\x00')",
    );
    assert!(
        twice.as_ref().is_err_and(|e| e.contains("duplicate key")),
        "{twice:?}"
    );
    let negative = server.psql(
        db,
        &format!(
            "UPDATE balances SET amount = -1 WHERE account = {}",
            m.alice
        ),
    );
    assert!(
        negative
            .as_ref()
            .is_err_and(|e| e.contains("check constraint")),
        "{negative:?}"
    );
    store.audit().unwrap();
}

#[test]
fn a_bad_or_unreachable_database_is_refused_with_the_reason() {
    match PgStore::open("mysql://somewhere/db") {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "database_url"),
        Err(other) => panic!("expected a refusal of the URL, got {other}"),
        Ok(_) => panic!("a MySQL URL was opened"),
    }
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match PgStore::open(&format!("postgres://gigaspot@127.0.0.1:{port}/none")) {
        Err(StoreError::Backend(why)) => assert!(why.contains("cannot reach"), "{why}"),
        Err(other) => panic!("expected a backend failure, got {other}"),
        Ok(_) => panic!("an unreachable database was opened"),
    }
}

#[test]
fn a_replica_that_lost_the_clearers_lease_cannot_commit_a_tick() {
    use gigaspot_market::{PricePerWatt, StrategyOnly};
    use gigaspot_store::IntervalEngine;
    use std::time::Duration;

    const T0: u64 = 1_800_000_000;
    let url = Postgres::shared().fresh_database();
    let (a, b) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
    let m = market(&a);
    a.place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, None)
        .unwrap();
    let plugins = StrategyOnly(PricePerWatt::new());
    // A takes the lease; while it holds it, B cannot.
    let ttl = Duration::from_millis(300);
    let epoch = a.clearer_lease("replica-a", ttl).unwrap().unwrap();
    assert_eq!(b.clearer_lease("replica-b", ttl).unwrap(), None);
    let engine_a = IntervalEngine::without_audit(&a, &plugins);
    engine_a.tick(T0).unwrap();
    // A stops renewing (paused, cut off): once the lease expires B takes it, with a
    // higher epoch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(e) = b
            .clearer_lease("replica-b", Duration::from_secs(30))
            .unwrap()
        {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(taken > epoch);
    // A wakes up and tries to clear the next interval: refused, nothing written.
    let balances = a.balances().unwrap();
    let err = engine_a.tick(T0 + 60).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert_eq!(a.cleared_through().unwrap(), Some(T0 / 60));
    assert_eq!(a.balances().unwrap(), balances);
    // Nor can it take the lease back while B holds it; B clears the interval.
    assert_eq!(a.clearer_lease("replica-a", ttl).unwrap(), None);
    IntervalEngine::without_audit(&b, &plugins)
        .tick(T0 + 60)
        .unwrap();
    assert_eq!(b.cleared_through().unwrap(), Some(T0 / 60 + 1));
    b.audit().unwrap();
}

#[test]
fn a_sled_market_moves_to_postgresql_whole_and_goes_on_charging() {
    use gigaspot_market::ledger::charge_id;
    use gigaspot_market::{PricePerWatt, StrategyOnly};
    use gigaspot_store::{IntervalEngine, PluginVersionRecord, SledStore};

    const T0: u64 = 1_800_000_000;
    let k = T0 / 60;
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    let m = market(&sled);
    sled.add_api_key(m.alice, [7; 32]).unwrap();
    sled.set_agent_token(m.machine.id, [9; 32]).unwrap();
    let bid = sled
        .place_bid(m.alice, &terms(m.machine.id, 100, 300), T0, Some("k"))
        .unwrap();
    let other = sled
        .place_bid(m.bob, &terms(m.machine.id, 50, 300), T0, None)
        .unwrap();
    sled.cancel_bid(m.bob, other.id, T0 + 1).unwrap();
    let (withdrawal, _) = sled
        .request_withdrawal(m.bob, Amount::clore(10), "wallet", Some("w"), T0 + 2)
        .unwrap();
    sled.put_plugin_version(&PluginVersionRecord {
        digest: "sha256:ab".into(),
        name: "price-per-watt".into(),
        version: "0.1.0".into(),
        kind: "strategy".into(),
        config: String::new(),
        installed_at: 5,
        wasm: vec![0, 97, 115, 109],
    })
    .unwrap();
    // Interval k is served and charged on sled; k + 1 is served but not settled yet.
    let plugins = StrategyOnly(PricePerWatt::new());
    let engine = IntervalEngine::without_audit(&sled, &plugins);
    engine.tick(T0).unwrap();
    sled.record_served(m.machine.id, k, bid.id).unwrap();
    engine.tick(T0 + 60).unwrap();
    sled.record_served(m.machine.id, k + 1, bid.id).unwrap();

    let url = Postgres::shared().fresh_database();
    let pg = PgStore::import(&url, &sled.export().unwrap()).unwrap();
    assert_eq!(pg.balances().unwrap(), sled.balances().unwrap());
    assert_eq!(pg.transfers().unwrap(), sled.transfers().unwrap());
    assert_eq!(
        pg.bids_on(m.machine.id).unwrap(),
        sled.bids_on(m.machine.id).unwrap()
    );
    assert_eq!(pg.machines().unwrap(), sled.machines().unwrap());
    assert_eq!(pg.account(m.alice).unwrap(), sled.account(m.alice).unwrap());
    assert_eq!(pg.account_by_key(&[7; 32]).unwrap(), Some(m.alice));
    assert_eq!(
        pg.machine_by_agent_token(&[9; 32]).unwrap(),
        Some(m.machine.id)
    );
    assert_eq!(
        pg.withdrawal(withdrawal.id).unwrap(),
        Some(withdrawal.clone())
    );
    assert_eq!(
        pg.plugin_versions().unwrap(),
        sled.plugin_versions().unwrap()
    );
    assert_eq!(pg.params().unwrap(), sled.params().unwrap());
    assert_eq!(pg.interval_clock().unwrap(), sled.interval_clock().unwrap());
    assert_eq!(
        pg.cleared_through().unwrap(),
        sled.cleared_through().unwrap()
    );
    assert_eq!(
        pg.assignment(m.machine.id).unwrap(),
        sled.assignment(m.machine.id).unwrap()
    );
    assert_eq!(pg.fee_account(), sled.fee_account());
    assert_eq!(
        pg.pending_withdrawals_account(),
        sled.pending_withdrawals_account()
    );
    // Idempotency keys came along, and new ids continue after the old ones.
    let again = pg
        .place_bid_keyed(m.alice, &terms(m.machine.id, 100, 300), T0 + 70, Some("k"))
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.bid, bid);
    let next = pg
        .place_bid(m.bob, &terms(m.machine.id, 60, 300), T0 + 70, None)
        .unwrap();
    assert!(next.id > withdrawal.id && next.id > other.id);
    // The interval served on sled and not yet settled is charged once, on PostgreSQL.
    IntervalEngine::without_audit(&pg, &plugins)
        .tick(T0 + 120)
        .unwrap();
    let charges: Vec<_> = pg
        .transfers()
        .unwrap()
        .into_iter()
        .filter(|t| t.id == charge_id(m.machine.id, k + 1) || t.id == charge_id(m.machine.id, k))
        .collect();
    assert_eq!(charges.len(), 2, "{charges:?}");
    pg.audit().unwrap();
    // A database that holds a market is never written over.
    match PgStore::import(&url, &sled.export().unwrap()) {
        Err(StoreError::Invalid { field, .. }) => assert_eq!(field, "to"),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("a market was imported over another"),
    }
}
