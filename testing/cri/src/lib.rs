//! Test support for a container runtime as the kubelet sees it: a private containerd
//! ([`Containerd`]) with the CRI plugin, a CRI client over its unix socket ([`Cri`]), and
//! test images built from this machine's static busybox ([`images`]), and the pod and
//! container configurations as kubelet fills them ([`kubelet`]), and a pod spec run as the
//! kubelet runs it ([`workload`]).
//!
//! Each [`Containerd`] lives in a fresh temporary directory (root, state, sockets, runc
//! state, log) and is torn down on drop: containerd, its shims and their processes are
//! killed, what is mounted under the directory is unmounted, the directory removed.
//! [`Containerd::leftovers`] tells a test whether its pods were torn down cleanly.
#![forbid(unsafe_code)]

mod containerd;
pub mod images;
pub mod kubelet;
mod teardown;
pub mod workload;

use std::path::PathBuf;

pub use containerd::{Containerd, ContainerdConfig, Cri, PodNetwork, RuntimeHandler};
pub use teardown::{Leftovers, ShimProcess, unmount_under};

/// The CRI's `runtime.v1` messages and clients (a subset of Kubernetes' api.proto).
pub mod runtime {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
    tonic::include_proto!("runtime.v1");
}

/// The CRI namespace of containerd: images for pods must be in it.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// What went wrong while running containerd or talking to it.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// A file or directory of the harness could not be used.
    #[error("could not {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("could not start {program} (is it installed? apt-get install containerd runc)")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// containerd exited before its CRI answered.
    #[error("containerd exited ({status}) before its CRI answered; its log ends with:\n{log_tail}")]
    Exited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The end of containerd's log.
        log_tail: String,
    },
    /// containerd's CRI did not answer Version in time.
    #[error(
        "containerd's CRI did not answer Version within {seconds} s at {socket}; \
         its log ends with:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The socket.
        socket: PathBuf,
        /// The end of containerd's log.
        log_tail: String,
    },
    /// The CRI socket could not be connected to.
    #[error("could not connect to containerd's socket {socket}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The error.
        source: tonic::transport::Error,
    },
    /// A CRI call failed.
    #[error(
        "the CRI call {call} failed: {code:?}: {message}; containerd's log ends with:\n{log_tail}"
    )]
    Call {
        /// The method.
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
        /// The end of containerd's log.
        log_tail: String,
    },
    /// A command (ctr, umount, kill) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A pod did not come up as the kubelet would have it: an init container failed, a
    /// startup probe did not pass.
    #[error("{0}")]
    Pod(String),
    /// A test image could not be built.
    #[error("could not build the test image {name}")]
    Image {
        /// The image's name.
        name: String,
        /// The error.
        source: Box<contrast_image::ImageError>,
    },
}
