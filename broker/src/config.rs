//! Broker configuration: built-in defaults, overlaid by a TOML file, then by flags and environment.
//!
//! The defaults are the "embedded default" a newcomer gets from a bare `herald-broker`: loopback
//! only, data in `./herald-data`, a self-signed certificate and a development signing key created
//! there on first start, and one organisation named `demo`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_protocol::{DEFAULT_MAX_FRAME_LEN, OrgId};
use serde::Deserialize;

use crate::ratelimit::{Class, Scope};

/// The UDP port the broker listens on by default.
pub const DEFAULT_PORT: u16 = 7443;

/// Everything the broker needs to start. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Directory for the database, the generated certificate and the development signing key.
    pub data_dir: PathBuf,
    /// Organisations this broker serves; a token for any other is refused with UNKNOWN_ORG.
    pub orgs: Vec<OrgId>,
    /// TLS certificate and key.
    pub tls: TlsConfig,
    /// Token verification.
    pub auth: AuthConfig,
    /// Limits announced in WELCOME and enforced on every session.
    pub limits: LimitsConfig,
    /// Log output.
    pub log: LogConfig,
    /// Storage and sharding.
    pub storage: StorageConfig,
    /// Read receipts.
    pub receipts: ReceiptsConfig,
    /// Per-organisation overrides of the recall window and read receipts.
    pub policies: HashMap<OrgId, PolicyConfig>,
    /// Request rates per session, user and organisation.
    pub rate_limits: RateLimitsConfig,
    /// The operators' HTTP endpoint (metrics, health).
    pub metrics: MetricsConfig,
    /// DING escalation ladders and the SMS/voice gateway.
    pub ding: DingConfig,
    /// Call signaling: ring timeout, rejoin grace, delta window, the media server.
    pub calls: crate::call::CallsConfig,
}

/// DING: the escalation ladders senders may choose, and how SMS and voice go out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DingConfig {
    /// The ladder of a DING that names none. Two are built in unless configured under their
    /// names: `standard` (in-app now, SMS after 5 minutes, voice after 15, the manager after 30)
    /// and `app` (in-app now, again after 2 and 10 minutes, the manager after 30).
    pub default_policy: String,
    /// Least time between a DING and DINGing its unacknowledged recipients again.
    #[serde(with = "humantime_serde")]
    pub min_redo_interval: Duration,
    /// Ladders by name.
    pub policies: HashMap<String, crate::ding::PolicyConfig>,
    /// Organisations whose DINGs default to another ladder than `default_policy`.
    pub org_defaults: HashMap<OrgId, String>,
    /// Where SMS and voice steps go.
    pub gateway: crate::ding::GatewayConfig,
}

impl Default for DingConfig {
    fn default() -> Self {
        Self {
            default_policy: "standard".into(),
            min_redo_interval: Duration::from_secs(5 * 60),
            policies: HashMap::new(),
            org_defaults: HashMap::new(),
            gateway: crate::ding::GatewayConfig::default(),
        }
    }
}

impl DingConfig {
    /// The checked ladders, `standard` included.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the policy that is unusable, or a default that is missing.
    pub fn policies(&self) -> Result<HashMap<String, crate::ding::Policy>, ConfigError> {
        let mut configured = self.policies.clone();
        configured.entry("standard".into()).or_insert_with(crate::ding::standard_policy);
        configured.entry("app".into()).or_insert_with(crate::ding::app_policy);
        let policies = crate::ding::check_policies(&configured)
            .map_err(|e| ConfigError::Invalid(format!("ding.policies: {e}")))?;
        if !policies.contains_key(&self.default_policy) {
            return Err(ConfigError::Invalid(format!("ding.default_policy: no policy {:?}", self.default_policy)));
        }
        if let Some((org, name)) = self.org_defaults.iter().find(|(_, name)| !policies.contains_key(*name)) {
            return Err(ConfigError::Invalid(format!("ding.org_defaults.{org}: no policy {name:?}")));
        }
        Ok(policies)
    }
}

