//! The node shim, `containerd-shim-contrast-cc-v2`: containerd → this shim → QEMU with the
//! measured guest image → the guest agent.
//!
//! - [`config`]: the Kata configuration the runtime installer writes, read back.
//! - [`vm`]: one pod VM (its QEMU command line, launch, the vsock to the agent).
//! - [`network`]: the pod's CNI network namespace joined to the VM (Kata's tcfilter model).
//! - [`spec`]: containerd's OCI spec turned into the agent's requests, as the Kata runtime
//!   sends them (the agent's policy was generated to expect exactly those).
//! - [`task`]: containerd's task API for one pod (with `streams`: the processes' standard
//!   streams, and `metrics`: statistics for containerd).
#![forbid(unsafe_code)]

pub mod config;
mod metrics;
pub mod network;
pub mod spec;
mod streams;
pub mod task;
pub mod vm;
