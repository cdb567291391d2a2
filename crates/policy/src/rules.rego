# Contrast's Kata agent policy.
#
# The Kata agent evaluates `data.agent_policy.<RequestName>` for every ttRPC request the
# host sends, with the request as `input`, and serves the request only if the result is
# true. `policy_data` (appended below these rules by `contrast generate`) describes the
# one pod this policy belongs to: its containers, what each may run, and with which
# environment, user, capabilities and mounts. These rules are the same for every pod.
#
# Valid as Rego v0 (what the Kata agent evaluates) and v1.
package agent_policy

import future.keywords.every
import future.keywords.if
import future.keywords.in

# Never turn a refusal into an allow.
default AllowRequestsFailingPolicy := false

# Requests that give the host nothing it does not already have: lifecycle of the
# containers the policy admitted, the network the host provides anyway, statistics,
# and container output (logs are host-visible by design).
default DestroySandboxRequest := true
default GetOOMEventRequest := true
default GuestDetailsRequest := true
default ListInterfacesRequest := true
default ListRoutesRequest := true
default OnlineCPUMemRequest := true
default ReadContainerTerminationMessage := true
default ReadStreamRequest := true
default RemoveStaleVirtiofsShareMountsRequest := true
default SignalProcessRequest := true
default StartContainerRequest := true
default StatsContainerRequest := true
default TtyWinResizeRequest := true
default WaitProcessRequest := true

# Requests the host never gets: they would change the guest's code, time, entropy,
# firewall, policy or memory, feed input into containers, or read guest internals.
default AddSwapPathRequest := false
default AddSwapRequest := false
default CloseStdinRequest := false
default GetDiagnosticDataRequest := false
default GetIPTablesRequest := false
default GetMetricsRequest := false
default MemAgentCompactConfig := false
default MemAgentMemcgConfig := false
default MemHotplugByProbeRequest := false
default PauseContainerRequest := false
default PullImageRequest := false
default ReseedRandomDevRequest := false
default ResizeVolumeRequest := false
default ResumeContainerRequest := false
default SetGuestDateTimeRequest := false
default SetIPTablesRequest := false
default SetPolicyRequest := false
default StartTracingRequest := false
default StopTracingRequest := false
default UpdateContainerRequest := false
default UpdateEphemeralMountsRequest := false
default VolumeStatsRequest := false
default WriteStreamRequest := false

# Requests decided by the rules below.
default RemoveContainerRequest := true
default AddARPNeighborsRequest := false
default CopyFileRequest := false
default CreateContainerRequest := false
default CreateSandboxRequest := false
default ExecProcessRequest := false
default UpdateInterfaceRequest := false
default UpdateRoutesRequest := false

# ---------------------------------------------------------------------------------------
# Reading the input. Missing and null fields read as empty, so a malformed request fails
# a check instead of making a rule undefined in a way that could hide a check.

as_array(x) := x if {
	is_array(x)
} else := []

as_object(x) := x if {
	is_object(x)
} else := {}

as_string(x) := x if {
	is_string(x)
} else := ""

# The request; anything but an object reads as an empty one.
request := as_object(input)

oci := as_object(object.get(request, "OCI", {}))

process := as_object(object.get(oci, "Process", {}))

linux := as_object(object.get(oci, "Linux", {}))

annotation(key) := as_string(object.get(as_object(object.get(oci, "Annotations", {})), key, ""))

container_id := as_string(object.get(request, "container_id", ""))

sandbox_id := annotation("io.kubernetes.cri.sandbox-id")

# Container and sandbox IDs are 64 lowercase hex-like characters; checking them first
# also keeps them from adding regex syntax where they are put into patterns.
id_pattern := "^[a-z0-9]{64}$"

ids_ok := true if {
	regex.match(id_pattern, container_id)
	regex.match(id_pattern, sandbox_id)
} else := false

# Where the Kata runtime puts the files it copies in.
shared_dir := "/run/kata-containers/shared/containers"

# Where the agent puts a guest-pulled image's root file system (and the pause bundle):
# <container base>/<container id>/rootfs (the runtime's ShareRootFilesystem for guest pull).
root_path := concat("/", ["/run/kata-containers", container_id, "rootfs"])

# Pattern templates in policy_data name the container and sandbox as $(cid) and $(sid).
expand(template) := replace(replace(template, "$(cid)", container_id), "$(sid)", sandbox_id)

# A read-only requirement is met only by a read-only value; without one, both are fine.
readonly_ok(required, actual) := true if {
	not required
} else := true if {
	actual == true
} else := false

# ---------------------------------------------------------------------------------------
# The pod.

sandbox_ok := true if {
	namespace_ok
	regex.match(policy_data.pod.name_regex, annotation("io.kubernetes.cri.sandbox-name"))
} else := false

# The resource's namespace; or, for a resource that names none, any namespace (an RFC 1123
# label), which the first container fixes for the sandbox (sandbox_state).
namespace_ok if {
	policy_data.pod.namespace != ""
	annotation("io.kubernetes.cri.sandbox-namespace") == policy_data.pod.namespace
}

