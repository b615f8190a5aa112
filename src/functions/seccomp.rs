//! The system-call filter every function instance runs under: a seccomp deny list in the spirit of Docker's default
//! profile, as a classic BPF program (the form `prctl(PR_SET_SECCOMP)` and bubblewrap's `--seccomp FD` take).
//!
//! It refuses (`EPERM`) what reaches other processes (`ptrace`, `process_vm_*`, `kcmp`, `pidfd_getfd`), what makes or
//! joins namespaces (`unshare`, `setns`, and `clone` with a namespace flag), mounts of every kind, and the kernel's
//! wider surface a function has no use for: `bpf`, `perf_event_open`, keyrings, kernel modules, `kexec`, `reboot`,
//! swap, the clocks, `open_by_handle_at`, `userfaultfd`. `clone3` and `io_uring` answer `ENOSYS` (their arguments
//! cannot be inspected, and `ENOSYS` makes the C libraries and libuv fall back to what can). A program built for
//! another architecture is killed, and on x86-64 the x32 call numbers are refused.

/// `seccomp_data` offsets: the call number, the architecture, the first argument (its low 32 bits).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// Classic BPF opcodes used here.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

/// Filter results.
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// x32 calls carry this bit in their number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The namespace flags of `clone` (`CLONE_NEWTIME` is `clone3`'s and `unshare`'s only).
const CLONE_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// Calls refused with `EPERM`.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_fanotify_init,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_userfaultfd,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
];

/// Calls answered `ENOSYS`, so that callers fall back to calls the filter can see.
const UNAVAILABLE: &[libc::c_long] =
    &[libc::SYS_clone3, libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Where a conditional jump goes when its test holds.
#[derive(Clone, Copy)]
enum Target {
    Deny,
    Unavailable,
    CheckClone,
}

/// The filter, as instructions.
pub fn program() -> Vec<Instruction> {
    // The checks, then the answers they jump to: the jumps are resolved once the checks' length is known.
    let mut checks: Vec<(Instruction, Option<Target>)> = Vec::new();
    let plain = |code, k| (Instruction { code, jt: 0, jf: 0, k }, None);
    let jump = |code, k, to| (Instruction { code, jt: 0, jf: 0, k }, Some(to));
    checks.push(plain(LD_W_ABS, ARCH));
    // Another architecture: skip the kill when it matches.
    checks.push((Instruction { code: JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH }, None));
    checks.push(plain(RET_K, RET_KILL_PROCESS));
    checks.push(plain(LD_W_ABS, NR));
    #[cfg(target_arch = "x86_64")]
    checks.push(jump(JGE_K, X32_SYSCALL_BIT, Target::Deny));
    for nr in DENIED {
        checks.push(jump(JEQ_K, *nr as u32, Target::Deny));
    }
    for nr in UNAVAILABLE {
        checks.push(jump(JEQ_K, *nr as u32, Target::Unavailable));
    }
    checks.push(jump(JEQ_K, libc::SYS_clone as u32, Target::CheckClone));
    checks.push(plain(RET_K, RET_ALLOW));

    let deny_at = checks.len();
    let unavailable_at = deny_at + 1;
    let clone_at = deny_at + 2;
    let mut out: Vec<Instruction> = checks
        .into_iter()
        .enumerate()
        .map(|(at, (mut instruction, target))| {
            if let Some(target) = target {
                let to = match target {
                    Target::Deny => deny_at,
                    Target::Unavailable => unavailable_at,
                    Target::CheckClone => clone_at,
                };
                instruction.jt = u8::try_from(to - at - 1).expect("the filter's jumps fit in a byte");
            }
            instruction
        })
        .collect();
    out.push(Instruction { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::EPERM as u32 });
    out.push(Instruction { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::ENOSYS as u32 });
    // `clone`: refused with a namespace flag, allowed otherwise.
    out.push(Instruction { code: LD_W_ABS, jt: 0, jf: 0, k: ARG0_LOW });
    out.push(Instruction { code: JSET_K, jt: 0, jf: 1, k: CLONE_NAMESPACES });
    out.push(Instruction { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::EPERM as u32 });
    out.push(Instruction { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    out
}

/// The filter in the kernel's binary layout (`struct sock_filter[]`, native byte order): what bubblewrap reads from
/// `--seccomp FD` and what the Python runtime hands to `prctl`.
pub fn program_bytes() -> Vec<u8> {
    program()
        .iter()
        .flat_map(|i| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.push(i.jt);
            bytes.push(i.jf);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests;
