//! The session state machine: frames and time in, frames to send and a close decision out.
//!
//! # Calling contract
//! The connection loop feeds inputs through the `handle_*` methods and, after each, drains
//! [`SessionMachine::poll_action`] until it returns `None`, performing each action in order. It
//! sleeps no longer than [`SessionMachine::poll_timeout`] before calling
//! [`SessionMachine::handle_timeout`]. The machine never reads a clock and never blocks, so every
//! path is tested without sockets.
//!
//! # States
//! ```text
//!              HELLO ok                 token expiry or revocation, shutdown,
//! AwaitingHello ───────► Open ───────────────► Closed
//!       │                  │   FRAME_TOO_LARGE,     ▲
//!       │                  │   control stream end   │
//!       └──────────────────┴────────────────────────┘
//!   any other frame, bad HELLO, handshake timeout, shutdown
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_protocol::{
    Body, BodyError, DeviceId, ErrorCode, Frame, FrameError, OrgId, PROTOCOL_VERSION, RequestId, SUPPORTED_VERSIONS,
    SessionId, UserId, pb,
};

use super::SessionContext;
use super::requests::{self, Routed};
use crate::auth::{AuthError, Identity, UnverifiedClaims};
use crate::clock::Now;
use crate::ratelimit::SessionLimiter;

/// Longest client name or version string accepted in HELLO, in bytes.
const MAX_CLIENT_INFO_LEN: usize = 64;

/// What the connection loop must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this frame on the control stream.
    Send(Frame),
    /// Open the push stream and then the urgent stream (the broker's unidirectional streams) and
    /// write each its STREAM_OPEN frame.
    OpenPushStreams {
        /// STREAM_OPEN for the push stream.
        push: Frame,
        /// STREAM_OPEN for the urgent stream.
        urgent: Frame,
    },
    /// Serve a parsed messaging request; its answer arrives later with the same request id.
    Dispatch {
        /// The request's id, for the answer.
        request_id: RequestId,
        /// Where it goes and what it asks.
        routed: Routed,
    },
    /// Record a refused HELLO in the audit log of the organisation it claims (one the broker
    /// serves), with the connection's remote address. Comes before the ERROR and the close.
    AuditLoginRefused {
        /// The organisation the token names; verified only if `claims_verified`.
        org: OrgId,
        /// The user the token names, when it is a valid id.
        user: Option<UserId>,
        /// The device HELLO names, when it is a valid id.
        device: Option<DeviceId>,
        /// Whether the token's signature and claims had been verified (the refusal came later:
        /// the organisation, the revocation list, the device limit).
        claims_verified: bool,
        /// The code the client is refused with.
        code: ErrorCode,
    },
    /// The session now runs under a new token (REAUTH): record its id where revocations of
    /// a token id look for sessions.
    TokenRenewed {
        /// The new token's `jti`, if it has one.
        token_id: Option<String>,
    },
    /// Flush the control stream, then close the connection with this code and reason.
    Close {
        /// The QUIC application error code.
        code: ErrorCode,
        /// The reason phrase, for the peer's logs.
        reason: String,
    },
}

#[derive(Debug)]
enum State {
    AwaitingHello { deadline: Instant },
    Open { identity: Identity, expires_at: Instant, limiter: Option<Box<SessionLimiter>> },
    Closed,
}

/// One client session's protocol logic. See the module docs for the calling contract.
#[derive(Debug)]
pub struct SessionMachine {
    ctx: Arc<SessionContext>,
    id: SessionId,
    state: State,
    actions: VecDeque<Action>,
    /// splitmix64 state: new group ids, unpredictable in production, reproducible in tests.
    random: u64,
}