namespace_ok if {
	policy_data.pod.namespace == ""
	regex.match(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`, annotation("io.kubernetes.cri.sandbox-namespace"))
}

# The namespace the sandbox runs in: the request's (CreateContainer) or, for an exec, the
# one the sandbox's first container recorded.
sandbox_namespace := ns if {
	ns := annotation("io.kubernetes.cri.sandbox-namespace")
	ns != ""
} else := as_string(object.get(pstate, "namespace", ""))

# ---------------------------------------------------------------------------------------
# The image. The guest pulls it itself (storage driver image_guest_pull, source = the
# image reference), so the reference must name the digest the policy was made for.

storages := as_array(object.get(request, "storages", []))

guest_pulls := [s | some s in storages; s.driver == "image_guest_pull"]

# The agent decides from this metadata whether to pull the image or to use the pause
# bundle of the guest image, so it must say what the OCI annotations say.
guest_pull_metadata(s) := m if {
	options := [o | some o in as_array(s.driver_options); startswith(o, "image_guest_pull=")]
	count(options) == 1
	document := json.unmarshal(substring(options[0], count("image_guest_pull="), -1))
	m := as_object(object.get(as_object(document), "metadata", {}))
} else := {}

guest_pull_type(s) := as_string(object.get(guest_pull_metadata(s), "io.kubernetes.cri.container-type", ""))

image_ok(c) := true if {
	count(guest_pulls) == 1
	s := guest_pulls[0]
	regex.match("^[^@]+@sha256:[0-9a-f]{64}$", as_string(s.source))
	endswith(s.source, concat("", ["@", c.image_digest]))
	s.mount_point == root_path
	guest_pull_type(s) != "sandbox"
} else := false

root_ok(read_only) := true if {
	root := as_object(object.get(oci, "Root", {}))
	root.Path == root_path
	readonly_ok(read_only, object.get(root, "Readonly", false))
} else := false

# ---------------------------------------------------------------------------------------
# The process: of a container (CreateContainer) or of an exec (ExecProcess).

args_ok(args, p) := true if {
	as_array(object.get(p, "Args", [])) == args
} else := false

cwd_ok(c, p) := true if {
	object.get(p, "Cwd", "") == c.cwd
} else := false

user_ok(c, p) := true if {
	user := as_object(object.get(p, "User", {}))
	object.get(user, "UID", -1) == c.uid
	object.get(user, "GID", -1) in c.gids
	every g in as_array(object.get(user, "AdditionalGids", [])) {
		g in c.additional_gids
	}
} else := false

env_name(e) := substring(e, 0, indexof(e, "="))

env_value(e) := substring(e, indexof(e, "=") + 1, -1)

# Every variable appears once; each is declared with this value, declared with a pattern
# its value matches, or one the runtime adds (optional_env, TERM for a terminal); every
# declared variable is present.
env_ok(c, p) := true if {
	env := as_array(object.get(p, "Env", []))
	every e in env {
		is_string(e)
		indexof(e, "=") > 0
	}
	names := [env_name(e) | some e in env]
	count({n | some n in names}) == count(names)
	every e in env {
		env_entry_ok(c, e)
	}
	every name, value in c.env {
		concat("=", [name, value]) in env
	}
	every name, _ in c.env_patterns {
		name in names
	}
	every name in c.env_sandbox_namespace {
		concat("=", [name, sandbox_namespace]) in env
	}
} else := false

env_declared(c, name) if {
	is_string(c.env[name])
}

env_declared(c, name) if {
	is_string(c.env_patterns[name])
}

env_declared(c, name) if {
	name in c.env_sandbox_namespace
}

env_entry_ok(c, e) if {
	c.env[env_name(e)] == env_value(e)
}

env_entry_ok(c, e) if {
	regex.match(c.env_patterns[env_name(e)], env_value(e))
}

env_entry_ok(c, e) if {
	env_name(e) in c.env_sandbox_namespace
	env_value(e) == sandbox_namespace
}

env_entry_ok(c, e) if {
	not env_declared(c, env_name(e))
	some pattern in policy_data.pod.optional_env
	regex.match(pattern, e)
}

env_entry_ok(c, e) if {
	c.terminal == true
	not env_declared(c, "TERM")
	e == "TERM=xterm"
}

capability_sets := ["Ambient", "Bounding", "Effective", "Inheritable", "Permitted"]

# No capability beyond the allowed ones in any set. A process without a capabilities
# object would keep the agent's, so that is refused.
capabilities_ok(c, p) := true if {
	caps := object.get(p, "Capabilities", null)
	is_object(caps)
	every name in capability_sets {
		every cap in as_array(object.get(caps, name, [])) {
			cap in c.capabilities
		}
	}
} else := false

no_new_privileges_ok(c, p) := true if {
	not c.no_new_privileges
} else := true if {
	object.get(p, "NoNewPrivileges", false) == true
} else := false

# ---------------------------------------------------------------------------------------
# Mounts: each one the container gets must be one the policy lists (same destination,
# type, source pattern, read-only if required), each destination once, and every mount
# the pod spec declares must be there.

mount_type(m) := t if {
	t := m.type_
	is_string(t)
} else := as_string(object.get(m, "type", ""))

mount_read_only(m) := true if {
	options := as_array(object.get(m, "options", []))
	"ro" in options
	not "rw" in options
} else := false

# Mount propagation lets mounts flow between the container and the guest: a mount may
# carry only the propagation its rule gives it (an emptyDir mount's `mountPropagation` as
# containerd turns it into an option: rshared for Bidirectional, rslave for
# HostToContainer; what Contrast's genpolicy admits), and no other mount any. The cgroup
# file system takes only the options containerd gives it (and the kernel's cgroup2
# defaults a node may add).
propagation_options := {"shared", "rshared", "slave", "rslave"}

cgroup_options := {"nosuid", "noexec", "nodev", "relatime", "ro", "rw", "nsdelegate", "memory_recursiveprot"}

propagation_allowed(r, o) if not o in propagation_options

propagation_allowed(r, o) if o == object.get(r, "propagation", "")

mount_options_ok(r, m) if {
	mount_type(m) != "cgroup"
	every o in as_array(object.get(m, "options", [])) {
		propagation_allowed(r, o)
	}
}

mount_options_ok(r, m) if {
	mount_type(m) == "cgroup"
	every o in as_array(object.get(m, "options", [])) {
		o in cgroup_options
	}
}

mount_matches(r, m) if {
	not block_mount(r)
	m.destination == r.destination
	mount_type(m) == r.type
	mount_options_ok(r, m)
	regex.match(expand(r.source), as_string(m.source))
	readonly_ok(r.read_only, mount_read_only(m))
}

# An emptyDir on an encrypted block device (the runtime's block-encrypted mode): the
# options exactly, and the source is the guest mount point of one of the request's block
# storages (which `storages` checks), as genpolicy's allow_mount decides it.
block_mount(r) if count(object.get(r, "block_options", [])) > 0

mount_matches(r, m) if {
	block_mount(r)
	m.destination == r.destination
	mount_type(m) == r.type
	as_array(object.get(m, "options", [])) == r.block_options
	some s in storages
	s.driver in {"blk", "scsi"}
	s.mount_point == as_string(m.source)
}

# Each block-device mount once: genpolicy pairs every mount with a rule of its own.
mount_once(r, mounts) if not block_mount(r)

mount_once(r, mounts) if count([m | some m in mounts; m.destination == r.destination]) <= 1

mount_present(r, mounts) if {
	not r.required
}

mount_present(r, mounts) if {
	some m in mounts
	mount_matches(r, m)
}

mounts_ok(rules) := true if {
	mounts := as_array(object.get(oci, "Mounts", []))
	# One mount per destination; an exact repeat is harmless (containerd 1.6 gives the
	# pause container /dev/shm twice, its default tmpfs and the sandbox's, which the
	# runtime turns into the same bind of the guest's shm).
	count({d | some m in mounts; d := m.destination}) == count({m | some m in mounts})
	every m in mounts {
		some r in rules
		mount_matches(r, m)
	}
	every r in rules {
		mount_present(r, mounts)
		mount_once(r, mounts)
	}
} else := false

# Storages other than the image: only the emptyDir volumes the container uses.
storage_allowed(rules, s) if {
	s.driver == "image_guest_pull"
}

storage_allowed(rules, s) if {
	some r in rules
	not r.block
	s.driver == r.driver
	s.source == r.source
	s.fstype == r.fstype
	regex.match(expand(r.mount_point), as_string(s.mount_point))
}

# An emptyDir's block device (the runtime's block-encrypted mode, as genpolicy's
# allow_block_storage decides it): at an address of the platform's kind, mounted where its
# address says, formatted anew under an ephemeral key with the file system, options and
# group the pod gives it, and kept for the sandbox (shared).
storage_allowed(rules, s) if {
	some r in rules
	r.block
	s.driver == r.driver
	block_address_ok(s.driver, as_string(s.source))
	s.mount_point == concat("/", [r.block.mount_point_dir, base64url.encode(s.source)])
	s.fstype == r.fstype
	as_array(object.get(s, "driver_options", [])) == r.block.driver_options
	as_array(object.get(s, "options", [])) == r.block.options
	object.get(s, "shared", false) == true
	fs_group_ok(r.block.fs_group, object.get(s, "fs_group", null))
}

block_address_ok("scsi", address) if regex.match(`^[0-9]+:[0-9]+$`, address)

block_address_ok("blk", address) if regex.match(`^[0-9a-f]{2}(/[0-9a-f]{2})?$`, address)

fs_group_ok(expected, actual) if {
	expected == null
	actual == null
}

# The agent's request decoding fills an absent change policy with 0 (always).
fs_group_ok(expected, actual) if {
	expected != null
	actual.group_id == expected.group_id
	object.get(actual, "group_change_policy", 0) == expected.group_change_policy
}

storages_ok(rules) := true if {
	every s in storages {
		storage_allowed(rules, s)
	}
} else := false

resources := as_object(object.get(linux, "Resources", {}))

# The block devices of the pod's volumeDevices, by their paths in the container: as agent
# devices and in the OCI device list, and no device cgroup rule (the runtime clears it).
# The agent finds a virtio-scsi disk by its SCSI address and a virtio-blk one by its PCI
# path (kata_agent.go appendBlockDevice; the agent ignores the vm_path sent for them);
# the types whose guest node the host names (mmioblk, nvdimm: any existing node, a
# decrypted volume's mapper device included) and VFIO are refused.
agent_device_ok(d, allowed) if {
	d.container_path in allowed
	d.type_ in policy_data.pod.device_types
	d.type_ == "scsi"
	regex.match(`^[0-9]+:[0-9]+$`, as_string(d.id))
}

agent_device_ok(d, allowed) if {
	d.container_path in allowed
	d.type_ in policy_data.pod.device_types
	d.type_ == "blk"
	regex.match(`^[0-9a-f]{2}(/[0-9a-f]{2})*$`, as_string(d.id))
}

devices_ok(allowed) := true if {
	every d in as_array(object.get(request, "devices", [])) {
		vfio_or_agent_device(as_object(d), allowed)
	}
	every d in as_array(object.get(linux, "Devices", [])) {
		as_object(d).Path in allowed
	}
	count(as_array(object.get(resources, "Devices", []))) == 0
} else := false

# VFIO devices are the `gpus` check's.
vfio_or_agent_device(d, _) if startswith(as_string(object.get(d, "container_path", "")), vfio_prefix)

vfio_or_agent_device(d, allowed) if agent_device_ok(d, allowed)

# GPUs, on a GPU platform, for a container whose limits ask for them: the runtime names
# each attached GPU in a CDI annotation `cdi.k8s.io/vfio<n>: nvidia.com/gpu=<index>`, and
# either passes each as a VFIO device /dev/vfio/devices/vfio<n> (hot plug: the same numbers
# as the annotations, each once) or passes none (cold plug: they are in the VM from its
# start). The PCI address options are the host's; the device type is the guest kernel's
# (vfio-pci-gk). As genpolicy's rules decide it (allow_vfio_devices).
vfio_prefix := "/dev/vfio/devices/vfio"

vfio_devices := [as_object(d) |
	some d in as_array(object.get(request, "devices", []))
	startswith(as_string(object.get(as_object(d), "container_path", "")), vfio_prefix)
]

vfio_numbers := [trim_prefix(as_string(d.container_path), vfio_prefix) | some d in vfio_devices]

cdi_vfio_numbers := [trim_prefix(key, "cdi.k8s.io/vfio") |
	some key, _ in as_object(object.get(oci, "Annotations", {}))
	regex.match(`^cdi\.k8s\.io/vfio[0-9]+$`, key)
]

vfio_device_ok(d) if {
	number := trim_prefix(as_string(d.container_path), vfio_prefix)
	regex.match(`^[0-9]+$`, number)
	object.get(d, "id", "") == concat("", ["vfio", number])
	object.get(d, "type_", "") == "vfio-pci-gk"
	object.get(d, "vm_path", "") == ""
	options := as_array(object.get(d, "options", []))
	count(options) > 0
	every o in options {
		regex.match(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]=[0-9a-fA-F]{2}/[0-9a-fA-F]{2}$`, as_string(o))
	}
}

