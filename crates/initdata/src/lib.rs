//! The initdata document a pod VM is launched with, as both sides read it: the TOML format
//! and its digest ([`document`]), how `contrast generate` writes it and the pod annotation
//! that carries it ([`write`]), the block device the node shim hands the guest ([`disk`]),
//! and the agent policies it carries ([`agent_policy`]).
//!
//! The guest's initdata check (`guest/initdata-check`) reads the document from the host and
//! compares its digest with the TEE's launch field; the CLI writes it (`contrast-policy`).

pub mod agent_policy;
pub mod disk;
pub mod document;
pub mod write;

pub use document::{Algorithm, DocumentError, INITDATA_VERSION, Initdata, POLICY_KEY};
pub use write::{
    AnnotationError, GeneratedInitdata, INITDATA_ANNOTATION, InitdataError, InitdataWriter,
    MAX_INITDATA_LEN, decode_annotation_value,
};