impl SessionMachine {
    /// A session for a connection accepted at `now`, waiting for HELLO. `seed` seeds the ids
    /// the session chooses (new groups).
    pub fn new(ctx: Arc<SessionContext>, id: SessionId, now: Now, seed: u64) -> Self {
        let deadline = now.instant + ctx.handshake_timeout;
        Self { ctx, id, state: State::AwaitingHello { deadline }, actions: VecDeque::new(), random: seed }
    }

    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The authenticated identity, once HELLO has been accepted.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Open { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// Whether the session has decided to close; no further actions will follow.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`SessionMachine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingHello { deadline } => Some(deadline),
            State::Open { expires_at, .. } => Some(expires_at),
            State::Closed => None,
        }
    }

    /// A whole frame arrived on the control stream.
    pub fn handle_frame(&mut self, frame: Frame, now: Now) {
        if frame.request_id() == RequestId::NONE {
            let message = "request id 0 is reserved for frames that answer no request";
            return self.refuse(&frame, ErrorCode::UNEXPECTED_FRAME, message.into());
        }
        let body = match Body::decode(&frame) {
            Ok(body) => body,
            Err(e @ BodyError::UnknownFrameType(_)) => {
                return self.refuse(&frame, ErrorCode::UNKNOWN_FRAME_TYPE, e.to_string());
            }
            Err(e) => return self.refuse(&frame, ErrorCode::MALFORMED_BODY, e.to_string()),
        };
        match (&self.state, body) {
            (State::Closed, _) => {}
            (State::AwaitingHello { .. }, Body::Hello(hello)) => self.on_hello(frame.request_id(), &hello, now),
            (State::AwaitingHello { .. }, _) => {
                let message = format!("{} before HELLO", frame.frame_type());
                self.refuse(&frame, ErrorCode::UNEXPECTED_FRAME, message);
            }
            (State::Open { .. }, Body::Ping(ping)) => {
                let pong = pb::Pong { nonce: ping.nonce, server_time_ms: now.unix_ms };
                self.send(Frame::from_body(frame.request_id(), &pong));
            }
            (State::Open { .. }, Body::Hello(_)) => {
                self.refuse(&frame, ErrorCode::UNEXPECTED_FRAME, "the session is already open".into());
            }
            (State::Open { .. }, Body::Reauth(reauth)) => self.on_reauth(frame.request_id(), &reauth.token, now),
            (State::Open { identity, .. }, body) => {
                let max_payload = usize::try_from(self.ctx.limits.max_payload_bytes).unwrap_or(usize::MAX);
                let identity = identity.clone();
                let random = self.next_random();
                match requests::parse(body, &identity, max_payload, random) {
                    Some(Ok(routed)) => self.admit(frame.request_id(), routed, now),
                    Some(Err((code, message))) => self.refuse(&frame, code, message),
                    None => {
                        let message = format!("{} is sent by the broker, not the client", frame.frame_type());
                        self.refuse(&frame, ErrorCode::UNEXPECTED_FRAME, message);
                    }
                }
            }
        }
    }

    /// The control stream held bytes that cannot be framed; the stream is unusable.
    pub fn handle_frame_error(&mut self, error: FrameError) {
        match error {
            FrameError::TooLarge { .. } => self.fail(RequestId::NONE, ErrorCode::FRAME_TOO_LARGE, error.to_string()),
        }
    }

    /// The client finished its control stream: it wants no more answers.
    pub fn handle_control_stream_finished(&mut self) {
        if !self.is_closed() {
            self.close(ErrorCode::NO_ERROR, "client closed its control stream".into());
        }
    }

    /// The client reset its control stream: requests may have been lost mid-frame, so the
    /// session cannot go on.
    pub fn handle_control_stream_reset(&mut self) {
        if !self.is_closed() {
            self.close(ErrorCode::STREAM_VIOLATION, "client reset its control stream".into());
        }
    }

    /// Time has reached (or passed) [`SessionMachine::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Now) {
        match self.state {
            State::AwaitingHello { deadline } if now.instant >= deadline => {
                self.fail(RequestId::NONE, ErrorCode::HANDSHAKE_TIMEOUT, "no HELLO in time".into());
            }
            State::Open { expires_at, .. } if now.instant >= expires_at => {
                self.fail(RequestId::NONE, ErrorCode::TOKEN_EXPIRED, "the session's token expired".into());
            }
            _ => {}
        }
    }

    /// An administrator revoked this session's device or disabled its user.
    pub fn handle_revoked(&mut self) {
        if !self.is_closed() {
            self.fail(RequestId::NONE, ErrorCode::REVOKED, "an administrator revoked this device".into());
        }
    }

    /// The revocation list changed (or the session just registered for fan-out, which may
    /// have raced a reload): an open session whose identity is now revoked closes with
    /// TOKEN_REVOKED.
    pub fn handle_revocations_changed(&mut self) {
        if let State::Open { identity, .. } = &self.state
            && self.ctx.token_revocations.current().revokes_identity(identity)
        {
            self.fail(RequestId::NONE, ErrorCode::TOKEN_REVOKED, "the session's token was revoked".into());
        }
    }

    /// The broker is shutting down.
    pub fn handle_shutdown(&mut self) {
        if !self.is_closed() {
            self.fail(RequestId::NONE, ErrorCode::SHUTTING_DOWN, "the broker is shutting down".into());
        }
    }

    fn on_hello(&mut self, request_id: RequestId, hello: &pb::Hello, now: Now) {
        match self.accept_hello(hello, now) {
            Ok(identity) => self.open(request_id, identity, now),
            Err((code, message)) => {
                self.audit_refusal(hello, code);
                let supported =
                    if code == ErrorCode::UNSUPPORTED_VERSION { SUPPORTED_VERSIONS.to_vec() } else { vec![] };
                self.push_error(request_id, code, message.clone(), supported);
                self.close(code, message);
            }
        }
    }

    /// Queues the audit record of a refused HELLO when the organisation it claims is served
    /// here. Tokens naming no organisation, or one not served, have no audit chain to go to
    /// (creating chains for any name a stranger sends would let anyone grow the audit store);
    /// the connection loop logs those refusals instead.
    fn audit_refusal(&mut self, hello: &pb::Hello, code: ErrorCode) {
        let claimed = UnverifiedClaims::peek(&hello.token);
        let Some(org) = claimed.org.filter(|org| self.ctx.orgs.contains(org)) else { return };
        // Only these refusals follow a successful verification in `accept_hello`.
        let claims_verified = [ErrorCode::TOKEN_REVOKED, ErrorCode::LIMIT_EXCEEDED].contains(&code);
        self.actions.push_back(Action::AuditLoginRefused {
            org,
            user: claimed.user,
            device: DeviceId::new(hello.device_id.as_str()).ok(),
            claims_verified,
            code,
        });
    }

    fn accept_hello(&self, hello: &pb::Hello, now: Now) -> Result<Identity, (ErrorCode, String)> {
        if hello.protocol_version != PROTOCOL_VERSION {
            let message = format!("protocol version {} is not supported", hello.protocol_version);
            return Err((ErrorCode::UNSUPPORTED_VERSION, message));
        }
        if hello.client_name.len() > MAX_CLIENT_INFO_LEN || hello.client_version.len() > MAX_CLIENT_INFO_LEN {
            let message = format!("client_name and client_version are limited to {MAX_CLIENT_INFO_LEN} bytes");
            return Err((ErrorCode::INVALID_ARGUMENT, message));
        }
        let device =
            DeviceId::new(hello.device_id.as_str()).map_err(|e| (ErrorCode::INVALID_ARGUMENT, e.to_string()))?;
        let identity = self.ctx.verifier.verify(&hello.token, &device, now.unix_ms).map_err(auth_failure)?;
        if !self.ctx.orgs.contains(&identity.org) {
            return Err(auth_failure(AuthError::UnknownOrg(identity.org)));
        }
        if self.ctx.token_revocations.current().revokes_identity(&identity) {
            return Err(auth_failure(AuthError::Revoked));
        }
        if let Some(reason) = self.ctx.revocations.refusal(&identity) {
            return Err((ErrorCode::REVOKED, reason.into()));
        }
        let online = self.ctx.registry.device_count(&identity.org, &identity.user);
        if online >= self.ctx.max_devices_per_user {
            let message =
                format!("{online} devices of this user are online; the limit is {}", self.ctx.max_devices_per_user);
            return Err((ErrorCode::LIMIT_EXCEEDED, message));
        }
        Ok(identity)
    }

    /// A fresh token for the open session: if it verifies and names the session's identity,
    /// the session runs under it (its expiry, roles and token id); otherwise the ERROR answers
    /// the request and the session goes on under its current token.
    fn on_reauth(&mut self, request_id: RequestId, token: &str, now: Now) {
        let State::Open { identity, .. } = &self.state else { return };
        match self.accept_reauth(identity, token, now) {
            Ok(renewed) => {
                let expires_at_ms = renewed.expires_at_ms;
                let lifetime = self.token_lifetime(&renewed, now);
                self.actions.push_back(Action::TokenRenewed { token_id: renewed.token_id.clone() });
                if let State::Open { identity, expires_at, .. } = &mut self.state {
                    *expires_at = now.instant + lifetime;
                    *identity = renewed;
                }
                self.send(Frame::from_body(request_id, &pb::Reauthed { token_expires_at_ms: expires_at_ms }));
            }
            Err((code, message)) => self.send(Frame::error(request_id, code, message)),
        }
    }

    fn accept_reauth(&self, current: &Identity, token: &str, now: Now) -> Result<Identity, (ErrorCode, String)> {
        let renewed = self.ctx.verifier.verify(token, &current.device, now.unix_ms).map_err(auth_failure)?;
        if (&renewed.org, &renewed.user) != (&current.org, &current.user) {
            return Err((ErrorCode::FORBIDDEN, "the token names another user than the session's".into()));
        }
        if self.ctx.token_revocations.current().revokes_identity(&renewed) {
            return Err(auth_failure(AuthError::Revoked));
        }
        Ok(renewed)
    }

    /// How long a session may run on `identity`'s token: to its expiry plus the leeway that
    /// admitted a token just past `exp`, so a session is never welcomed only to close at once.
    fn token_lifetime(&self, identity: &Identity, now: Now) -> Duration {
        Duration::from_millis(identity.expires_at_ms.saturating_sub(now.unix_ms)) + self.ctx.token_leeway
    }

    fn open(&mut self, request_id: RequestId, identity: Identity, now: Now) {
        let welcome = pb::Welcome {
            protocol_version: PROTOCOL_VERSION,
            session_id: self.id.get(),
            server_time_ms: now.unix_ms,
            limits: Some(self.ctx.limits_for(&identity.org)),
            org_id: identity.org.to_string(),
            user_id: identity.user.to_string(),
            device_id: identity.device.to_string(),
            token_expires_at_ms: identity.expires_at_ms,
        };
        self.send(Frame::from_body(request_id, &welcome));
        let stream_open = |kind: pb::stream_open::Kind| {
            Frame::from_body(RequestId::NONE, &pb::StreamOpen { kind: kind.into(), session_id: self.id.get() })
        };
        let (push, urgent) = (stream_open(pb::stream_open::Kind::Push), stream_open(pb::stream_open::Kind::Urgent));
        self.actions.push_back(Action::OpenPushStreams { push, urgent });
        let lifetime = self.token_lifetime(&identity, now);
        let limiter = self.ctx.rate_limits.session(&identity, now.instant).map(Box::new);
        self.state = State::Open { identity, expires_at: now.instant + lifetime, limiter };
    }

    /// Dispatches a parsed request if the rate limits admit it; otherwise answers RATE_LIMITED
    /// with the wait, and the request has no effect. Refusing costs no more than admitting.
    fn admit(&mut self, request_id: RequestId, routed: Routed, now: Now) {
        if let State::Open { limiter: Some(limiter), .. } = &mut self.state
            && let Err(limited) = limiter.admit(requests::demand(&routed), now.instant)
        {
            let error = pb::Error {
                code: limited.code().get(),
                message: limited.to_string(),
                retry_after_ms: limited.retry_after_ms(),
                supported_versions: vec![],
            };
            return self.send(Frame::from_body(request_id, &error));
        }
        self.actions.push_back(Action::Dispatch { request_id, routed });
    }

    /// Answers a request with an error. During the handshake every error also closes the
    /// connection: an unauthenticated peer gets one answer, not a conversation.
    fn refuse(&mut self, frame: &Frame, code: ErrorCode, message: String) {
        match self.state {
            State::Open { .. } => self.push_error(frame.request_id(), code, message, vec![]),
            State::AwaitingHello { .. } => self.fail(frame.request_id(), code, message),
            State::Closed => {}
        }
    }

    /// Sends ERROR and closes the connection with the same code.
    fn fail(&mut self, request_id: RequestId, code: ErrorCode, message: String) {
        self.push_error(request_id, code, message.clone(), vec![]);
        self.close(code, message);
    }

    fn push_error(&mut self, request_id: RequestId, code: ErrorCode, message: String, supported_versions: Vec<u32>) {
        let error = pb::Error { code: code.get(), message, retry_after_ms: 0, supported_versions };
        self.send(Frame::from_body(request_id, &error));
    }

    fn send(&mut self, frame: Frame) {
        self.actions.push_back(Action::Send(frame));
    }

    fn close(&mut self, code: ErrorCode, reason: String) {
        self.actions.push_back(Action::Close { code, reason });
        self.state = State::Closed;
    }
}

