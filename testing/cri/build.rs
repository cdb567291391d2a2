//! Compiles the CRI subset with protox (pure Rust, no protoc) into tonic clients.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = "proto/api.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
