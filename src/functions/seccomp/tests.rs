use super::*;

/// Runs the filter over one call as the kernel would, returning its result.
fn run(arch: u32, nr: libc::c_long, arg0: u64) -> u32 {
    let program = program();
    let (mut pc, mut acc) = (0usize, 0u32);
    for _ in 0..program.len() {
        let i = program[pc];
        pc += 1;
        match i.code {
            LD_W_ABS => {
                acc = match i.k {
                    NR => nr as u32,
                    ARCH => arch,
                    ARG0_LOW => arg0 as u32,
                    other => panic!("load of offset {other}"),
                }
            }
            JEQ_K | JGE_K | JSET_K => {
                let holds = match i.code {
                    JEQ_K => acc == i.k,
                    JGE_K => acc >= i.k,
                    _ => acc & i.k != 0,
                };
                pc += usize::from(if holds { i.jt } else { i.jf });
            }
            RET_K => return i.k,
            other => panic!("opcode {other:#x}"),
        }
        assert!(pc < program.len(), "the program runs past its end");
    }
    panic!("the program does not return")
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | e as u32
}

#[test]
fn everyday_calls_are_allowed() {
    for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_openat, libc::SYS_mmap, libc::SYS_exit_group] {
        assert_eq!(run(AUDIT_ARCH, nr, 0), RET_ALLOW, "call {nr}");
    }
    // A thread, a plain fork.
    let thread =
        (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u64;
    assert_eq!(run(AUDIT_ARCH, libc::SYS_clone, thread), RET_ALLOW);
    assert_eq!(run(AUDIT_ARCH, libc::SYS_clone, libc::SIGCHLD as u64), RET_ALLOW);
}

#[test]
fn reaching_other_processes_and_namespaces_is_refused() {
    for nr in [libc::SYS_ptrace, libc::SYS_process_vm_readv, libc::SYS_unshare, libc::SYS_setns, libc::SYS_mount] {
        assert_eq!(run(AUDIT_ARCH, nr, 0), errno(libc::EPERM), "call {nr}");
    }
    for flag in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET, libc::CLONE_NEWPID] {
        let flags = (flag | libc::SIGCHLD) as u64;
        assert_eq!(run(AUDIT_ARCH, libc::SYS_clone, flags), errno(libc::EPERM), "clone flag {flag:#x}");
    }
}

#[test]
fn the_kernel_surface_is_refused() {
    for nr in [libc::SYS_bpf, libc::SYS_perf_event_open, libc::SYS_keyctl, libc::SYS_init_module, libc::SYS_reboot] {
        assert_eq!(run(AUDIT_ARCH, nr, 0), errno(libc::EPERM), "call {nr}");
    }
    assert_eq!(run(AUDIT_ARCH, libc::SYS_clock_settime, 0), errno(libc::EPERM));
}

#[test]
fn uninspectable_calls_fall_back() {
    for nr in [libc::SYS_clone3, libc::SYS_io_uring_setup] {
        assert_eq!(run(AUDIT_ARCH, nr, 0), errno(libc::ENOSYS), "call {nr}");
    }
}

#[test]
fn another_architecture_is_killed() {
    assert_eq!(run(0x4000_0003, libc::SYS_read, 0), RET_KILL_PROCESS);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_are_refused() {
    assert_eq!(run(AUDIT_ARCH, (X32_SYSCALL_BIT as libc::c_long) | libc::SYS_read, 0), errno(libc::EPERM));
}

#[test]
fn the_binary_form_is_eight_bytes_an_instruction() {
    let bytes = program_bytes();
    assert_eq!(bytes.len(), program().len() * 8);
    assert_eq!(&bytes[..2], &LD_W_ABS.to_ne_bytes());
}
