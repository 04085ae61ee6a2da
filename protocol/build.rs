//! Compiles the .proto schema with a vendored `protoc`, so a fresh machine needs no system one.

use std::io::Result;

fn main() -> Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Unit tests derive strategies and JSON views of every message (property tests, test vectors).
    config.type_attribute(".", "#[cfg_attr(test, derive(::proptest_derive::Arbitrary, ::serde::Serialize))]");
    config.compile_protos(
        &[
            "proto/herald/v1/session.proto",
            "proto/herald/v1/messaging.proto",
            "proto/herald/v1/receipts.proto",
            "proto/herald/v1/recall.proto",
            "proto/herald/v1/admin.proto",
            "proto/herald/v1/ding.proto",
            "proto/herald/v1/attendance.proto",
            "proto/herald/v1/call.proto",
            "proto/herald/v1/keys.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
