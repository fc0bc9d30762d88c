//! The ORCA messages' Rust code in `src/grpc/orca/` is what prost generates from the protos in
//! `proto/`: this regenerates it with the `protoc` that `protoc-bin-vendored` ships and compares.
//!
//! After changing a proto (or prost), `CROUPIER_REGENERATE_ORCA=1 cargo test -p croupier-tokio
//! --features grpc --test orca_generated` writes the new code in place.

use std::path::{Path, PathBuf};

/// The generated files, by the proto package they hold.
const GENERATED: [&str; 2] = ["xds.data.orca.v3.rs", "xds.service.orca.v3.rs"];

#[test]
fn the_committed_orca_code_is_what_the_protos_generate() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = crate_dir.join("proto");
    let committed = crate_dir.join("src/grpc/orca");
    let out = std::env::temp_dir().join(format!("croupier-orca-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a scratch directory");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("the vendored protoc");
    let includes: [PathBuf; 2] = [
        proto.clone(),
        protoc_bin_vendored::include_path().expect("protoc's own protos"),
    ];
    prost_build::Config::new()
        .protoc_executable(protoc)
        .out_dir(&out)
        .compile_protos(
            &[
                proto.join("xds/data/orca/v3/orca_load_report.proto"),
                proto.join("xds/service/orca/v3/orca.proto"),
            ],
            &includes,
        )
        .expect("prost generates the ORCA messages");
    let regenerate = std::env::var_os("CROUPIER_REGENERATE_ORCA").is_some();
    for file in GENERATED {
        let fresh = std::fs::read_to_string(out.join(file)).expect("a generated file");
        let path = committed.join(file);
        if regenerate {
            std::fs::write(&path, &fresh).expect("the committed file is writable");
            continue;
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == fresh,
            "{} is not what prost generates from proto/; regenerate it with \
             CROUPIER_REGENERATE_ORCA=1 (see this test's docs)",
            path.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
