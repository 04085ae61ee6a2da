//! The buckets of every scope: a session's own, and the ones its user and organisation share
//! with their other sessions.
//!
//! A session fetches its user's and organisation's buckets once, when it opens, and keeps them
//! (`Arc`), so a request costs no map lookup: it locks at most two small mutexes, always the
//! user's before the organisation's, for a few integer operations. A refusal takes no tokens and
//! does no other work, so a flood is refused at the cost of reading it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use herald_protocol::{ErrorCode, OrgId, UserId};

use super::bucket::{Denied, Take, TokenBucket, take_all};
use super::class::{Class, Demand, Scope};
use crate::auth::Identity;
use crate::config::RateLimitsConfig;

/// One scope's buckets, one per [`Class`].
#[derive(Debug, Clone)]
struct Buckets {
    sends: TokenBucket,
    bytes: TokenBucket,
    group_creations: TokenBucket,
    requests: TokenBucket,
}

impl Buckets {
    /// The buckets of `scope`; an organisation's (`org` set) follow its own override if any.
    fn new(config: &RateLimitsConfig, scope: Scope, org: Option<&OrgId>, now: Instant) -> Self {
        let bucket = |class| {
            let limit = match org {
                Some(org) => config.org_limit(org, class),
                None => config.limit(scope, class),
            };
            TokenBucket::new(limit.per_second, limit.burst, now)
        };
        Self {
            sends: bucket(Class::Sends),
            bytes: bucket(Class::Bytes),
            group_creations: bucket(Class::GroupCreations),
            requests: bucket(Class::Requests),
        }
    }

    /// Each class's bucket, borrowed apart so that one request can charge several.
    fn iter_mut(&mut self) -> impl Iterator<Item = (Class, &mut TokenBucket)> {
        let Buckets { sends, bytes, group_creations, requests } = self;
        [
            (Class::Sends, sends),
            (Class::Bytes, bytes),
            (Class::GroupCreations, group_creations),
            (Class::Requests, requests),
        ]
        .into_iter()
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.iter_mut().all(|(_, bucket)| bucket.is_full(now))
    }
}

type Shared = Arc<Mutex<Buckets>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Buckets> {
    // The critical sections are arithmetic that cannot panic half-way; a poisoned lock still
    // guards consistent buckets.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The broker's registry of user and organisation buckets.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitsConfig,
    users: DashMap<(OrgId, UserId), Shared>,
    orgs: DashMap<OrgId, Shared>,
}

impl RateLimiter {
    /// A registry enforcing `config`.
    pub fn new(config: RateLimitsConfig) -> Self {
        Self { config, users: DashMap::new(), orgs: DashMap::new() }
    }

    /// The limiter of a session opened at `now` by `identity`; `None` when limits are off.
    pub fn session(&self, identity: &Identity, now: Instant) -> Option<SessionLimiter> {
        if !self.config.enabled {
            return None;
        }
        let shared = |scope, org| Arc::new(Mutex::new(Buckets::new(&self.config, scope, org, now)));
        let user_key = (identity.org.clone(), identity.user.clone());
        let user = self.users.entry(user_key).or_insert_with(|| shared(Scope::User, None)).clone();
        let org =
            self.orgs.entry(identity.org.clone()).or_insert_with(|| shared(Scope::Org, Some(&identity.org))).clone();
        Some(SessionLimiter { session: Buckets::new(&self.config, Scope::Session, None, now), user, org })
    }

    /// Forgets the buckets that no session holds and that have refilled completely: they carry
    /// nothing a fresh bucket would not, so memory follows the users online, not all users ever
    /// seen. Call it now and then (it visits every entry). Returns how many were dropped.
    pub fn sweep(&self, now: Instant) -> usize {
        let before = self.users.len() + self.orgs.len();
        let keep = |shared: &Shared| Arc::strong_count(shared) > 1 || !lock(shared).is_full(now);
        self.users.retain(|_, shared| keep(shared));
        self.orgs.retain(|_, shared| keep(shared));
        before.saturating_sub(self.users.len() + self.orgs.len())
    }

    /// How many user and organisation bucket sets are held.
    pub fn tracked(&self) -> (usize, usize) {
        (self.users.len(), self.orgs.len())
    }
}

/// One session's view of its limits: its own buckets, and its user's and organisation's.
#[derive(Debug)]
pub struct SessionLimiter {
    session: Buckets,
    user: Shared,
    org: Shared,
}