fn auth_failure(error: AuthError) -> (ErrorCode, String) {
    (error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{
        Claims, RevocationList, Revocations, SigningKeyPair, TokenMinter, TokenVerifier, VerifierSettings,
    };
    use crate::config::{LimitsConfig, RateLimit, RateLimitsConfig};
    use crate::ratelimit::RateLimiter;
    use bytes::Bytes;
    use herald_protocol::{Flags, FrameBody, FrameType, OrgId};

    const T0_MS: u64 = 1_800_000_000_000;

    struct Harness {
        minter: TokenMinter,
        machine: SessionMachine,
        start: Instant,
        revocations: Arc<Revocations>,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_rate_limits(RateLimitsConfig::default())
        }

        fn with_rate_limits(rate_limits: RateLimitsConfig) -> Self {
            let pair = SigningKeyPair::generate().expect("keygen");
            let settings = VerifierSettings { issuer: None, audience: None, leeway: Duration::ZERO };
            let verifier = TokenVerifier::new(&[pair.public_pem().to_owned()], settings.clone()).expect("verifier");
            let orgs = [OrgId::new("acme").expect("valid")];
            let registry = Arc::new(crate::fanout::SessionRegistry::new());
            let mut ctx = SessionContext::new(verifier, settings.leeway, orgs, &LimitsConfig::default(), registry);
            ctx.rate_limits = Arc::new(RateLimiter::new(rate_limits));
            let revocations = ctx.token_revocations.clone();
            let ctx = Arc::new(ctx);
            let start = Instant::now();
            let machine = SessionMachine::new(ctx, SessionId::new(9), Now { instant: start, unix_ms: T0_MS }, 1);
            Self { minter: TokenMinter::new(&pair).expect("minter"), machine, start, revocations }
        }

        fn at(&self, secs: u64) -> Now {
            Now { instant: self.start + Duration::from_secs(secs), unix_ms: T0_MS + secs * 1000 }
        }

        fn token(&self, org: &str, exp_in_s: u64) -> String {
            let claims = Claims {
                sub: "alice".into(),
                org: org.into(),
                device: None,
                roles: vec![],
                exp: T0_MS / 1000 + exp_in_s,
                iat: T0_MS / 1000,
                nbf: None,
                iss: None,
                aud: None,
                jti: None,
            };
            self.minter.mint(&claims).expect("mint")
        }

        fn hello(&mut self, version: u32, token: String) {
            let hello = pb::Hello {
                protocol_version: version,
                token,
                device_id: "phone-1".into(),
                client_name: "test".into(),
                client_version: "1".into(),
            };
            let now = self.at(0);
            self.machine.handle_frame(Frame::from_body(RequestId::new(1), &hello), now);
        }

        fn open(&mut self) {
            let token = self.token("acme", 3600);
            self.hello(PROTOCOL_VERSION, token);
            assert!(matches!(self.actions().as_slice(), [Action::Send(_), Action::OpenPushStreams { .. }]));
        }

        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.machine.poll_action()).collect()
        }

        /// The ERROR codes sent, and whether the actions end with a close carrying the same code.
        fn errors(&mut self) -> (Vec<(RequestId, ErrorCode)>, Option<ErrorCode>) {
            let mut errors = Vec::new();
            let mut closed = None;
            for action in self.actions() {
                match action {
                    Action::Send(f) if f.frame_type() == FrameType::ERROR => {
                        let e: pb::Error = f.decode_body().expect("error body");
                        errors.push((f.request_id(), ErrorCode::from_u32(e.code)));
                    }
                    Action::Close { code, .. } => closed = Some(code),
                    Action::AuditLoginRefused { .. } => {}
                    other => panic!("unexpected action {other:?}"),
                }
            }
            (errors, closed)
        }
    }

    fn decode<B: FrameBody>(action: &Action) -> B {
        match action {
            Action::Send(f) | Action::OpenPushStreams { push: f, .. } => f.decode_body().expect("decodes"),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn a_valid_hello_is_welcomed_and_opens_the_push_stream() {
        let mut h = Harness::new();
        let token = h.token("acme", 3600);
        h.hello(PROTOCOL_VERSION, token);
        let actions = h.actions();
        let [welcome @ Action::Send(frame), push @ Action::OpenPushStreams { .. }] = actions.as_slice() else {
            panic!("expected WELCOME then the push stream, got {actions:?}");
        };
        assert_eq!(frame.request_id(), RequestId::new(1));
        let welcome: pb::Welcome = decode(welcome);
        assert_eq!((welcome.org_id.as_str(), welcome.user_id.as_str()), ("acme", "alice"));
        assert_eq!(welcome.session_id, 9);
        assert_eq!(welcome.server_time_ms, T0_MS);
        assert_eq!(welcome.token_expires_at_ms, T0_MS + 3_600_000);
        assert_eq!(welcome.limits.expect("limits").max_group_members, 5000);
        let open: pb::StreamOpen = decode(push);
        assert_eq!((open.kind(), open.session_id), (pb::stream_open::Kind::Push, 9));
        let Action::OpenPushStreams { urgent, .. } = push else { unreachable!("matched above") };
        let urgent: pb::StreamOpen = urgent.decode_body().expect("decodes");
        assert_eq!((urgent.kind(), urgent.session_id), (pb::stream_open::Kind::Urgent, 9));
        assert!(h.machine.identity().is_some());
    }

    #[test]
    fn every_bad_hello_gets_its_code_and_closes() {
        type MakeHello = fn(&Harness) -> (u32, String);
        let cases: [(&str, MakeHello, ErrorCode); 4] = [
            ("version", |h| (2, h.token("acme", 60)), ErrorCode::UNSUPPORTED_VERSION),
            ("expired", |h| (1, h.token("acme", 0)), ErrorCode::TOKEN_EXPIRED),
            ("unknown org", |h| (1, h.token("initech", 60)), ErrorCode::UNKNOWN_ORG),
            ("garbage token", |_| (1, "x.y.z".into()), ErrorCode::TOKEN_INVALID),
        ];
        for (name, make, code) in cases {
            let mut h = Harness::new();
            let (version, token) = make(&h);
            h.hello(version, token);
            assert_eq!(h.errors(), (vec![(RequestId::new(1), code)], Some(code)), "{name}");
            assert!(h.machine.is_closed());
        }
    }

    #[test]
    fn a_revoked_identity_is_refused_at_hello_and_closed_when_open() {
        let mut h = Harness::new();
        h.revocations.replace(RevocationList::parse("device acme/alice/phone-1").expect("valid"));
        let token = h.token("acme", 60);
        h.hello(PROTOCOL_VERSION, token);
        let refused = ErrorCode::TOKEN_REVOKED;
        assert_eq!(h.errors(), (vec![(RequestId::new(1), refused)], Some(refused)));

        let mut h = Harness::new();
        h.open();
        h.machine.handle_revocations_changed();
        assert!(h.actions().is_empty(), "nothing revoked yet");
        h.revocations.replace(RevocationList::parse("user acme/bob\ndevice acme/alice/laptop").expect("valid"));
        h.machine.handle_revocations_changed();
        assert!(h.actions().is_empty(), "other users and devices are not this session");
        h.revocations.replace(RevocationList::parse("user acme/alice").expect("valid"));
        h.machine.handle_revocations_changed();
        assert_eq!(h.errors(), (vec![(RequestId::NONE, refused)], Some(refused)));
        assert!(h.machine.is_closed());
    }

    #[test]
    fn refused_hellos_of_served_organisations_are_audited_before_the_error() {
        let mut h = Harness::new();
        let token = h.token("acme", 0);
        h.hello(PROTOCOL_VERSION, token);
        let actions = h.actions();
        let [audit, Action::Send(_), Action::Close { .. }] = actions.as_slice() else { panic!("{actions:?}") };
        let Action::AuditLoginRefused { org, user, device, claims_verified, code } = audit else { panic!("{audit:?}") };
        assert_eq!((org.as_str(), user.as_ref().map(UserId::as_str)), ("acme", Some("alice")));
        assert_eq!((device.as_ref().map(DeviceId::as_str), *claims_verified), (Some("phone-1"), false));
        assert_eq!(*code, ErrorCode::TOKEN_EXPIRED);

        let mut h = Harness::new();
        h.revocations.replace(RevocationList::parse("user acme/alice").expect("valid"));
        let token = h.token("acme", 60);
        h.hello(PROTOCOL_VERSION, token);
        assert!(
            matches!(h.actions().first(), Some(Action::AuditLoginRefused { claims_verified: true, .. })),
            "a revoked token was verified before it was refused"
        );
        for token in ["garbage".to_owned(), h.token("initech", 60)] {
            let mut h = Harness::new();
            h.hello(PROTOCOL_VERSION, token);
            assert!(!h.actions().iter().any(|a| matches!(a, Action::AuditLoginRefused { .. })), "no chain to write");
        }
    }

    #[test]
    fn unsupported_version_lists_the_supported_ones() {
        let mut h = Harness::new();
        let token = h.token("acme", 60);
        h.hello(7, token);
        let actions = h.actions();
        let sent = actions.iter().find(|a| matches!(a, Action::Send(_))).expect("an ERROR");
        let error: pb::Error = decode(sent);
        assert_eq!(error.supported_versions, SUPPORTED_VERSIONS);
    }

    #[test]
    fn a_request_before_hello_closes_with_unexpected_frame() {
        let mut h = Harness::new();
        let now = h.at(0);
        h.machine.handle_frame(Frame::from_body(RequestId::new(4), &pb::Ping { nonce: 1 }), now);
        assert_eq!(
            h.errors(),
            (vec![(RequestId::new(4), ErrorCode::UNEXPECTED_FRAME)], Some(ErrorCode::UNEXPECTED_FRAME))
        );
    }

    #[test]
    fn ping_is_answered_with_the_nonce_and_server_time() {
        let mut h = Harness::new();
        h.open();
        let now = h.at(5);
        h.machine.handle_frame(Frame::from_body(RequestId::new(2), &pb::Ping { nonce: 77 }), now);
        let pong: pb::Pong = decode(&h.actions()[0]);
        assert_eq!((pong.nonce, pong.server_time_ms), (77, T0_MS + 5000));
    }

    #[test]
    fn bad_requests_in_an_open_session_fail_alone() {
        let mut h = Harness::new();
        h.open();
        let now = h.at(1);
        let unknown = Frame::new(FrameType::from_u16(0x7f00), Flags::EMPTY, RequestId::new(2), Bytes::new());
        let malformed = Frame::new(FrameType::PING, Flags::EMPTY, RequestId::new(3), Bytes::from_static(&[0xff]));
        let hello_again = Frame::from_body(RequestId::new(4), &pb::Hello::default());
        let broker_only = Frame::from_body(RequestId::new(5), &pb::Pong::default());
        let zero_id = Frame::from_body(RequestId::NONE, &pb::Ping::default());
        for frame in [unknown, malformed, hello_again, broker_only, zero_id] {
            h.machine.handle_frame(frame, now);
        }
        let expected = vec![
            (RequestId::new(2), ErrorCode::UNKNOWN_FRAME_TYPE),
            (RequestId::new(3), ErrorCode::MALFORMED_BODY),
            (RequestId::new(4), ErrorCode::UNEXPECTED_FRAME),
            (RequestId::new(5), ErrorCode::UNEXPECTED_FRAME),
            (RequestId::NONE, ErrorCode::UNEXPECTED_FRAME),
        ];
        assert_eq!(h.errors(), (expected, None));
        assert!(!h.machine.is_closed());
    }

    #[test]
    fn handshake_times_out_without_hello() {
        let mut h = Harness::new();
        let deadline = h.machine.poll_timeout().expect("deadline");
        assert_eq!(deadline, h.start + LimitsConfig::default().handshake_timeout);
        h.machine.handle_timeout(h.at(9));
        assert!(h.actions().is_empty(), "not yet due");
        h.machine.handle_timeout(h.at(10));
        assert_eq!(
            h.errors(),
            (vec![(RequestId::NONE, ErrorCode::HANDSHAKE_TIMEOUT)], Some(ErrorCode::HANDSHAKE_TIMEOUT))
        );
    }

    #[test]
    fn an_open_session_closes_when_its_token_expires() {
        let mut h = Harness::new();
        h.open();
        assert_eq!(h.machine.poll_timeout(), Some(h.start + Duration::from_secs(3600)));
        h.machine.handle_timeout(h.at(3600));
        assert_eq!(h.errors(), (vec![(RequestId::NONE, ErrorCode::TOKEN_EXPIRED)], Some(ErrorCode::TOKEN_EXPIRED)));
        assert_eq!(h.machine.poll_timeout(), None);
    }

    #[test]
    fn a_fresh_token_keeps_the_session_open_past_the_first_ones_expiry() {
        let mut h = Harness::new();
        h.open();
        let fresh = h.token("acme", 7200);
        h.machine.handle_frame(Frame::from_body(RequestId::new(2), &pb::Reauth { token: fresh }), h.at(3000));
        let actions = h.actions();
        let [Action::TokenRenewed { .. }, Action::Send(answer)] = actions.as_slice() else {
            panic!("the renewal, then REAUTHED; got {actions:?}")
        };
        let renewed: pb::Reauthed = answer.decode_body().expect("REAUTHED");
        assert_eq!((answer.request_id(), renewed.token_expires_at_ms), (RequestId::new(2), T0_MS + 7_200_000));
        assert_eq!(h.machine.poll_timeout(), Some(h.start + Duration::from_secs(7200)));
        h.machine.handle_timeout(h.at(3600));
        assert_eq!(h.errors(), (vec![], None), "the first token's expiry no longer closes it");
    }

    #[test]
    fn a_refused_token_is_answered_and_the_session_goes_on_under_its_own() {
        let mut h = Harness::new();
        h.open();
        let reauth = |token| Frame::from_body(RequestId::new(3), &pb::Reauth { token });
        let expired = h.token("acme", 10);
        h.machine.handle_frame(reauth(expired), h.at(20));
        let other_org = h.token("globex", 7200);
        h.machine.handle_frame(reauth(other_org), h.at(20));
        h.machine.handle_frame(reauth("not a token".into()), h.at(20));
        let (errors, closed) = h.errors();
        let codes: Vec<ErrorCode> = errors.into_iter().map(|(_, code)| code).collect();
        assert_eq!(codes, [ErrorCode::TOKEN_EXPIRED, ErrorCode::FORBIDDEN, ErrorCode::TOKEN_INVALID]);
        assert_eq!(closed, None, "refusals answer the request only");
        assert_eq!(h.machine.poll_timeout(), Some(h.start + Duration::from_secs(3600)));
    }

    #[test]
    fn oversize_frames_and_shutdown_close_with_their_codes() {
        let mut h = Harness::new();
        h.open();
        h.machine.handle_control_stream_reset();
        assert_eq!(h.errors(), (vec![], Some(ErrorCode::STREAM_VIOLATION)));

        let mut h = Harness::new();
        h.open();
        h.machine.handle_frame_error(FrameError::TooLarge { len: 5_000_000, max: 1024 });
        assert_eq!(h.errors().1, Some(ErrorCode::FRAME_TOO_LARGE));
        h.machine.handle_shutdown();
        assert!(h.actions().is_empty(), "a closed session ignores further input");

        let mut h = Harness::new();
        h.open();
        h.machine.handle_shutdown();
        assert_eq!(h.errors(), (vec![(RequestId::NONE, ErrorCode::SHUTTING_DOWN)], Some(ErrorCode::SHUTTING_DOWN)));
    }

    #[test]
    fn a_request_over_a_rate_limit_is_refused_with_a_wait_and_the_session_goes_on() {
        let mut rate_limits = RateLimitsConfig::default();
        rate_limits.session.sends = Some(RateLimit { per_second: 2, burst: 2 });
        let mut h = Harness::with_rate_limits(rate_limits);
        h.open();
        let send = |id: u32| {
            let send = pb::Send { conversation_id: 7, client_msg_id: format!("m-{id}"), ..Default::default() };
            Frame::from_body(RequestId::new(id), &send)
        };
        let now = h.at(1);
        for id in 2..=4 {
            h.machine.handle_frame(send(id), now);
        }
        let actions = h.actions();
        let [Action::Dispatch { .. }, Action::Dispatch { .. }, refusal @ Action::Send(frame)] = actions.as_slice()
        else {
            panic!("expected two dispatches and a refusal, got {actions:?}");
        };
        assert_eq!(frame.request_id(), RequestId::new(4));
        let error: pb::Error = decode(refusal);
        assert_eq!((ErrorCode::from_u32(error.code), error.retry_after_ms), (ErrorCode::RATE_LIMITED, 500));
        assert!(!h.machine.is_closed());
        // Other classes are not charged for sends; PING is never limited.
        h.machine.handle_frame(Frame::from_body(RequestId::new(5), &pb::Sync::default()), now);
        h.machine.handle_frame(Frame::from_body(RequestId::new(6), &pb::Ping { nonce: 1 }), now);
        let actions = h.actions();
        assert!(matches!(actions.as_slice(), [Action::Dispatch { .. }, Action::Send(_)]), "{actions:?}");
        h.machine.handle_frame(send(7), h.at(2));
        assert!(matches!(h.actions().as_slice(), [Action::Dispatch { .. }]), "refilled after the wait");
    }
}
