//! The Kata agent's wire protocol, generated from `protos/` (see build.rs): messages with
//! serde as the Kata agent serialises them for its policy, and the ttRPC services.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    missing_docs,
    missing_debug_implementations,
    unused_qualifications,
    unreachable_pub,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    renamed_and_removed_lints,
    unused_results,
    trivial_casts
)]

include!(concat!(env!("OUT_DIR"), "/mod.rs"));

/// Serde for a singular enum field: its number, as the Kata agent's policy input has it
/// (`EnumOrUnknown::value`); a number the proto does not name is kept.
pub(crate) mod serde_enum {
    use protobuf::{Enum, EnumOrUnknown};
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(crate) fn serialize<E: Enum, S: Serializer>(
        value: &EnumOrUnknown<E>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(value.value())
    }

    pub(crate) fn deserialize<'de, E: Enum, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<EnumOrUnknown<E>, D::Error> {
        i32::deserialize(deserializer).map(EnumOrUnknown::from_i32)
    }
}

/// Serde for a singular message field: `null` when unset, as in the Kata agent.
pub(crate) mod serde_message {
    use protobuf::MessageField;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<T: Serialize, S: Serializer>(
        value: &MessageField<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.as_ref().serialize(serializer)
    }

    pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<MessageField<T>, D::Error> {
        Option::<T>::deserialize(deserializer).map(MessageField::from_option)
    }
}