/// The operators' HTTP endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// TCP address serving `/metrics`, `/healthz` and `/readyz`; off when unset. Bind it to a
    /// private interface: it has no authentication.
    pub listen: Option<SocketAddr>,
}

/// How receipts are counted and reported.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// Receipt changes are coalesced this long before senders get one update.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How many of each conversation's newest entries get live receipt updates.
    pub horizon: usize,
    /// Whether read receipts are on for organisations without a policy saying otherwise.
    pub enabled: bool,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        Self { window: Duration::from_millis(250), horizon: 1000, enabled: true }
    }
}

/// One organisation's overrides; unset fields take the broker-wide value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// How long a sender may recall a message.
    #[serde(with = "humantime_serde")]
    pub recall_window: Option<Duration>,
    /// Whether read receipts are on.
    pub read_receipts: Option<bool>,
}

/// How conversations are spread over shards and how their writes reach the disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Shard threads; 0 means one per core.
    pub shards: usize,
    /// `true`: each batch's WAL is synced before anyone is acknowledged (survives power loss).
    /// `false`: written to the OS only (survives a broker crash, not a machine crash).
    pub sync_writes: bool,
    /// Most commands a shard serves between two commits.
    pub max_batch: usize,
    /// Commands queued per shard before senders get OVERLOADED.
    pub shard_queue: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self { shards: 0, sync_writes: true, max_batch: 512, shard_queue: 8192 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            data_dir: PathBuf::from("herald-data"),
            orgs: vec![OrgId::new("demo").expect("a valid literal id")],
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            storage: StorageConfig::default(),
            receipts: ReceiptsConfig::default(),
            policies: HashMap::new(),
            metrics: MetricsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            ding: DingConfig::default(),
            calls: crate::call::CallsConfig::default(),
        }
    }
}

/// Where the certificate comes from. With neither path set, the broker generates a self-signed
/// certificate for `localhost`, `127.0.0.1` and `::1` in `<data_dir>/tls/` on first start and
/// reuses it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// How tokens are checked. With neither a public key nor an HMAC secret configured, the broker
/// generates an Ed25519 development key pair in the data directory and trusts its public half.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PEM files of Ed25519 public keys whose EdDSA signatures the broker accepts.
    pub public_keys: Vec<PathBuf>,
    /// A file holding the shared secret of HS256 tokens (at least 32 bytes; one trailing line
    /// break is ignored). Accepted in addition to `public_keys`; each token's algorithm decides
    /// which is checked.
    pub hmac_secret_file: Option<PathBuf>,
    /// The token revocation list (`jti <id>`, `device <org>/<user>/<device>`, `user <org>/<user>`
    /// lines), read at start and on every reload.
    pub revoked_file: Option<PathBuf>,
    /// When set, a token's `iss` claim must equal it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` claim must equal it.
    pub audience: Option<String>,
    /// Clock skew tolerated when checking `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            public_keys: Vec::new(),
            hmac_secret_file: None,
            revoked_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

/// Session limits. Each is announced to the client in WELCOME.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame body accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Largest message payload accepted, in bytes.
    pub max_payload_bytes: u32,
    /// Largest group size.
    pub max_group_members: u32,
    /// How long a sender may recall a message.
    #[serde(with = "humantime_serde")]
    pub recall_window: Duration,
    /// Most requests a client may have outstanding.
    pub max_inflight_requests: u32,
    /// How long a new connection has to complete HELLO.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How long a connection may be silent before QUIC closes it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most devices one user may have online at once.
    pub max_devices_per_user: usize,
    /// Most conversations a user may be in and still create a group (organisations may lower
    /// or raise it with ORG_UPDATE).
    pub max_groups_per_user: u32,
    /// Bytes of deliveries queued per session before it is told to resync instead.
    pub push_queue_bytes: usize,
    /// How far ahead a message may be scheduled or set to expire.
    #[serde(with = "humantime_serde")]
    pub max_schedule: Duration,
    /// Most QUIC connections the broker holds at once; more are closed with OVERLOADED.
    pub max_connections: usize,
    /// Most QUIC connections from one IP address; more are closed with OVERLOADED.
    pub max_connections_per_ip: usize,
    /// TLS handshakes in progress at once; further connections wait their turn unaccepted.
    pub max_concurrent_handshakes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_LEN,
            max_payload_bytes: 64 * 1024,
            max_group_members: 5000,
            recall_window: Duration::from_secs(24 * 60 * 60),
            max_inflight_requests: 256,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_devices_per_user: 10,
            max_groups_per_user: 10_000,
            push_queue_bytes: 4 * 1024 * 1024,
            max_schedule: Duration::from_secs(366 * 24 * 60 * 60),
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_concurrent_handshakes: 64,
        }
    }
}