# Cold plug, or no GPUs.
gpu_plug_ok(_) if count(vfio_devices) == 0

gpu_plug_ok(c) if {
	count(vfio_devices) == c.gpus
	{n | some n in vfio_numbers} == {n | some n in cdi_vfio_numbers}
}

gpus_ok(c) := true if {
	every d in vfio_devices {
		vfio_device_ok(d)
	}
	count({n | some n in vfio_numbers}) == count(vfio_numbers)
	count(cdi_vfio_numbers) == c.gpus
	gpu_plug_ok(c)
} else := false

# The runtime turns guest seccomp off (disable_guest_seccomp): a profile would be the
# host's.
seccomp_ok := true if {
	is_null(object.get(linux, "Seccomp", null))
} else := false

# Guest SELinux is off (disable_guest_selinux) and the guest loads no AppArmor profile but
# the name containerd gives by default.
security_labels_ok(p) := true if {
	object.get(p, "SelinuxLabel", "") == ""
	object.get(linux, "MountLabel", "") == ""
	object.get(p, "ApparmorProfile", "") in {"", "cri-containerd.apparmor.d"}
} else := false

# No user namespace mappings and no user name: the user is the numeric one checked.
id_mappings_ok := true if {
	count(as_array(object.get(linux, "UIDMappings", []))) == 0
	count(as_array(object.get(linux, "GIDMappings", []))) == 0
	object.get(as_object(object.get(process, "User", {})), "Username", "") == ""
} else := false

