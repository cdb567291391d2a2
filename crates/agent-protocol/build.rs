//! Generates the Kata agent's messages (rust-protobuf) and ttRPC services from `protos/`,
//! with serde derives that serialise a request exactly as the Kata agent does for its
//! policy: field names as in the proto (`type` becomes `type_`), enums as their numbers,
//! an unset message field as `null`, unknown and cached fields left out.

use protobuf::descriptor::field_descriptor_proto::Type;
use protobuf::reflect::{EnumDescriptor, FieldDescriptor, MessageDescriptor, OneofDescriptor};
use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize, ProtobufCustomizeCallback};

const DERIVE: &str = "#[derive(::serde::Serialize, ::serde::Deserialize)] #[serde(default)]";

struct Serde;

impl ProtobufCustomizeCallback for Serde {
    fn message(&self, _: &MessageDescriptor) -> ProtobufCustomize {
        ProtobufCustomize::default().before(DERIVE)
    }

    fn enumeration(&self, _: &EnumDescriptor) -> ProtobufCustomize {
        ProtobufCustomize::default().before("#[derive(::serde::Serialize, ::serde::Deserialize)]")
    }

    fn oneof(&self, _: &OneofDescriptor) -> ProtobufCustomize {
        ProtobufCustomize::default().before("#[derive(::serde::Serialize, ::serde::Deserialize)]")
    }

    fn field(&self, field: &FieldDescriptor) -> ProtobufCustomize {
        let proto = field.proto();
        if proto.type_() == Type::TYPE_ENUM && field.is_singular() {
            ProtobufCustomize::default().before(
                "#[serde(serialize_with = \"crate::proto::serde_enum::serialize\", deserialize_with = \"crate::proto::serde_enum::deserialize\")]",
            )
        } else if proto.type_() == Type::TYPE_MESSAGE && field.is_singular() {
            ProtobufCustomize::default().before(
                "#[serde(serialize_with = \"crate::proto::serde_message::serialize\", deserialize_with = \"crate::proto::serde_message::deserialize\")]",
            )
        } else {
            ProtobufCustomize::default()
        }
    }

    fn special_field(&self, _: &MessageDescriptor, _: &str) -> ProtobufCustomize {
        ProtobufCustomize::default().before("#[serde(skip)]")
    }
}

fn main() {
    let protos = [
        "protos/agent.proto",
        "protos/health.proto",
        "protos/oci.proto",
        "protos/types.proto",
        "protos/csi.proto",
        "protos/google/protobuf/empty.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    Codegen::new()
        .out_dir(&out)
        .inputs(protos)
        .include("protos")
        .rust_protobuf()
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(true))
        .rust_protobuf_customize_callback(Serde)
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .run()
        .expect("generating the Kata agent protocol from protos/");
    // ttrpc-compiler marks its files `allow(unsafe_code)`, which the workspace forbids;
    // they hold no unsafe code, so the attribute goes.
    for service in ["agent_ttrpc.rs", "health_ttrpc.rs"] {
        let path = out.join(service);
        let code = std::fs::read_to_string(&path).expect("reading generated service code");
        std::fs::write(&path, code.replace("#![allow(unsafe_code)]\n", ""))
            .expect("writing generated service code");
    }
    // rust-protobuf's mod.rs lists the message modules only; add the services.
    let mod_rs = out.join("mod.rs");
    let mut modules = std::fs::read_to_string(&mod_rs).expect("reading the generated mod.rs");
    modules.push_str("pub mod agent_ttrpc;\npub mod health_ttrpc;\n");
    std::fs::write(&mod_rs, modules).expect("writing the generated mod.rs");
}