/// Token-bucket rate limits, so that one client, user or organisation flooding the broker is
/// refused (RATE_LIMITED with a retry-after hint) before its requests reach a shard, and others
/// keep their share. Each scope's unset classes take the defaults of [`RateLimitsConfig::limit`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// `false` turns every rate limit off.
    pub enabled: bool,
    /// Limits of each connection.
    pub session: ScopeLimits,
    /// Limits shared by every session of one user.
    pub user: ScopeLimits,
    /// Limits shared by every session of one organisation.
    pub org: ScopeLimits,
    /// Per-organisation replacements of `org`: a large tenant gets more, a noisy one less.
    pub orgs: HashMap<OrgId, ScopeLimits>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session: ScopeLimits::default(),
            user: ScopeLimits::default(),
            org: ScopeLimits::default(),
            orgs: HashMap::new(),
        }
    }
}

impl RateLimitsConfig {
    /// The limit in force for `class` at `scope`: the configured one, or else the default.
    pub fn limit(&self, scope: Scope, class: Class) -> RateLimit {
        let configured = match scope {
            Scope::Session => &self.session,
            Scope::User => &self.user,
            Scope::Org => &self.org,
        };
        configured.get(class).unwrap_or_else(|| default_limit(scope, class))
    }

    /// The limit `org`'s shared buckets follow for `class`: its own override, or the `org` scope's.
    pub fn org_limit(&self, org: &OrgId, class: Class) -> RateLimit {
        self.orgs.get(org).and_then(|limits| limits.get(class)).unwrap_or_else(|| self.limit(Scope::Org, class))
    }
}

/// The built-in limits: generous enough for any well-behaved client, tight enough that one
/// session cannot take a shard's whole throughput.
fn default_limit(scope: Scope, class: Class) -> RateLimit {
    const MIB: u64 = 1024 * 1024;
    let (per_second, burst) = match (scope, class) {
        (Scope::Session, Class::Sends) => (200, 400),
        (Scope::User, Class::Sends) => (400, 800),
        (Scope::Org, Class::Sends) => (20_000, 40_000),
        (Scope::Session, Class::Bytes) => (8 * MIB, 16 * MIB),
        (Scope::User, Class::Bytes) => (16 * MIB, 32 * MIB),
        (Scope::Org, Class::Bytes) => (512 * MIB, 1024 * MIB),
        (Scope::Session | Scope::User, Class::GroupCreations) => (10, 20),
        (Scope::Org, Class::GroupCreations) => (1_000, 2_000),
        (Scope::Session, Class::Requests) => (1_000, 2_000),
        (Scope::User, Class::Requests) => (2_000, 4_000),
        (Scope::Org, Class::Requests) => (100_000, 200_000),
    };
    RateLimit { per_second, burst }
}

/// One scope's limits; an unset class takes its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeLimits {
    /// SEND requests.
    pub sends: Option<RateLimit>,
    /// SEND payload bytes.
    pub bytes: Option<RateLimit>,
    /// CREATE_GROUP requests.
    pub group_creations: Option<RateLimit>,
    /// Every other request that reaches a shard or the store (PING and HELLO are not limited).
    pub requests: Option<RateLimit>,
}

impl ScopeLimits {
    /// The configured limit for `class`, if any.
    pub fn get(&self, class: Class) -> Option<RateLimit> {
        match class {
            Class::Sends => self.sends,
            Class::Bytes => self.bytes,
            Class::GroupCreations => self.group_creations,
            Class::Requests => self.requests,
        }
    }
}