# Resource limits only constrain the container's own processes, except RLIMIT_CORE: a
# raised one lets an allowed SignalProcess dump the process's memory into its working
# directory, which may be a volume the host reads.
rlimit_ok(r) if as_object(r).Type != "RLIMIT_CORE"

rlimit_ok(r) if {
	as_object(r).Type == "RLIMIT_CORE"
	object.get(r, "Hard", 0) == 0
	object.get(r, "Soft", 0) == 0
}

rlimits_ok(p) := true if {
	every r in as_array(object.get(p, "Rlimits", [])) {
		rlimit_ok(r)
	}
} else := false

# The container's cgroup, inside the VM: a cgroupfs path or systemd's slice:prefix:name
# (the agent turns ':' into '/'), with no "." or ".." component that would put it outside
# the cgroup file system.
cgroup_component := `[A-Za-z0-9_@][A-Za-z0-9_.@-]*`

cgroups_path_ok := true if {
	path := as_string(object.get(linux, "CgroupsPath", ""))
	cgroups_path_shape(path)
} else := false

cgroups_path_shape(path) if path == ""

cgroups_path_shape(path) if regex.match(concat("", ["^(/", cgroup_component, ")+$"]), path)

cgroups_path_shape(path) if regex.match(concat("", ["^", cgroup_component, ":", cgroup_component, ":", cgroup_component, "$"]), path)

# Root propagation lets mounts flow between the container and the guest: none, or what
# containerd sets for the container's mounts (rshared with a Bidirectional one, else
# rslave with a HostToContainer one).
rootfs_propagation_ok(rules) := true if {
	object.get(linux, "RootfsPropagation", "") == ""
} else := true if {
	object.get(linux, "RootfsPropagation", "") == expected_rootfs_propagation(rules)
} else := false

expected_rootfs_propagation(rules) := "rshared" if {
	some r in rules
	object.get(r, "propagation", "") == "rshared"
} else := "rslave" if {
	some r in rules
	object.get(r, "propagation", "") == "rslave"
} else := ""

# Resource controls the runtime clears (the VM is the limit).
resources_ok := true if {
	is_null(object.get(resources, "BlockIO", null))
	is_null(object.get(resources, "Network", null))
	is_null(object.get(resources, "Pids", null))
	is_null(object.get(linux, "IntelRdt", null))
} else := false

# Request fields the runtime never sets: another container's files (shared_mounts), a
# user by name, other operating systems' sections.
request_fields_ok := true if {
	count(as_array(object.get(request, "shared_mounts", []))) == 0
	is_null(object.get(request, "string_user", null))
	is_null(object.get(oci, "Solaris", null))
	is_null(object.get(oci, "Windows", null))
} else := false

# OCI hooks would run programs of the host's choosing in the guest.
hooks_ok := true if {
	every _, hooks in as_object(object.get(oci, "Hooks", {})) {
		count(as_array(hooks)) == 0
	}
} else := false

