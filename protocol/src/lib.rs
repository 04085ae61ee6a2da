//! The Herald wire protocol, version 1, as a sans-IO library.
//!
//! This crate is the contract between the broker, the SDK and clients written in other languages
//! (docs/PROTOCOL.md is its normative description). It knows how bytes become frames and frames
//! become typed messages; it knows nothing of sockets, QUIC streams, clocks or storage, so the same
//! code runs in the broker, the SDK, the load tool and the fuzzers.
//!
//! A frame is a 12-byte header (body length, frame type, flags, request id) followed by a protobuf
//! body. [`FrameCodec`] turns a byte buffer into frames and back; [`Body`] turns a frame into the
//! message its type names.
//!
//! ```
//! use bytes::BytesMut;
//! use herald_protocol::{pb, Body, Frame, FrameCodec, RequestId};
//!
//! let codec = FrameCodec::default();
//! let mut wire = BytesMut::new();
//! let ping = Frame::from_body(RequestId::new(7), &pb::Ping { nonce: 42 });
//! codec.encode(&ping, &mut wire)?;
//!
//! let frame = codec.decode(&mut wire)?.expect("a whole frame is buffered");
//! assert_eq!(frame.request_id(), RequestId::new(7));
//! match Body::decode(&frame)? {
//!     Body::Ping(p) => assert_eq!(p.nonce, 42),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod codec;
mod error_code;
mod frame;
mod frame_type;
mod ids;
mod version;

pub mod e2e;
pub mod raw;

pub mod pb;

pub use body::{Body, BodyError, FrameBody};
pub use codec::{DEFAULT_MAX_FRAME_LEN, FrameCodec, FrameError};
pub use error_code::ErrorCode;
pub use frame::{Flags, Frame, HEADER_LEN, RequestId};
pub use frame_type::FrameType;
pub use ids::{DeviceId, IdError, MAX_ID_LEN, OrgId, SessionId, UserId};
pub use version::{ALPN, PROTOCOL_VERSION, SUPPORTED_VERSIONS};

#[cfg(test)]
mod vectors_test;
