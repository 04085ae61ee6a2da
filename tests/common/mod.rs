//! Shared harness for end-to-end tests: a real broker on loopback with RocksDB in a temp dir,
//! tokens from its development key, and a raw QUIC peer for sending bytes the SDK never would.

#![allow(dead_code, unreachable_pub)]

#[cfg(unix)]
pub mod child_broker;
pub mod history;
pub mod rng;
pub mod rss;
pub mod udp_proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use herald_broker::auth::{Claims, SigningKeyPair, TokenMinter};
use herald_broker::{Config, RunningBroker};
use herald_client::{Client, ClientConfig, Trust};
use herald_protocol::{Frame, FrameCodec, OrgId, PROTOCOL_VERSION, RequestId, pb};
use rustls::pki_types::CertificateDer;

pub const ORG: &str = "acme";

/// A broker in a temp directory, stopped (and the directory removed) on drop of both.
pub struct TestBroker {
    pub broker: Option<RunningBroker>,
    pub minter: TokenMinter,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl TestBroker {
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker whose configuration `tweak` may adjust.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.path().to_owned(),
            orgs: vec![OrgId::new(ORG)?, OrgId::new("globex")?],
            ..Config::default()
        };
        config.auth.leeway = Duration::ZERO;
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// Starts a broker on an existing directory, as after a restart.
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> Result<Self> {
        let broker = RunningBroker::start(config.clone()).await?;
        // A broker trusting configured keys has no development key: its tests mint with their
        // own keys, and `minter` signs with a key the broker does not trust.
        let minter = match broker.dev_signing_key() {
            Some(key) => TokenMinter::new(key)?,
            None => TokenMinter::new(&SigningKeyPair::generate()?)?,
        };
        Ok(Self { broker: Some(broker), minter, dir, config })
    }

    pub fn running(&self) -> &RunningBroker {
        self.broker.as_ref().expect("broker running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.running().local_addr()
    }

    pub fn certificate(&self) -> CertificateDer<'static> {
        self.running().certificate()
    }

    /// A token for `user` in `org`, valid for an hour.
    pub fn token(&self, org: &str, user: &str) -> String {
        self.token_with(|c| {
            c.org = org.into();
            c.sub = user.into();
        })
    }

    /// A token whose claims `tweak` may adjust from a valid one-hour token for acme/alice.
    pub fn token_with(&self, tweak: impl FnOnce(&mut Claims)) -> String {
        self.token_by(&self.minter, tweak)
    }

    /// Like [`TestBroker::token_with`], signed by `minter`.
    pub fn token_by(&self, minter: &TokenMinter, tweak: impl FnOnce(&mut Claims)) -> String {
        let now = now_s();
        let mut claims = Claims {
            sub: "alice".into(),
            org: ORG.into(),
            device: None,
            roles: vec![],
            exp: now + 3600,
            iat: now,
            nbf: None,
            iss: None,
            aud: None,
            jti: None,
        };
        tweak(&mut claims);
        minter.mint(&claims).expect("mint")
    }

    pub fn client_config(&self, token: String) -> ClientConfig {
        self.client_config_at(self.addr(), token)
    }

    /// A client configuration for reaching this broker through `server`, a proxy in front of it.
    pub fn client_config_at(&self, server: SocketAddr, token: String) -> ClientConfig {
        ClientConfig::new(server, token)
            .with_trust(Trust::Certificates(vec![self.certificate()]))
            .with_device_id("phone-1")
            .with_connect_timeout(Duration::from_secs(10))
            .with_request_timeout(Duration::from_secs(10))
    }

    pub async fn client(&self, user: &str) -> Result<Client> {
        Ok(Client::connect(self.client_config(self.token(ORG, user))).await?)
    }

    /// Stops the broker and returns its directory and configuration, for a restart.
    pub async fn stop(mut self) -> Result<(tempfile::TempDir, Config)> {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await?;
        }
        Ok((self.dir, self.config))
    }
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A QUIC peer that speaks raw frames, for inputs the SDK refuses to produce.
pub struct RawPeer {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub buf: BytesMut,
    pub codec: FrameCodec,
}

impl RawPeer {
    /// Connects with the given ALPN and opens the control stream (which the broker sees once
    /// the first byte is written).
    pub async fn connect_alpn(broker: &TestBroker, alpn: &[u8]) -> Result<quinn::Connection> {
        let endpoint = client_endpoint(broker, alpn)?;
        let conn = endpoint.connect(broker.addr(), "localhost")?.await?;
        Ok(conn)
    }

    pub async fn connect(broker: &TestBroker) -> Result<Self> {
        Self::connect_with_window(broker, None).await
    }

    /// Connects to `server` (a proxy in front of `broker`) and opens the control stream.
    pub async fn connect_at(broker: &TestBroker, server: SocketAddr) -> Result<Self> {
        Self::connect_to(broker.certificate(), server, None).await
    }

