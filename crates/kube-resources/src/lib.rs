//! Kubernetes resources as an order-preserving YAML tree: reading, writing, and the
//! mutations `contrast generate` applies to confidential workloads.
//!
//! - [`yaml`]: the tree ([`Node`]), a reader with Kubernetes' YAML 1.1 scalar semantics and
//!   a writer that quotes whatever a reader could misread.
//! - [`workload`]: the workload kinds, their pod templates and Contrast's annotations.
//! - [`mutate`]: runtime class, Initializer, service-mesh sidecar and encrypted volume.
//! - [`bundle`]: the runtime, Coordinator and port-forwarder resources Contrast ships.
//! - [`memory`]: quantities of bytes, and the memory a pod VM needs for its images.

pub mod bundle;
pub mod memory;
pub mod mutate;
pub mod workload;
pub mod yaml;

pub use mutate::{InjectedImages, MutateError, Mutation, MutationOptions, mutate};
pub use workload::{Workload, WorkloadError, WorkloadKind, annotations, for_each_workload};
pub use yaml::{Map, Node, YamlError, emit_documents, parse_documents};
