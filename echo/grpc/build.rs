//! Generates the Echo service's messages, client and server from `proto/echo.proto`, and the
//! ORCA load report messages and `OpenRcaService` server from the protos that croupier-tokio
//! vendors, with the `protoc` that `protoc-bin-vendored` ships (no system `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The build script runs before anything else in this crate and alone in its process.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/echo.proto");
    tonic_prost_build::configure().compile_protos(&["proto/echo.proto"], &["proto"])?;
    let orca = std::path::Path::new("../../adapters/tokio/proto");
    println!("cargo:rerun-if-changed={}", orca.display());
    let include = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(
            &[
                orca.join("xds/data/orca/v3/orca_load_report.proto"),
                orca.join("xds/service/orca/v3/orca.proto"),
            ],
            &[orca.to_path_buf(), include],
        )?;
    Ok(())
}