    /// Connects with a given per-stream receive window, to make a reader that falls behind
    /// stall the broker's writes quickly.
    pub async fn connect_with_window(broker: &TestBroker, stream_window: Option<u32>) -> Result<Self> {
        Self::connect_to(broker.certificate(), broker.addr(), stream_window).await
    }

    /// Connects to the broker at `server` that presents `certificate` (any broker: one in this
    /// process, a child process, or one behind a proxy) and opens the control stream.
    pub async fn connect_to(
        certificate: CertificateDer<'static>,
        server: SocketAddr,
        stream_window: Option<u32>,
    ) -> Result<Self> {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let mut config = client_config_trusting(certificate, herald_protocol::ALPN)?;
        if let Some(window) = stream_window {
            let mut transport = quinn::TransportConfig::default();
            transport.stream_receive_window(window.into());
            config.transport_config(Arc::new(transport));
        }
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(server, "localhost")?.await?;
        let (send, recv) = conn.open_bi().await?;
        Ok(Self { endpoint, conn, send, recv, buf: BytesMut::new(), codec: FrameCodec::new(16 << 20) })
    }

    /// Sends HELLO with `token` and waits for WELCOME.
    pub async fn hello(&mut self, token: String) -> Result<()> {
        self.send_frame(&Frame::from_body(RequestId::new(1), &hello(token))).await?;
        let welcome = self.next_frame().await?.context("WELCOME")?;
        welcome.decode_body::<pb::Welcome>()?;
        Ok(())
    }

    /// Connects and completes the handshake with a valid token.
    pub async fn open(broker: &TestBroker) -> Result<Self> {
        Self::open_at(broker, broker.addr(), "alice").await
    }

    /// Connects to `server` (the broker, or a proxy in front of it) and completes the
    /// handshake as `user`.
    pub async fn open_at(broker: &TestBroker, server: SocketAddr, user: &str) -> Result<Self> {
        let mut peer = Self::connect_at(broker, server).await?;
        peer.hello(broker.token(ORG, user)).await?;
        Ok(peer)
    }

    pub async fn send_frame(&mut self, frame: &Frame) -> Result<()> {
        let mut buf = BytesMut::new();
        FrameCodec::new(u32::MAX).encode(frame, &mut buf)?;
        self.send_raw(&buf).await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// The next frame on the control stream, or `None` once the broker finished it.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(frame) = self.codec.decode(&mut self.buf)? {
                    return Ok(Some(frame));
                }
                match self.recv.read_chunk(65536, true).await? {
                    Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
                    None if self.buf.is_empty() => return Ok(None),
                    None => bail!("stream ended inside a frame"),
                }
            }
        })
        .await
        .context("no frame within 10 s")?
    }

    /// The next frame, which must be an ERROR; returns its request id and code.
    pub async fn expect_error(&mut self) -> Result<(RequestId, u32)> {
        let frame = self.next_frame().await?.context("expected ERROR, stream ended")?;
        let error: pb::Error = frame.decode_body()?;
        Ok((frame.request_id(), error.code))
    }

    /// Waits for the connection to close and returns the application error code.
    pub async fn closed_code(&self) -> Result<u64> {
        closed_code(&self.conn).await
    }
}

pub async fn closed_code(conn: &quinn::Connection) -> Result<u64> {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await? {
        quinn::ConnectionError::ApplicationClosed(close) => Ok(close.error_code.into_inner()),
        other => bail!("closed without an application code: {other}"),
    }
}

pub fn hello(token: String) -> pb::Hello {
    pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        token,
        device_id: "raw-1".into(),
        client_name: "raw-test".into(),
        client_version: "0".into(),
    }
}

pub fn client_endpoint(broker: &TestBroker, alpn: &[u8]) -> Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(client_config_trusting(broker.certificate(), alpn)?);
    Ok(endpoint)
}

fn client_config_trusting(certificate: CertificateDer<'static>, alpn: &[u8]) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

/// Every file under `dir` whose bytes contain `needle`: for proving plaintext never reached
/// the broker's disk (and, with a control message, that the scan would have found it).
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle)?);
        } else if std::fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            found.push(path.display().to_string());
        }
    }
    Ok(found)
}

/// The first event `pick` accepts within `wait`; the others are skipped.
pub async fn next_event<T>(
    wait: Duration,
    events: &mut tokio::sync::mpsc::Receiver<herald_client::Event>,
    mut pick: impl FnMut(herald_client::Event) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("no matching event within {wait:?}"),
            Ok(None) => bail!("event stream ended"),
            Ok(Some(event)) => {
                if let Some(found) = pick(event) {
                    return Ok(found);
                }
            }
        }
    }
}