# The runtime drops the cgroup, network, time and pid namespaces and empties the paths
# of the others: a container gets its own IPC, UTS and mount namespace and joins no
# existing one (the agent puts it in the sandbox's network and, if shared, PID namespace).
namespace_list := [as_object(ns) | some ns in as_array(object.get(linux, "Namespaces", []))]

namespace_types := [t | some ns in namespace_list; t := as_string(object.get(ns, "Type", "")); not t in {"network", "cgroup"}]

namespace_path_ok(ns) if ns.Type == "network"

namespace_path_ok(ns) if object.get(ns, "Path", "") == ""

namespaces_ok(expected) := true if {
	count(namespace_types) == count(expected)
	{t | some t in namespace_types} == {t | some t in expected}
	every ns in namespace_list {
		namespace_path_ok(ns)
	}
} else := false

# At most one network namespace, the same for every container of the sandbox.
network_namespaces := [as_string(object.get(ns, "Path", "")) | some ns in namespace_list; ns.Type == "network"]

network_namespace := "" if {
	count(network_namespaces) == 0
} else := network_namespaces[0] if {
	count(network_namespaces) == 1
}

network_namespace_ok := true if {
	state_matches("network_namespace", network_namespace)
} else := false

sysctls_ok := true if {
	every name, value in as_object(object.get(linux, "Sysctl", {})) {
		policy_data.pod.sysctls[name] == value
	}
} else := false

# What an unprivileged container must not see of the guest kernel.
default_masked_paths := [
	"/proc/acpi",
	"/proc/asound",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/firmware",
]

default_readonly_paths := [
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
]

masked_paths_ok(c) := true if {
	not c.require_masked_paths
} else := true if {
	masked := as_array(object.get(linux, "MaskedPaths", []))
	readonly := as_array(object.get(linux, "ReadonlyPaths", []))
	every path in default_masked_paths {
		path in masked
	}
	every path in default_readonly_paths {
		path in readonly
	}
} else := false

# Containers share the sandbox's PID namespace only if the pod says so.
pid_namespace_ok := true if {
	policy_data.pod.share_process_namespace
} else := true if {
	object.get(request, "sandbox_pidns", false) == false
} else := false

# Annotations: those containerd writes (io.kubernetes.cri.*), the two the Kata runtime
# adds, the sandbox's network namespace path (pause only) and the termination message
# settings (containers only); no other key, so nothing the agent or a guest component
# might act on (CDI devices, Kata settings) reaches the guest unless the policy names it.
kata_container_type := "pod_sandbox" if {
	annotation("io.kubernetes.cri.container-type") == "sandbox"
} else := "pod_container"

annotation_allowed(key, _, _) if startswith(key, "io.kubernetes.cri.")

annotation_allowed(key, _, _) if key == "io.katacontainers.pkg.oci.bundle_path"

annotation_allowed("io.katacontainers.pkg.oci.container_type", value, _) if value == kata_container_type

annotation_allowed("nerdctl/network-namespace", value, true) if regex.match(`^/var/run/netns/[-A-Za-z0-9_.]+$`, value)

annotation_allowed("io.kubernetes.container.terminationMessagePath", value, false) if startswith(value, "/")

annotation_allowed("io.kubernetes.container.terminationMessagePolicy", value, false) if value in {"File", "FallbackToLogsOnError"}

# A GPU's CDI annotation, for a container that has GPUs (the `gpus` check counts them).
annotation_allowed(key, value, "gpus") if {
	regex.match(`^cdi\.k8s\.io/vfio[0-9]+$`, key)
	regex.match(`^nvidia\.com/gpu=[0-9]+$`, value)
}

# `kind`: true for the pause container, false for others, "gpus" for one with GPUs (whose
# annotations are a container's and its GPUs').
annotations_ok(kind) := true if {
	every key, value in as_object(object.get(oci, "Annotations", {})) {
		annotation_allowed_for(key, value, kind)
	}
} else := false

annotation_allowed_for(key, value, kind) if annotation_allowed(key, value, kind)

annotation_allowed_for(key, value, "gpus") if annotation_allowed(key, value, false)

container_annotation_kind(c) := "gpus" if c.gpus > 0

else := false

# ---------------------------------------------------------------------------------------
# State. The agent keeps `data.pstate` across the sandbox's requests and applies the JSON
# Patch `ops` of an allowing `{allowed, ops}` answer. The first CreateContainer records the
# sandbox's ID, name and network namespace, which every later one must repeat; each
# CreateContainer records which of the policy's containers its ID is (the pause: ""), so
# that an exec runs only what that container's probes and hooks run.

pstate := as_object(object.get(data, "pstate", {}))

has_key(o, k) if {
	_ = o[k]
}

state_matches(key, value) if not has_key(pstate, key)

state_matches(key, value) if pstate[key] == value

state_op(key, value) := [] if {
	has_key(pstate, key)
} else := [{"op": "add", "path": concat("/", ["", "pstate", key]), "value": value}]

containers_state := as_object(object.get(pstate, "containers", {}))

# An ID names one container: created again, it must be the same one.
container_id_ok(record) := true if {
	not has_key(containers_state, container_id)
} else := true if {
	containers_state[container_id] == record
} else := false

container_ops(record) := [] if {
	has_key(containers_state, container_id)
} else := [{"op": "add", "path": "/pstate/containers", "value": {container_id: record}}] if {
	not has_key(pstate, "containers")
} else := [{"op": "add", "path": concat("/", ["", "pstate", "containers", container_id]), "value": record}]

# The sandbox: the one whose pause container came first.
sandbox_state_ok := true if {
	state_matches("sandbox_id", sandbox_id)
	state_matches("sandbox_name", annotation("io.kubernetes.cri.sandbox-name"))
	state_matches("namespace", annotation("io.kubernetes.cri.sandbox-namespace"))
} else := false