/// A token bucket's shape: `burst` tokens at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate, in tokens per second.
    pub per_second: u64,
    /// Most tokens taken at once after a quiet period.
    pub burst: u64,
}

/// Log output settings; `RUST_LOG` overrides the level.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// A tracing filter directive, such as `info` or `herald_broker=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".to_owned() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or holds an unknown or mistyped key.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser reported, with the line.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file; keys it omits keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read, does not parse, or holds invalid values.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that types alone cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.max_frame_bytes < 1024 {
            return Err(ConfigError::Invalid("limits.max_frame_bytes must be at least 1024".into()));
        }
        if limits.max_payload_bytes >= limits.max_frame_bytes {
            return Err(ConfigError::Invalid("limits.max_payload_bytes must be below limits.max_frame_bytes".into()));
        }
        if limits.max_group_members < 2 {
            return Err(ConfigError::Invalid("limits.max_group_members must be at least 2".into()));
        }
        if limits.max_inflight_requests == 0 {
            return Err(ConfigError::Invalid("limits.max_inflight_requests must be at least 1".into()));
        }
        if limits.max_connections == 0 || limits.max_connections_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_connections and limits.max_connections_per_ip must be at least 1".into(),
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid("tls.cert and tls.key must be set together".into()));
        }
        if self.orgs.is_empty() {
            return Err(ConfigError::Invalid("orgs must name at least one organisation".into()));
        }
        self.ding.policies()?;
        self.validate_rate_limits()
    }

    /// Whether tokens are checked against the development key, because no production key (an
    /// Ed25519 public key or an HMAC secret) is configured.
    pub fn uses_dev_signing_key(&self) -> bool {
        self.auth.public_keys.is_empty() && self.auth.hmac_secret_file.is_none()
    }

    fn validate_rate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.rate_limits;
        let mut checks: Vec<(String, Class, RateLimit)> = Vec::new();
        for scope in Scope::ALL {
            checks.extend(Class::ALL.map(|class| (format!("{scope}.{class}"), class, limits.limit(scope, class))));
        }
        for org in limits.orgs.keys() {
            checks.extend(Class::ALL.map(|class| (format!("orgs.{org}.{class}"), class, limits.org_limit(org, class))));
        }
        for (key, class, limit) in checks {
            let key = format!("rate_limits.{key}");
            if limit.per_second == 0 || limit.burst == 0 {
                return Err(ConfigError::Invalid(format!("{key}: per_second and burst must be at least 1")));
            }
            // A payload over the byte burst could never be sent, whatever the wait.
            if class == Class::Bytes && limit.burst < u64::from(self.limits.max_payload_bytes) {
                return Err(ConfigError::Invalid(format!("{key}.burst must be at least limits.max_payload_bytes")));
            }
        }
        Ok(())
    }

    /// The generated self-signed certificate's path, used when `tls.cert` is unset.
    pub fn generated_cert_path(&self) -> PathBuf {
        self.data_dir.join("tls").join("cert.pem")
    }

    /// The generated certificate's private key, used when `tls.key` is unset.
    pub fn generated_key_path(&self) -> PathBuf {
        self.data_dir.join("tls").join("key.pem")
    }

    /// The development token-signing key (Ed25519, PKCS#8 PEM), used when neither
    /// `auth.public_keys` nor `auth.hmac_secret_file` is set.
    pub fn dev_signing_key_path(&self) -> PathBuf {
        self.data_dir.join("token-signing-key.pem")
    }

    /// The RocksDB directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_default() {
        let config: Config = toml::from_str("").expect("empty is valid");
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        assert_eq!(config.data_dir, PathBuf::from("herald-data"));
        assert_eq!(config.limits.recall_window, Duration::from_secs(86_400));
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn file_values_override_defaults() {
        let config: Config = toml::from_str(
            "listen = \"0.0.0.0:9000\"\norgs = [\"acme\", \"globex\"]\n[limits]\nrecall_window = \"2h\"\nmax_group_members = 300\n",
        )
        .expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.orgs.len(), 2);
        assert_eq!(config.limits.recall_window, Duration::from_secs(7200));
        assert_eq!(config.limits.max_group_members, 300);
        assert_eq!(config.limits.max_payload_bytes, 64 * 1024, "unset keys keep defaults");
    }

    #[test]
    fn organisations_override_the_recall_window_and_receipts() {
        let policies =
            "[policies.acme]\nrecall_window = \"10m\"\nread_receipts = false\n[receipts]\nwindow = \"100ms\"\n";
        let config: Config = toml::from_str(policies).expect("valid");
        let acme = &config.policies[&OrgId::new("acme").expect("valid")];
        assert_eq!((acme.recall_window, acme.read_receipts), (Some(Duration::from_secs(600)), Some(false)));
        assert_eq!(config.receipts.window, Duration::from_millis(100));
        assert!(config.receipts.enabled, "unset keys keep defaults");
    }

    #[test]
    fn calls_take_their_timings_and_the_media_server_and_keep_the_other_defaults() {
        let text = "[calls]\nring_timeout = \"45s\"\ndelta_window = \"50ms\"\nmedia_server_user = \"sfu\"\n";
        let config: Config = toml::from_str(text).expect("valid");
        let limits = config.calls.limits();
        assert_eq!((limits.ring_timeout, limits.delta_window), (Duration::from_secs(45), Duration::from_millis(50)));
        assert_eq!(limits.rejoin_grace, Duration::from_secs(30));
        assert_eq!(config.calls.media_server_user.as_deref(), Some("sfu"));
        assert!(toml::from_str::<Config>("[calls]\nring = \"1s\"\n").is_err(), "unknown keys refused");
    }

    #[test]
    fn unknown_keys_and_bad_ids_are_refused() {
        assert!(toml::from_str::<Config>("listn = \"127.0.0.1:1\"").is_err());
        assert!(toml::from_str::<Config>("orgs = [\"bad org\"]").is_err());
    }

    #[test]
    fn rate_limits_override_one_class_and_keep_the_other_defaults() {
        let text = "[rate_limits.user]\nsends = { per_second = 5, burst = 7 }\n[rate_limits.org]\nrequests = { per_second = 9, burst = 9 }\n";
        let config: Config = toml::from_str(text).expect("valid");
        let limits = &config.rate_limits;
        assert_eq!(limits.limit(Scope::User, Class::Sends), RateLimit { per_second: 5, burst: 7 });
        assert_eq!(limits.limit(Scope::Org, Class::Requests), RateLimit { per_second: 9, burst: 9 });
        assert_eq!(limits.limit(Scope::User, Class::Bytes), default_limit(Scope::User, Class::Bytes));
        assert_eq!(limits.limit(Scope::Session, Class::Sends), RateLimit { per_second: 200, burst: 400 });
        assert!(limits.enabled);
        config.validate().expect("valid");
        assert!(toml::from_str::<Config>("[rate_limits.session]\nsend = { per_second = 1, burst = 1 }").is_err());
        assert!(toml::from_str::<Config>("[rate_limits.session]\nsends = { per_second = 1 }").is_err());
    }

    #[test]
    fn rate_limits_must_admit_something_and_the_largest_payload() {
        let mut config = Config::default();
        config.rate_limits.org.sends = Some(RateLimit { per_second: 0, burst: 10 });
        let err = config.validate().expect_err("zero rate");
        assert!(err.to_string().contains("rate_limits.org.sends"), "{err}");
        let mut config = Config::default();
        config.rate_limits.session.bytes = Some(RateLimit { per_second: 1_000_000, burst: 1000 });
        let err = config.validate().expect_err("burst below a payload");
        assert!(err.to_string().contains("rate_limits.session.bytes.burst"), "{err}");
    }

    #[test]
    fn validate_names_the_bad_value() {
        let mut config = Config::default();
        config.limits.max_payload_bytes = config.limits.max_frame_bytes;
        let err = config.validate().expect_err("payload must fit a frame");
        assert!(err.to_string().contains("max_payload_bytes"));
    }
}
