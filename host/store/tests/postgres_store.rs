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