# ---------------------------------------------------------------------------------------
# CreateContainerRequest

container_checks(c) := {
	"annotations": annotations_ok(container_annotation_kind(c)),
	"args": args_ok(c.args, process),
	"capabilities": capabilities_ok(c, process),
	"cgroups_path": cgroups_path_ok,
	"container_id": container_id_ok(c.name),
	"cwd": cwd_ok(c, process),
	"devices": devices_ok(c.devices),
	"gpus": gpus_ok(c),
	"env": env_ok(c, process),
	"hooks": hooks_ok,
	"id_mappings": id_mappings_ok,
	"ids": ids_ok,
	"image": image_ok(c),
	"masked_paths": masked_paths_ok(c),
	"mounts": mounts_ok(c.mounts),
	"namespaces": namespaces_ok(["ipc", "uts", "mount"]),
	"network_namespace": network_namespace_ok,
	"no_new_privileges": no_new_privileges_ok(c, process),
	"pid_namespace": pid_namespace_ok,
	"request_fields": request_fields_ok,
	"resources": resources_ok,
	"rlimits": rlimits_ok(process),
	"root": root_ok(c.read_only_root),
	"rootfs_propagation": rootfs_propagation_ok(c.mounts),
	"sandbox": sandbox_ok,
	"sandbox_state": sandbox_state_ok,
	"seccomp": seccomp_ok,
	"security_labels": security_labels_ok(process),
	"storages": storages_ok(c.storages),
	"sysctls": sysctls_ok,
	"user": user_ok(c, process),
}

# The pause container runs the pause bundle of the (measured) guest image, never an
# image the host names: the agent takes that bundle when the guest-pull metadata says
# "sandbox", which is therefore required.
pause_image_ok := true if {
	container_id == sandbox_id
	count(guest_pulls) == 1
	s := guest_pulls[0]
	s.mount_point == root_path
	guest_pull_type(s) == "sandbox"
} else := false

pause_env_ok := true if {
	every e in as_array(object.get(process, "Env", [])) {
		e in policy_data.pause.env
	}
} else := false

pause_storages_ok := true if {
	every s in storages {
		s.driver == "image_guest_pull"
	}
} else := false

pause_checks := {
	"annotations": annotations_ok(true),
	"args": args_ok(policy_data.pause.args, process),
	"cgroups_path": cgroups_path_ok,
	"container_id": container_id_ok(""),
	"devices": devices_ok([]),
	"env": pause_env_ok,
	"hooks": hooks_ok,
	"id_mappings": id_mappings_ok,
	"ids": ids_ok,
	"image": pause_image_ok,
	"mounts": mounts_ok(policy_data.pause.mounts),
	"namespaces": namespaces_ok(policy_data.pause.namespaces),
	"network_namespace": network_namespace_ok,
	"request_fields": request_fields_ok,
	"resources": resources_ok,
	"rlimits": rlimits_ok(process),
	"root": root_ok(false),
	"rootfs_propagation": rootfs_propagation_ok(policy_data.pause.mounts),
	"sandbox": sandbox_ok,
	"sandbox_state": sandbox_state_ok,
	"seccomp": seccomp_ok,
	"security_labels": security_labels_ok(process),
	"storages": pause_storages_ok,
	"sysctls": sysctls_ok,
	"user": user_ok(policy_data.pause, process),
}

create_container_target := {"what": "the pause container", "record": "", "checks": pause_checks} if {
	annotation("io.kubernetes.cri.container-type") == "sandbox"
} else := {"what": concat("", ["container ", c.name]), "record": c.name, "checks": container_checks(c)} if {
	annotation("io.kubernetes.cri.container-type") == "container"
	some c in policy_data.containers
	c.name == annotation("io.kubernetes.cri.container-name")
}

create_container_allowed if {
	target := create_container_target
	every _, ok in target.checks {
		ok == true
	}
}

create_container_ops := array.concat(
	array.concat(
		array.concat(state_op("sandbox_id", sandbox_id), state_op("sandbox_name", annotation("io.kubernetes.cri.sandbox-name"))),
		state_op("namespace", annotation("io.kubernetes.cri.sandbox-namespace")),
	),
	array.concat(state_op("network_namespace", network_namespace), container_ops(create_container_target.record)),
)

CreateContainerRequest := {"allowed": true, "ops": create_container_ops} if {
	create_container_allowed
}

CreateContainerRequest := false if {
	not create_container_allowed
	print(create_container_denial)
}

create_container_denial := concat("", [
	"CreateContainerRequest for ", target.what, " fails these checks: ",
	concat(", ", failed),
]) if {
	target := create_container_target
	failed := [name | some name, ok in target.checks; ok != true]
} else := concat("", [
	"CreateContainerRequest: this pod's policy has no container named \"",
	annotation("io.kubernetes.cri.container-name"), "\" (container type \"",
	annotation("io.kubernetes.cri.container-type"), "\")",
])

# ---------------------------------------------------------------------------------------
# ExecProcessRequest: only the commands of the pod's exec probes and exec lifecycle
# handlers, with the process of the container that declares them.

exec_process := as_object(object.get(request, "process", {}))

# The container the exec targets: the one its ID was created as.
exec_container := c if {
	some c in policy_data.containers
	c.name == containers_state[as_string(object.get(request, "container_id", ""))]
}

