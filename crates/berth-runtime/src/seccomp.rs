//! The default seccomp profile.
//!
//! Docker's profile is an allow-list of ~350 syscalls; ours is the
//! complement that matters: everything is allowed except the calls Docker
//! leaves out of its list for an unprivileged container (kernel modules,
//! kexec, reboot, clock setting, keyrings, bpf, perf, ptrace across
//! processes, mounting, namespace creation…). The effect on a workload is
//! the same (EPERM for the refused calls), and new harmless syscalls keep
//! working without a profile update. As in Docker, holding a capability
//! re-opens the calls that capability is about.

use serde_json::{json, Value};

const ALWAYS_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "create_module",
    "get_kernel_syms",
    "kcmp",
    "keyctl",
    "lookup_dcookie",
    "nfsservctl",
    "query_module",
    "request_key",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
    "_sysctl",
    "sysfs",
];

/// Calls re-allowed by a capability.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "umount",
            "umount2",
            "unshare",
            "lookup_dcookie",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_BOOT", &["kexec_load", "kexec_file_load"]),
    (
        "CAP_SYS_PTRACE",
        &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    ),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_adjtime",
            "adjtimex",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "move_pages"],
    ),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Namespace flags `clone` may not carry without CAP_SYS_ADMIN.
const CLONE_NS_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn architectures() -> Value {
    if cfg!(target_arch = "x86_64") {
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    } else if cfg!(target_arch = "aarch64") {
        json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    } else {
        json!([])
    }
}

/// The profile for a process holding `caps`.
pub fn default_profile(caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut denied: Vec<&str> = ALWAYS_DENIED.to_vec();
    for (cap, calls) in BY_CAPABILITY {
        if has(cap) {
            continue;
        }
        for call in *calls {
            let reopened = BY_CAPABILITY
                .iter()
                .any(|(c, cs)| has(c) && cs.contains(call));
            if !reopened && !denied.contains(call) {
                denied.push(call);
            }
        }
    }
    denied.sort_unstable();
    let mut syscalls = vec![json!({
        "names": denied,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": libc::EPERM,
    })];
    if !has("CAP_SYS_ADMIN") {
        for flag in CLONE_NS_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        // clone3 passes its flags in memory seccomp cannot read; ENOSYS
        // makes libc fall back to clone, which the rules above can check.
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": libc::ENOSYS,
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_reopen_their_calls() {
        let names = |p: &Value| -> Vec<String> {
            p["syscalls"][0]["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let plain = default_profile(&[]);
        assert!(names(&plain).contains(&"mount".to_string()));
        assert!(names(&plain).contains(&"ptrace".to_string()));
        let admin = default_profile(&["CAP_SYS_ADMIN".into()]);
        assert!(!names(&admin).contains(&"mount".to_string()));
        assert!(names(&admin).contains(&"ptrace".to_string()));
        // bpf is reopened by either CAP_SYS_ADMIN or CAP_BPF.
        let bpf = default_profile(&["CAP_BPF".into()]);
        assert!(!names(&bpf).contains(&"bpf".to_string()));
    }
}
