//! Rate limits: a keyed GCRA limiter (the `governor` crate) per API key, and one per client
//! network for requests that carry no valid credential (registration, the public views,
//! guessed keys). The client's address is the project's own (see [`client_address`]): it is
//! stricter about `X-Forwarded-For` than generic middleware.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::key_hash;

/// Checks between two sweeps of callers whose budget is full again (so the key map stays
/// bounded by the callers of the last few minutes).
const SWEEP_EVERY: u64 = 1 << 16;

/// A request budget per caller (a key hash or a network's hash).
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl RateLimiter {
    /// Allows `per_minute` requests a minute per caller, in bursts of up to that many.
    /// Zero disables the limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            limiter: NonZeroU32::new(per_minute)
                .map(|n| governor::RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Whether the limit is off (0 per minute).
    pub fn is_unlimited(&self) -> bool {
        self.limiter.is_none()
    }

    /// Takes one request from `caller`'s budget; when none is left, the whole seconds until
    /// one is.
    pub fn check(&self, caller: [u8; 32]) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }

    /// Callers with a budget in use.
    pub fn tracked_callers(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

/// Middleware: a request without a known API key or agent token takes a token from its
/// network's bucket (`anonymous_rate_limit_per_minute`). Keyed requests are limited per key
/// where the key is checked. An unknown key counts as anonymous, so rotating made-up keys
/// does not escape the limit.
pub async fn limit_anonymous(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.anonymous_limiter.is_unlimited() || holds_credential(&state, request.headers()) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = peer.map(|p| client_address(p, request.headers(), &state.config.trusted_proxies));
    match state.anonymous_limiter.check(network_key(client)) {
        Ok(()) => next.run(request).await,
        // The Clore-compatible surface answers in its own error shape.
        Err(wait) if request.uri().path().starts_with("/v1/") => {
            crate::api_clore::rate_limited(wait).into_response()
        }
        Err(wait) => ApiError::rate_limited_anonymous(wait).into_response(),
    }
}

/// Whether the request carries an API key (`Authorization: Bearer`, or Clore's `auth`
/// header) or an agent token that the store knows. Both are in the store's in-memory
/// working set, so this is a map lookup, done inline rather than on the blocking pool.
fn holds_credential(state: &AppState, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let clore = headers.get("auth").and_then(|v| v.to_str().ok());
    let Some(secret) = bearer.or(clore) else {
        return false;
    };
    let hash = key_hash(secret.trim());
    matches!(state.store.account_by_key(&hash), Ok(Some(_)))
        || matches!(state.store.machine_by_agent_token(&hash), Ok(Some(_)))
}

/// The client behind `peer`: `peer` itself, unless it is a trusted reverse proxy; then the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (entries to its left are
/// the client's own claims and could be forged). Unparsable entries stop the walk.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        if !trusted.contains(&client) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(address) => client = address,
            Err(_) => break,
        }
    }
    client
}

/// A peer's network: its IPv4 address, or its IPv6 /64 (one subscriber's usual
/// allocation, so walking the addresses of one prefix does not multiply a budget or a cap).
pub fn network_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The bucket of a peer: its network (see [`network_of`]). Without a recorded peer (a
/// router served without connection info) all share one.
fn network_key(peer: Option<IpAddr>) -> [u8; 32] {
    let network = match peer.map(network_of) {
        Some(IpAddr::V4(v4)) => format!("v4:{v4}"),
        Some(IpAddr::V6(v6)) => format!("v6:{v6}/64"),
        None => "unknown".to_string(),
    };
    Sha256::digest(network.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.0.0.1");
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(ip("192.0.2.1"), &headers, &[proxy]),
            ip("192.0.2.1")
        );
        // Behind the proxy, the rightmost hop counts, not the client's own claim to its left.
        assert_eq!(
            client_address(proxy, &headers, &[proxy]),
            ip("198.51.100.7")
        );
        // Behind two trusted proxies, the hop before them.
        let inner = ip("10.0.0.2");
        headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.1".parse().unwrap());
        assert_eq!(
            client_address(inner, &headers, &[proxy, inner]),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at the proxy.
        headers.insert("x-forwarded-for", "not-an-address".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &[proxy]), proxy);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &[proxy]), proxy);
    }

    #[test]
    fn networks_share_a_bucket_by_ipv4_address_or_ipv6_prefix() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            network_key(ip("2001:db8:1:2::1")),
            network_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            network_key(ip("2001:db8:1:2::1")),
            network_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            network_key(ip("::ffff:192.0.2.7")),
            network_key(ip("192.0.2.7"))
        );
        assert_ne!(network_key(ip("192.0.2.7")), network_key(ip("192.0.2.8")));
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_whole_seconds() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(limiter.check([1; 32]), Ok(()));
        }
        let wait = limiter.check([1; 32]).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another caller has its own bucket.
        assert_eq!(limiter.check([2; 32]), Ok(()));
        assert_eq!(RateLimiter::new(0).check([1; 32]), Ok(()));
    }

    #[test]
    fn callers_whose_budget_is_full_again_are_forgotten() {
        // 1,000 a second: a caller that made one request has its whole budget back 1 ms later.
        let limiter = RateLimiter::new(60_000);
        for k in 0..1000u32 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&k.to_le_bytes());
            assert_eq!(limiter.check(key), Ok(()));
        }
        assert_eq!(limiter.tracked_callers(), 1000);
        // Keep one caller busy until a sweep has run and forgotten the idle ones.
        let busy = [0xff; 32];
        let mut checks = 0;
        while limiter.tracked_callers() > 1 {
            let _ = limiter.check(busy);
            checks += 1;
            assert!(checks <= 4 * SWEEP_EVERY, "no sweep after {checks} checks");
        }
    }
}