# Each check of an exec against the container it targets.
exec_checks(c) := {
	"args": exec_args_ok(c),
	"capabilities": exec_capabilities_ok(c, exec_process),
	"cwd": cwd_ok(c, exec_process),
	"env": env_ok(c, exec_process),
	"no_new_privileges": object.get(exec_process, "NoNewPrivileges", false) == false,
	"rlimits": count(as_array(object.get(exec_process, "Rlimits", []))) == 0,
	"security_labels": exec_labels_ok,
	"string_user": is_null(object.get(request, "string_user", null)),
	"terminal": exec_terminal_ok(c, exec_process),
	"user": user_ok(c, exec_process),
}

# One of the container's exec probe or lifecycle-hook commands, exactly.
exec_args_ok(c) := true if {
	some command in c.exec
	args_ok(command, exec_process) == true
} else := false

exec_labels_ok := true if {
	object.get(exec_process, "SelinuxLabel", "") == ""
	object.get(exec_process, "ApparmorProfile", "") == ""
} else := false

exec_allowed if {
	c := exec_container
	every _, ok in exec_checks(c) {
		ok == true
	}
}

exec_terminal_ok(c, p) := true if {
	object.get(p, "Terminal", false) == false
} else := true if {
	c.terminal == true
} else := false

# The runtime's exec process names no capabilities (kata_agent.go cmdToKataProcess), and
# the agent then gives it the container's own, checked at CreateContainer; an exec that
# names any is not the runtime's (genpolicy refuses it too). NoNewPrivileges is not sent
# either and the agent does not inherit it, so an exec cannot be held to it: what an exec
# runs is held to the pod's probe and hook commands instead (docs/runtime.md §8). An exec
# that sets it is not the runtime's either, nor one with a terminal in a container without
# one (probes and hooks run through ExecSync, without a terminal); genpolicy refuses both.
exec_capabilities_ok(c, p) := true if {
	is_null(object.get(p, "Capabilities", null))
} else := false

ExecProcessRequest if {
	exec_allowed
}

ExecProcessRequest := false if {
	not exec_allowed
	print(exec_denial)
}

exec_denial := concat("", [
	"ExecProcessRequest for container ", c.name, " (", concat(" ", as_array(object.get(exec_process, "Args", []))),
	") fails these checks: ", concat(", ", [name | some name, ok in exec_checks(c); ok != true]),
]) if {
	c := exec_container
} else := concat("", [
	"ExecProcessRequest: ", as_string(object.get(request, "container_id", "")),
	" was not created in this sandbox as one of the policy's containers; fails these checks: container",
])

# ---------------------------------------------------------------------------------------
# CopyFileRequest: the runtime copies the files it would otherwise share (/etc/hosts,
# /etc/hostname, /etc/resolv.conf, the termination log, ConfigMap, Secret, projected
# and downward API volumes) to <shared_dir>/<container id>-<16 characters>-<name>, and
# below. The agent hands the policy the path, the file type it read from the mode
# (`Regular`, `Directory`, `Symlink`, `Unknown`) and a symlink's target. Nothing else: no
# "." or ".." component, no device, FIFO or socket, and symlinks only below the top
# entry (a ConfigMap volume's `..data` links), pointing down into it: a relative target
# without "..".

copy_file_pattern := `^/run/kata-containers/shared/containers/[a-z0-9]{64}-[a-z0-9]{16}-[^/]+(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))*$`

copy_file_path := as_string(object.get(request, "path", ""))

copy_file_type := as_string(object.get(request, "file_type", ""))

copy_file_target := as_string(object.get(request, "symlink_target", ""))

# A path component that leaves the directory it is in.
dot_component(component) if component == "."

dot_component(component) if component == ".."

copy_file_checks := {
	"path": regex.match(copy_file_pattern, copy_file_path),
	"file_type": copy_file_type in {"Regular", "Directory", "Symlink"},
	"symlink": copy_symlink_ok,
}

copy_symlink_ok := true if {
	copy_file_type != "Symlink"
} else := true if {
	# Below the top entry: a further component after <container id>-<16>-<name>.
	regex.match(`^/run/kata-containers/shared/containers/[^/]+/.+$`, copy_file_path)
	copy_file_target != ""
	not startswith(copy_file_target, "/")
	every component in split(copy_file_target, "/") {
		not dot_component(component)
	}
} else := false

copy_file_failed := [name | some name, ok in copy_file_checks; ok != true]

# Allowed only when each check is there and true: a check left undefined must not pass.
copy_file_allowed if {
	copy_file_checks.path == true
	copy_file_checks.file_type == true
	copy_file_checks.symlink == true
}

CopyFileRequest if copy_file_allowed

CopyFileRequest := false if {
	not copy_file_allowed
	print("CopyFileRequest (only files, directories and links to below themselves, under", concat("", [shared_dir, "/<container id>-<16 characters>-<name>):"]), copy_file_path, "fails these checks:", concat(", ", copy_file_failed))
}

# ---------------------------------------------------------------------------------------
# CreateSandboxRequest: no kernel modules, no guest hooks but the guest image's own on the
# GPU platforms (policy_data.pod.guest_hook_path), only the sandbox's shared
# memory as storage, and no PID namespace of the sandbox's (the runtime never asks for
# one here: containers of a pod that shares it say so in CreateContainer).

sandbox_storage_ok(s) if {
	s.driver == "ephemeral"
	s.source == "shm"
	s.fstype == "tmpfs"
	s.mount_point == "/run/kata-containers/sandbox/shm"
}

sandbox_first := true if {
	not has_key(pstate, "sandbox_created")
} else := false

sandbox_storages_ok := true if {
	every s in as_array(object.get(request, "storages", [])) {
		sandbox_storage_ok(s)
	}
} else := false

