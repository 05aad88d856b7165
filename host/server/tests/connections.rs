//! Connections that hold: a client trickling headers (slowloris) and an idle keep-alive
//! connection are closed after `header_read_timeout_ms`; connections are capped per client
//! network and in total, and a slot frees when its connection closes; the request deadline
//! answers 408 only for requests that did not reach the store, so a 408 never hides a
//! created order. All on loopback, bounded in time and count.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Market;

fn addr(m: &Market) -> String {
    m.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or 10 s pass) and answers how long that
/// took and what came.
fn until_closed(stream: &mut TcpStream) -> (Duration, String) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return (started.elapsed(), String::from_utf8_lossy(&got).into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn health_over(stream: &mut TcpStream, addr: &str) -> String {
    write!(
        stream,
        "GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let m = Market::start(|c| c.header_read_timeout_ms = 600).await;
    let a = addr(&m);
    tokio::task::spawn_blocking(move || {
        // Slowloris: a header line every 100 ms never completes the head.
        let mut slow = TcpStream::connect(&a).unwrap();
        write!(slow, "GET /api/v1/health HTTP/1.1\r\nHost: {a}\r\n").unwrap();
        let started = Instant::now();
        let mut closed_after = None;
        for i in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if write!(slow, "X-Trickle-{i}: y\r\n")
                .and_then(|()| slow.flush())
                .is_err()
            {
                closed_after = Some(started.elapsed());
                break;
            }
            slow.set_nonblocking(true).unwrap();
            let mut probe = [0u8; 1];
            let closed = matches!(slow.read(&mut probe), Ok(0));
            slow.set_nonblocking(false).unwrap();
            if closed {
                closed_after = Some(started.elapsed());
                break;
            }
        }
        let after = closed_after.expect("a trickling client is never cut off");
        assert!(
            after < Duration::from_secs(3),
            "closed only after {after:?}"
        );

        // Keep-alive: one answered request, then silence.
        let mut idle = TcpStream::connect(&a).unwrap();
        let answer = health_over(&mut idle, &a);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (after, _) = until_closed(&mut idle);
        assert!(
            after >= Duration::from_millis(300) && after < Duration::from_secs(3),
            "idle connection closed after {after:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_client_and_in_total() {
    let m = Market::start(|c| {
        c.max_connections_per_client = 4;
        c.header_read_timeout_ms = 20_000;
    })
    .await;
    let a = addr(&m);
    tokio::task::spawn_blocking(move || {
        let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&a).unwrap()).collect();
        // Each held connection is served: the cap is about open connections.
        let mut first = held.into_iter().collect::<Vec<_>>();
        assert!(health_over(&mut first[0], &a).starts_with("HTTP/1.1 200"));
        // A fifth from the same network is closed without an answer.
        let mut fifth = TcpStream::connect(&a).unwrap();
        let _ = write!(fifth, "GET /api/v1/health HTTP/1.1\r\nHost: {a}\r\n\r\n");
        let (after, got) = until_closed(&mut fifth);
        assert!(got.is_empty(), "over the cap but answered: {got}");
        assert!(after < Duration::from_secs(2), "{after:?}");
        // Closing one frees its slot.
        drop(first.pop());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut again = TcpStream::connect(&a).unwrap();
            let answer = health_over(&mut again, &a);
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the slot never freed");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();

    let m = Market::start(|c| {
        c.max_connections = 3;
        c.header_read_timeout_ms = 20_000;
    })
    .await;
    let a = addr(&m);
    tokio::task::spawn_blocking(move || {
        let _held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&a).unwrap()).collect();
        let mut fourth = TcpStream::connect(&a).unwrap();
        let _ = write!(fourth, "GET /api/v1/health HTTP/1.1\r\nHost: {a}\r\n\r\n");
        let (_, got) = until_closed(&mut fourth);
        assert!(got.is_empty(), "over the total cap but answered: {got}");
    })
    .await
    .unwrap();
}

/// One `/v1` batch of `n` orders for `machine`.
fn batch(machine: u64, n: usize, first_price: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"currency": "CLORE-Blockchain", "image": "registry.example/app:1", "renting_server": machine, "price": 10 + first_price + i, "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_never_answers_408_for_orders_it_created() {
    let setup = Market::start(|_| {}).await;
    let (_, machine, _) = setup.machine().await;
    let (_, key) = setup.funded_client("bot", 1_000_000.0).await;
    let dir = setup.stop_keeping_data().await;
    // The same market with a 2 ms deadline: far shorter than a batch of 100 orders takes.
    let m = Market::start_in(dir, |c| {
        c.request_timeout_ms = 2;
        c.rate_limit_per_minute = 0;
    })
    .await;

    // Bodies that stop half-way: the deadline passes while the request is read, before
    // anything reached the store; these are answered 408 and create nothing.
    let address = addr(&m);
    let mut slow = Vec::new();
    for k in 0..3 {
        let (address, key) = (address.clone(), key.clone());
        let body = batch(machine, 5, 100_000 + k * 10).to_string();
        slow.push(tokio::task::spawn_blocking(move || {
            let mut stream = TcpStream::connect(&address).unwrap();
            write!(
                stream,
                "POST /v1/create_gigaspot_orders HTTP/1.1\r\nHost: {address}\r\nauth: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                body.len(),
                &body[..body.len() / 2]
            )
            .unwrap();
            until_closed(&mut stream).1
        }));
    }
    for answer in slow {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    // Eight bots send batches of 100 orders at once.
    let mut bots = Vec::new();
    for bot in 0..8 {
        let (http, base, key) = (m.http.clone(), m.base.clone(), key.clone());
        bots.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..6 {
                let started = Instant::now();
                let resp = http
                    .post(format!("{base}/v1/create_gigaspot_orders"))
                    .header("auth", &key)
                    .json(&batch(machine, 100, (bot * 6 + round) * 100))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                answers.push((status, body, started.elapsed()));
            }
            answers
        }));
    }
    let mut acknowledged = 0;
    let mut timed_out = 0;
    let mut slow_but_answered = 0;
    for bot in bots {
        for (status, body, took) in bot.await.unwrap() {
            match status {
                200 => {
                    let failed = body["failed_to_rent_servers"].as_array().unwrap().len();
                    acknowledged += 100 - failed;
                    if took > Duration::from_millis(2) {
                        slow_but_answered += 1;
                    }
                }
                408 => timed_out += 1,
                other => panic!("{other}: {body}"),
            }
        }
    }
    let resp = m
        .http
        .get(format!("{}/v1/my_orders", m.base))
        .header("auth", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mine: Value = resp.json().await.unwrap();
    let orders = mine["my_orders"].as_array().unwrap().len();
    assert_eq!(
        orders, acknowledged,
        "orders in the market vs acknowledged ({timed_out} batches answered 408)"
    );
    // Requests that outlived the deadline inside the store got their real answer.
    assert!(slow_but_answered > 0);
}