impl SessionLimiter {
    /// Charges `demand` at `now` to every scope, or to none.
    ///
    /// # Errors
    /// [`Limited`] naming the limit that refused, with the wait after which it would admit.
    pub fn admit(&mut self, demand: Demand, now: Instant) -> Result<(), Limited> {
        // A flooding session is refused by its own buckets without touching the shared locks,
        // so it cannot slow its user's or organisation's other sessions by contention.
        for (class, bucket) in self.session.iter_mut() {
            let Some(cost) = demand.cost(class) else { continue };
            match bucket.wait(cost, now) {
                Ok(wait) if wait.is_zero() => {}
                Ok(retry_after) => return Err(Limited::Exceeded { scope: Scope::Session, class, retry_after }),
                Err(_) => return Err(Limited::OverBurst { scope: Scope::Session, class, cost, burst: bucket.burst() }),
            }
        }
        let mut user = lock(&self.user);
        let mut org = lock(&self.org);
        // Narrowest scope first: on a tie in waits the narrowest limit is the one reported.
        let mut takes = Vec::with_capacity(6);
        let mut labels = Vec::with_capacity(6);
        let scopes: [(Scope, &mut Buckets); 3] =
            [(Scope::Session, &mut self.session), (Scope::User, &mut user), (Scope::Org, &mut org)];
        for (scope, buckets) in scopes {
            for (class, bucket) in buckets.iter_mut() {
                if let Some(cost) = demand.cost(class) {
                    labels.push((scope, class, bucket.burst(), cost));
                    takes.push(Take { bucket, cost });
                }
            }
        }
        take_all(&mut takes, now).map_err(|(index, denied)| {
            let (scope, class, burst, cost) =
                labels.get(index).copied().unwrap_or((Scope::Session, Class::Requests, 0, 0));
            match denied {
                Denied::RetryAfter(retry_after) => Limited::Exceeded { scope, class, retry_after },
                Denied::OverBurst => Limited::OverBurst { scope, class, cost, burst },
            }
        })
    }
}

/// A request refused by a rate limit. It had no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// The limit's tokens are spent for now.
    #[error("rate limit reached: {scope} {class}; retry after {retry_after:?}")]
    Exceeded {
        /// Whose limit.
        scope: Scope,
        /// Which limit.
        class: Class,
        /// When enough tokens will have accrued.
        retry_after: Duration,
    },
    /// The request alone costs more than the limit's burst; waiting does not help.
    #[error("one request costs {cost} {class}, over the {scope} burst of {burst}")]
    OverBurst {
        /// Whose limit.
        scope: Scope,
        /// Which limit.
        class: Class,
        /// What the request costs.
        cost: u64,
        /// The most the limit admits at once.
        burst: u64,
    },
}

