//! Generates the Echo service's messages, client and server from `proto/echo.proto`, with the
//! `protoc` that `protoc-bin-vendored` ships (no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The build script runs before anything else in this crate and alone in its process.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/echo.proto");
    tonic_prost_build::configure().compile_protos(&["proto/echo.proto"], &["proto"])?;
    Ok(())
}