create_sandbox_checks := {
	"guest_hooks": as_string(object.get(request, "guest_hook_path", "")) == policy_data.pod.guest_hook_path,
	"kernel_modules": count(as_array(object.get(request, "kernel_modules", []))) == 0,
	"once": sandbox_first,
	"pid_namespace": object.get(request, "sandbox_pidns", false) == false,
	"storages": sandbox_storages_ok,
}

create_sandbox_allowed if {
	create_sandbox_checks.guest_hooks == true
	create_sandbox_checks.kernel_modules == true
	create_sandbox_checks.once == true
	create_sandbox_checks.pid_namespace == true
	create_sandbox_checks.storages == true
}

# Once per sandbox: the agent's handler starts by clearing /run/kata-containers, where
# the running containers' roots and copied files are.
CreateSandboxRequest := {"allowed": true, "ops": [{"op": "add", "path": "/pstate/sandbox_created", "value": true}]} if create_sandbox_allowed

CreateSandboxRequest := false if {
	not create_sandbox_allowed
	print("CreateSandboxRequest fails these checks:", concat(", ", [name | some name, ok in create_sandbox_checks; ok != true]))
}

# ---------------------------------------------------------------------------------------
# Networking: the host sets up the pod's network (it is untrusted either way), but it
# must not touch the loopback interface, loopback addresses or routes, where the
# service mesh proxy and the application talk in plain text.

loopback_address(a) if regex.match(`^127\.`, a)

# ::1 in every spelling (leading zeros, :: or not), and IPv4-mapped 127/8.
loopback_address(a) if regex.match(`^(?:0{0,4}:){1,7}0{0,3}1(/[0-9]+)?$`, a)

loopback_address(a) if regex.match(`^(?:0{0,4}:){1,5}[fF]{4}:127\.`, a)

# The agent finds the interface by its MAC and parses it loosely (0:0:0:0:0:0 is lo's
# too): six two-digit groups, not all zero.
hw_address_ok(a) if {
	regex.match(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`, a)
	not regex.match(`^00(:00){5}$`, a)
}

# The interface may not be lo nor get a loopback address; IFF_NOARP (128) is the only
# flag the host may set.
interface := as_object(object.get(request, "interface", {}))

update_interface_checks := {
	"addresses": interface_addresses_ok,
	"hw_address": interface_hw_address_ok,
	"name": object.get(interface, "name", "") != "lo",
	"raw_flags": bits.and(object.get(interface, "raw_flags", 0), bits.negate(128)) == 0,
}

interface_hw_address_ok := true if {
	hw_address_ok(as_string(object.get(interface, "hwAddr", "")))
} else := false

interface_addresses_ok := true if {
	every a in as_array(object.get(interface, "IPAddresses", [])) {
		not loopback_address(as_string(object.get(a, "address", "")))
	}
} else := false

UpdateInterfaceRequest if {
	every _, ok in update_interface_checks {
		ok == true
	}
}

UpdateInterfaceRequest := false if {
	failed := [name | some name, ok in update_interface_checks; ok != true]
	count(failed) > 0
	print("UpdateInterfaceRequest fails these checks:", concat(", ", failed))
}

# No route through lo, to or from a loopback address.
routes := as_array(object.get(as_object(object.get(request, "routes", {})), "Routes", []))

update_routes_checks := {
	"dest": routes_without_loopback("dest"),
	"device": routes_without_loopback_device,
	"source": routes_without_loopback("source"),
}

routes_without_loopback(field) := true if {
	every r in routes {
		not loopback_address(as_string(object.get(r, field, "")))
	}
} else := false

routes_without_loopback_device := true if {
	every r in routes {
		object.get(r, "device", "") != "lo"
	}
} else := false

UpdateRoutesRequest if {
	every _, ok in update_routes_checks {
		ok == true
	}
}

UpdateRoutesRequest := false if {
	failed := [name | some name, ok in update_routes_checks; ok != true]
	count(failed) > 0
	print("UpdateRoutesRequest fails these checks:", concat(", ", failed))
}

# A static neighbour entry: reachable (2) or permanent (128), flags at most NTF_PROXY (8)
# and NTF_ROUTER (128), never for loopback.
neighbors := as_array(object.get(as_object(object.get(request, "neighbors", {})), "ARPNeighbors", []))

neighbor_address(n) := as_object(object.get(n, "toIPAddress", {}))

add_arp_neighbors_checks := {
	"address": neighbors_every(`address`),
	"device": neighbors_every(`device`),
	"flags": neighbors_every(`flags`),
	"state": neighbors_every(`state`),
}

neighbor_ok("address", n) if {
	object.get(neighbor_address(n), "mask", "") == ""
	not loopback_address(as_string(object.get(neighbor_address(n), "address", "")))
}

neighbor_ok("device", n) if object.get(n, "device", "") != "lo"

neighbor_ok("flags", n) if bits.or(object.get(n, "flags", 0), 136) == 136

neighbor_ok("state", n) if object.get(n, "state", 0) in {2, 128}

neighbors_every(field) := true if {
	every n in neighbors {
		neighbor_ok(field, n)
	}
} else := false

AddARPNeighborsRequest if {
	every _, ok in add_arp_neighbors_checks {
		ok == true
	}
}

AddARPNeighborsRequest := false if {
	failed := [name | some name, ok in add_arp_neighbors_checks; ok != true]
	count(failed) > 0
	print("AddARPNeighborsRequest fails these checks:", concat(", ", failed))
}

# ---------------------------------------------------------------------------------------
# RemoveContainerRequest: allowed (the host may stop what it started); the container's ID
# is forgotten, so no exec can reach it afterwards.

removed_id := as_string(object.get(request, "container_id", ""))

RemoveContainerRequest := {"allowed": true, "ops": [{"op": "remove", "path": concat("/", ["", "pstate", "containers", removed_id])}]} if {
	has_key(containers_state, removed_id)
}