impl Limited {
    /// The code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Limited::Exceeded { .. } => ErrorCode::RATE_LIMITED,
            Limited::OverBurst { .. } => ErrorCode::LIMIT_EXCEEDED,
        }
    }

    /// The wire's `retry_after_ms`: the wait rounded up to a whole millisecond, at least 1;
    /// 0 (no hint) when waiting does not help.
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            Limited::Exceeded { retry_after, .. } => {
                u64::try_from(retry_after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1)
            }
            Limited::OverBurst { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Roles;
    use crate::config::RateLimit;
    use herald_protocol::DeviceId;

    fn identity(org: &str, user: &str) -> Identity {
        Identity {
            org: OrgId::new(org).expect("valid"),
            user: UserId::new(user).expect("valid"),
            device: DeviceId::new("d").expect("valid"),
            roles: Roles::default(),
            expires_at_ms: 0,
            token_id: None,
        }
    }

    fn tight() -> RateLimitsConfig {
        let mut config = RateLimitsConfig::default();
        config.session.sends = Some(RateLimit { per_second: 10, burst: 3 });
        config.user.sends = Some(RateLimit { per_second: 10, burst: 4 });
        config.org.sends = Some(RateLimit { per_second: 10, burst: 5 });
        config.session.bytes = Some(RateLimit { per_second: 100, burst: 100 });
        config
    }

    #[test]
    fn each_scope_refuses_at_its_own_burst() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(tight());
        let mut alice_phone = limiter.session(&identity("acme", "alice"), t0).expect("enabled");
        let mut alice_laptop = limiter.session(&identity("acme", "alice"), t0).expect("enabled");
        let mut bob = limiter.session(&identity("acme", "bob"), t0).expect("enabled");
        let mut globex = limiter.session(&identity("globex", "carol"), t0).expect("enabled");
        for _ in 0..3 {
            alice_phone.admit(Demand::send(1), t0).expect("within the session's burst");
        }
        let refused = alice_phone.admit(Demand::send(1), t0).expect_err("session burst spent");
        assert!(matches!(refused, Limited::Exceeded { scope: Scope::Session, class: Class::Sends, .. }));
        assert_eq!((refused.code(), refused.retry_after_ms()), (ErrorCode::RATE_LIMITED, 100));
        alice_laptop.admit(Demand::send(1), t0).expect("the user's fourth");
        let refused = alice_laptop.admit(Demand::send(1), t0).expect_err("user burst spent");
        assert!(matches!(refused, Limited::Exceeded { scope: Scope::User, .. }));
        bob.admit(Demand::send(1), t0).expect("the org's fifth");
        let refused = bob.admit(Demand::send(1), t0).expect_err("org burst spent");
        assert!(matches!(refused, Limited::Exceeded { scope: Scope::Org, .. }));
        globex.admit(Demand::send(1), t0).expect("another org is untouched");
        bob.admit(Demand::one(Class::Requests), t0).expect("another class is untouched");
    }

    #[test]
    fn an_organisations_override_replaces_the_org_scope_for_it_alone() {
        let t0 = Instant::now();
        let mut config = tight();
        config.session.sends = None;
        config.user.sends = None;
        let big =
            crate::config::ScopeLimits { sends: Some(RateLimit { per_second: 10, burst: 8 }), ..Default::default() };
        config.orgs.insert(OrgId::new("bigcorp").expect("valid"), big);
        let limiter = RateLimiter::new(config);
        let mut big = limiter.session(&identity("bigcorp", "alice"), t0).expect("enabled");
        let mut small = limiter.session(&identity("acme", "alice"), t0).expect("enabled");
        let admitted =
            |session: &mut SessionLimiter| (0..20).take_while(|_| session.admit(Demand::send(1), t0).is_ok()).count();
        assert_eq!((admitted(&mut big), admitted(&mut small)), (8, 5));
    }

    #[test]
    fn a_refused_request_takes_nothing_from_any_scope() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(tight());
        let mut alice = limiter.session(&identity("acme", "alice"), t0).expect("enabled");
        let mut bob = limiter.session(&identity("acme", "bob"), t0).expect("enabled");
        // Over the session's byte budget: refused, and the one send it would have cost the
        // organisation stays available.
        alice.admit(Demand::send(100), t0).expect("exactly the byte burst");
        for _ in 0..50 {
            assert!(alice.admit(Demand::send(100), t0).is_err());
        }
        let mut carol = limiter.session(&identity("acme", "carol"), t0).expect("enabled");
        for _ in 0..3 {
            bob.admit(Demand::send(0), t0).expect("org budget untouched by refusals");
        }
        carol.admit(Demand::send(0), t0).expect("the org's fifth send");
        let refused = carol.admit(Demand::send(0), t0).expect_err("the org's sixth");
        assert!(matches!(refused, Limited::Exceeded { scope: Scope::Org, .. }));
        let over = alice.admit(Demand::send(101), t0).expect_err("over the burst");
        assert_eq!((over.code(), over.retry_after_ms()), (ErrorCode::LIMIT_EXCEEDED, 0));
    }

    #[test]
    fn sweep_forgets_only_idle_full_buckets_and_disabled_limits_admit_everything() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(tight());
        let mut alice = limiter.session(&identity("acme", "alice"), t0).expect("enabled");
        alice.admit(Demand::send(1), t0).expect("admitted");
        let bob = limiter.session(&identity("acme", "bob"), t0).expect("enabled");
        assert_eq!(limiter.tracked(), (2, 1));
        assert_eq!(limiter.sweep(t0), 0, "both held by sessions");
        drop((alice, bob));
        assert_eq!(limiter.sweep(t0), 1, "bob's full buckets go; alice's still remember a send");
        assert_eq!(limiter.sweep(t0 + Duration::from_secs(1)), 2, "refilled: alice's and acme's go");
        assert_eq!(limiter.tracked(), (0, 0));

        let off = RateLimiter::new(RateLimitsConfig { enabled: false, ..tight() });
        assert!(off.session(&identity("acme", "alice"), t0).is_none());
    }
}
