//! A client-side UDP endpoint that many sessions can share.
//!
//! Each [`Client`](crate::Client) opens its own UDP socket by default, which is what an app
//! with one session wants. A process holding thousands of sessions (a gateway, a bot farm, the
//! load tool) would spend a socket and a quinn endpoint driver per session that way; QUIC
//! multiplexes connections over one socket by connection id, so those processes share a few
//! endpoints instead, one per core being a good start.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::ClientError;

/// Socket buffer size asked of the kernel. Linux's default (about 208 KiB) drops datagrams
/// when thousands of connections receive a burst at once.
const UDP_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// A UDP socket and its QUIC endpoint, cheap to clone, shareable by any number of sessions
/// through [`ClientConfig::with_endpoint`](crate::ClientConfig::with_endpoint).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) quic: quinn::Endpoint,
}

impl Endpoint {
    /// Binds a client endpoint to `addr` (port 0 picks a free one) with enlarged socket
    /// buffers. The kernel may grant less than asked (see `net.core.rmem_max`); that is not an
    /// error.
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] if the socket cannot be created or bound.
    pub fn bind(addr: SocketAddr) -> Result<Endpoint, ClientError> {
        let socket = udp_socket(addr)?;
        let quic = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, Arc::new(quinn::TokioRuntime))
            .map_err(io)?;
        Ok(Endpoint { quic })
    }

    /// Moves every session on this endpoint to a new socket on a fresh port of the same
    /// family, without reconnecting: QUIC migrates each connection to the new path (the broker
    /// validates it and carries on). An app calls this when the network changes under it, say
    /// from Wi-Fi to cellular, rather than waiting for the old path to time out.
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] if the new socket cannot be bound; the old one stays in use.
    pub fn rebind(&self) -> Result<(), ClientError> {
        rebind(&self.quic)
    }

    /// An endpoint on an ephemeral port of the wildcard address of `server`'s family.
    ///
    /// # Errors
    /// As [`Endpoint::bind`].
    pub fn for_server(server: SocketAddr) -> Result<Endpoint, ClientError> {
        Endpoint::bind(wildcard_for(server))
    }

    /// The local address the socket is bound to.
    ///
    /// # Errors
    /// [`ClientError::Endpoint`] if the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr, ClientError> {
        self.quic.local_addr().map_err(io)
    }
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Endpoint(Arc::new(e))
}

/// A non-blocking UDP socket bound to `addr`, with enlarged buffers (best effort: a smaller
/// buffer only means more loss under bursts).
fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, ClientError> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None).map_err(io)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(io)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true).map_err(io)?;
    socket.bind(&addr.into()).map_err(io)?;
    Ok(socket.into())
}

/// Moves `endpoint` to a fresh socket on the wildcard address of its current family.
pub(crate) fn rebind(endpoint: &quinn::Endpoint) -> Result<(), ClientError> {
    let local = endpoint.local_addr().map_err(io)?;
    let wildcard = wildcard_for(local);
    endpoint.rebind(udp_socket(wildcard)?).map_err(io)
}

/// The unspecified address of `server`'s family, port 0.
pub(crate) fn wildcard_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv6() { SocketAddr::from(([0u16; 8], 0)) } else { SocketAddr::from(([0u8; 4], 0)) }
}
