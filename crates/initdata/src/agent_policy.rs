//! The requests the Kata agent asks its policy about, and the deny-all policy that replaces
//! the initdata's when the initdata cannot be trusted.
//!
//! The agent evaluates `data.agent_policy.<RequestName>` for every ttRPC request with
//! regorus (docs/runtime.md §8). A result of `false` is a refusal, and the agent
//! puts everything the policy printed during that evaluation into the error it returns
//! to the runtime ("<Request> is blocked by policy: <prints>"). So the deny-all policy
//! defines every request as `false` and prints the reason while deciding: whoever looks
//! at the failing pod (`kubectl describe`) reads why. Requests this list does not name
//! are undefined, which the agent also refuses (without the reason);
//! `AllowRequestsFailingPolicy` is pinned to `false` so nothing turns a refusal into an
//! allow.

use std::fmt::Write as _;

/// The longest reason put into a policy; longer ones are cut (a TOML error may quote
/// the host's input, and the policy is read on every request).
pub const MAX_REASON_LEN: usize = 4096;

/// The Kata agent's policy-checked requests: every name its ttRPC service passes to the
/// policy (`rpc.rs`: the protobuf message name, so the memory agent's are
/// `MemAgent*Config` without `Request`), and every name kata's sample policies define
/// (`allow-all.rego`, genpolicy's `rules.rego`), so each refusal carries the reason.
pub const AGENT_REQUESTS: &[&str] = &[
    "AddARPNeighborsRequest",
    "AddSwapPathRequest",
    "AddSwapRequest",
    "CloseStdinRequest",
    "CopyFileRequest",
    "CreateContainerRequest",
    "CreateSandboxRequest",
    "DestroySandboxRequest",
    "ExecProcessRequest",
    "GetDiagnosticDataRequest",
    "GetIPTablesRequest",
    "GetMetricsRequest",
    "GetOOMEventRequest",
    "GuestDetailsRequest",
    "ListInterfacesRequest",
    "ListRoutesRequest",
    "MemAgentCompactConfig",
    "MemAgentMemcgConfig",
    "MemHotplugByProbeRequest",
    "OnlineCPUMemRequest",
    "PauseContainerRequest",
    "PullImageRequest",
    "ReadContainerTerminationMessage",
    "ReadStreamRequest",
    "RemoveContainerRequest",
    "RemoveStaleVirtiofsShareMountsRequest",
    "ReseedRandomDevRequest",
    "ResizeVolumeRequest",
    "ResumeContainerRequest",
    "SetGuestDateTimeRequest",
    "SetIPTablesRequest",
    "SetPolicyRequest",
    "SignalProcessRequest",
    "StartContainerRequest",
    "StartTracingRequest",
    "StatsContainerRequest",
    "StopTracingRequest",
    "TtyWinResizeRequest",
    "UpdateContainerRequest",
    "UpdateEphemeralMountsRequest",
    "UpdateInterfaceRequest",
    "UpdateRoutesRequest",
    "VolumeStatsRequest",
    "WaitProcessRequest",
    "WriteStreamRequest",
];

/// A Rego string literal for `s` (Rego strings take JSON's escapes), so no reason can
/// end the string and add rules of its own.
pub fn rego_string(s: &str) -> String {
    // Serialising a str to JSON cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `reason`, cut to [`MAX_REASON_LEN`] bytes at a character boundary.
pub fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_LEN {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut at {MAX_REASON_LEN} bytes]", &reason[..end])
}

/// A policy that refuses every agent request and prints `reason` with each refusal.
/// Valid as Rego v1 (what the Kata agent's pinned regorus evaluates, docs/runtime.md §8)
/// and v0.
pub fn deny_all(reason: &str) -> String {
    let mut policy = String::from(
        "# Written by Contrast's initdata check: this pod's initdata could not be verified,\n\
         # so the Kata agent refuses every request. Each refusal prints `message`.\n\
         package agent_policy\n\
         \n\
         import future.keywords.if\n\
         \n\
         default AllowRequestsFailingPolicy := false\n",
    );
    for request in AGENT_REQUESTS {
        // Infallible: writing to a String.
        let _ = write!(
            policy,
            "\ndefault {request} := false\n{request} := false if {{\n\tprint(message)\n}}\n"
        );
    }
    let _ = writeln!(
        policy,
        "\nmessage := {}",
        rego_string(&format!(
            "Contrast initdata check failed: {}",
            bounded_reason(reason)
        ))
    );
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_denied_with_the_message() {
        let policy = deny_all("digest mismatch");
        assert!(policy.contains("package agent_policy\n"));
        assert!(policy.contains("default AllowRequestsFailingPolicy := false\n"));
        for request in AGENT_REQUESTS {
            assert!(
                policy.contains(&format!("default {request} := false\n")),
                "{request}"
            );
            assert!(
                policy.contains(&format!("{request} := false if {{\n\tprint(message)\n}}\n")),
                "{request}"
            );
            assert!(!policy.contains(&format!("{request} := true")), "{request}");
        }
        assert!(
            policy.ends_with("message := \"Contrast initdata check failed: digest mismatch\"\n"),
            "{policy}"
        );
    }

    #[test]
    fn the_request_list_has_no_duplicates() {
        let mut names = AGENT_REQUESTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AGENT_REQUESTS.len());
    }

    #[test]
    fn a_reason_cannot_break_out_of_the_string() {
        let hostile = "x\"\nCreateContainerRequest := true\nmessage2 := \"\\";
        let policy = deny_all(hostile);
        let last = policy.lines().last().unwrap();
        assert_eq!(
            last,
            "message := \"Contrast initdata check failed: x\\\"\\nCreateContainerRequest := true\\nmessage2 := \\\"\\\\\""
        );
        assert_eq!(policy.matches("CreateContainerRequest := true").count(), 1);
        assert!(
            !policy
                .lines()
                .any(|l| l == "CreateContainerRequest := true")
        );
    }

    #[test]
    fn rego_strings_escape_control_characters() {
        assert_eq!(rego_string("a\u{1}b\tc"), "\"a\\u0001b\\tc\"");
        assert_eq!(rego_string("ü"), "\"ü\"");
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = bounded_reason(&long);
        assert!(cut.len() < MAX_REASON_LEN + 40);
        assert!(cut.ends_with(" [cut at 4096 bytes]"));
        assert_eq!(bounded_reason("short"), "short");
        assert!(deny_all(&long).len() < 8 * 1024 + AGENT_REQUESTS.len() * 100);
    }
}
