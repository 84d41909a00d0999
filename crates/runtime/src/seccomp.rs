//! The default seccomp profile of every task: Docker's default semantics, written here from
//! the list of system calls a container with Docker's default capabilities may make. Anything
//! not listed fails with EPERM; the list is what ordinary programs need (files, memory,
//! processes, signals, sockets, timers, IPC), and leaves out what reaches the kernel or the
//! host as a whole: mounts, namespaces, modules, kexec and reboot, keyrings, BPF and perf,
//! clocks, swap, accounting, quotas, io_uring, userfaultfd, file handles. One departure from
//! Docker: `mknod` of a block device is refused here too (Docker leaves that to the device
//! cgroup), so a task cannot even name the host's disks.
//!
//! The agent compiles it to BPF once ([`compile`], through libseccomp) and writes the
//! program into each sandbox; the shim's [`SeccompExecutor`] installs it right before the
//! task's program runs (after `no_new_privileges`, as libcontainer would), and again for
//! every exec. libcontainer is not given the profile: it would build the filter again in each
//! container's init, which runs under the task's CPU limit (0.1 CPU by default), and those
//! 10 to 25 ms of CPU time cost a whole CFS period of throttling at every start.

use std::io::{self, Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, Spec};
use serde_json::{json, Value};

/// `defaultErrnoRet`: EPERM, like Docker.
const EPERM: u32 = 1;
/// What `clone3` answers: ENOSYS, so that the C library falls back to `clone`, whose flags
/// a filter can read (`clone3` passes them in memory).
const ENOSYS: u32 = 38;

/// The namespace flags of `clone`: CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS,
/// CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET.
const CLONE_NAMESPACES: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The file type bits of a mode, and the types `mknod` may make (everything but S_IFBLK).
const S_IFMT: u64 = 0o170_000;
const MKNOD_TYPES: &[u64] = &[
    0,         // no type given: a regular file
    0o100_000, // S_IFREG
    0o020_000, // S_IFCHR (opening one is still up to the device rules)
    0o010_000, // S_IFIFO
    0o140_000, // S_IFSOCK
];

/// `personality` values Docker allows: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32 with
/// UNAME26, and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Allowed on every architecture. Names the running kernel or architecture lacks are skipped
/// by libseccomp (so the 32-bit names cover 32-bit programs on a 64-bit host).
const ALLOWED: &[&str] = &[
    // files and directories
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "cachestat",
    "fanotify_mark",
    "name_to_handle_at",
    // file events and multiplexing
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "pipe",
    "pipe2",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "_newselect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "ioctl",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioprio_get",
    "ioprio_set",
    // memory
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // processes, threads and credentials
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "get_thread_area",
    "gettid",
    "getuid",
    "getuid32",
    "prctl",
    "prlimit64",
    "rseq",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "ugetrlimit",
    "uname",
    "sysinfo",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "pidfd_open",
    "pidfd_send_signal",
    "process_mrelease",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    // futexes
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // signals
    "kill",
    "pause",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
    // time (reading it; setting clocks is not allowed)
    "alarm",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    // sockets
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (the task has its own IPC namespace)
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // randomness
    "getrandom",
];

/// Allowed only on some architectures (the profile is built for the one it runs on).
fn arch_allowed() -> &'static [&'static str] {
    if cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]
    } else {
        &[]
    }
}

/// The architectures a program on this host may be built for: the native one and the
/// compat ones the kernel runs (a filter without them would let 32-bit calls through).
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec!["SCMP_ARCH_NATIVE"]
    }
}

/// libcontainer reads a masked comparison as `(arg & valueTwo) == value` (libseccomp's
/// datum_a is the mask), the reverse of runc's reading; the tests load the profile and check
/// the result, so a change there shows.
fn masked_eq(index: u32, mask: u64, value: u64) -> Value {
    json!({"index": index, "value": value, "valueTwo": mask, "op": "SCMP_CMP_MASKED_EQ"})
}

/// The profile, as the `linux.seccomp` object of an OCI config.
pub fn default_profile() -> Value {
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    allowed.extend_from_slice(arch_allowed());
    // Docker's capability-gated calls, for the capabilities tasks have.
    allowed.push("chroot"); // CAP_SYS_CHROOT
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    // clone without a namespace flag (threads and processes, not namespaces).
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [masked_eq(0, CLONE_NAMESPACES, 0)],
    }));
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    for &ty in MKNOD_TYPES {
        syscalls.push(json!({"names": ["mknod"], "action": "SCMP_ACT_ALLOW", "args": [masked_eq(1, S_IFMT, ty)]}));
        syscalls.push(json!({"names": ["mknodat"], "action": "SCMP_ACT_ALLOW", "args": [masked_eq(2, S_IFMT, ty)]}));
    }
    for &p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

/// Why a profile could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("seccomp profile: {0}")]
    Unsupported(String),
    #[error("libseccomp: {0}")]
    Libseccomp(#[from] libseccomp::error::SeccompError),
    #[error("exporting the filter")]
    Export(#[source] io::Error),
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, CompileError> {
    match a {
        LinuxSeccompAction::ScmpActAllow => Ok(ScmpAction::Allow),
        LinuxSeccompAction::ScmpActErrno => Ok(ScmpAction::Errno(errno.unwrap_or(EPERM) as i32)),
        other => Err(CompileError::Unsupported(format!("action {other:?}"))),
    }
}

fn arch(a: Arch) -> Result<ScmpArch, CompileError> {
    Ok(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchArm => ScmpArch::Arm,
        other => return Err(CompileError::Unsupported(format!("architecture {other:?}"))),
    })
}

/// Compiles an OCI seccomp profile (the shapes [`default_profile`] uses) to a classic BPF
/// program, `struct sock_filter` entries as the kernel takes them, read as libcontainer 0.7
/// reads the profile: names this kernel's architecture lacks are skipped, a masked comparison
/// is `(arg & valueTwo) == value`. libseccomp's binary-tree layout is asked for: it costs
/// more to build (done once) and less on every system call.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, CompileError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default)?;
    for &a in profile.architectures().as_deref().unwrap_or_default() {
        ctx.add_arch(arch(a)?)?;
    }
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(CompileError::Unsupported("flags".into()));
    }
    ctx.set_ctl_nnp(false)?;
    ctx.set_ctl_optimize(2)?;
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        for a in rule.args().as_deref().unwrap_or_default() {
            let op = match a.op() {
                LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value_two().unwrap_or(0)),
                other => return Err(CompileError::Unsupported(format!("comparison {other:?}"))),
            };
            if cmps.iter().any(|c: &(u32, _)| c.0 == a.index() as u32) {
                return Err(CompileError::Unsupported("two comparisons of one argument".into()));
            }
            cmps.push((a.index() as u32, ScmpArgCompare::new(a.index() as u32, op, a.value())));
        }
        let cmps: Vec<ScmpArgCompare> = cmps.into_iter().map(|(_, c)| c).collect();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            ctx.add_rule_conditional(act, sc, &cmps)?;
        }
    }
    // SAFETY: memfd_create with a valid name; the descriptor is owned from here on.
    let fd = unsafe { libc::memfd_create(c"tepui-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(CompileError::Export(io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)?;
    let mut bpf = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bpf))
        .map_err(CompileError::Export)?;
    Ok(bpf)
}

/// The profile every task gets, compiled.
pub fn compile_default() -> Result<Vec<u8>, CompileError> {
    let profile: LinuxSeccomp =
        serde_json::from_value(default_profile()).map_err(|e| CompileError::Unsupported(e.to_string()))?;
    compile(&profile)
}

/// Installs a compiled filter on the calling thread, which must have `no_new_privs` set
/// (or CAP_SYS_ADMIN). It stays for the thread's life and every program it executes.
pub fn load(bpf: &[u8]) -> io::Result<()> {
    const SOCK_FILTER: usize = std::mem::size_of::<libc::sock_filter>();
    if bpf.is_empty() || !bpf.len().is_multiple_of(SOCK_FILTER) || bpf.len() / SOCK_FILTER > u16::MAX as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a BPF program"));
    }
    let prog = libc::sock_fprog {
        len: (bpf.len() / SOCK_FILTER) as u16,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(2) reads `prog` and the program it points to, both alive for the call;
    // the kernel checks the program itself.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// libcontainer's default executor, with the filter installed just before the program is
/// executed: the last step of the container's init (and of an exec's), after the
/// capabilities are dropped and `no_new_privileges` is set.
#[derive(Clone)]
pub struct SeccompExecutor {
    bpf: std::sync::Arc<[u8]>,
    inner: DefaultExecutor,
}

impl SeccompExecutor {
    pub fn new(bpf: Vec<u8>) -> SeccompExecutor {
        SeccompExecutor {
            bpf: bpf.into(),
            inner: DefaultExecutor {},
        }
    }
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        load(&self.bpf).map_err(|e| ExecutorError::Other(format!("installing the seccomp filter: {e}")))?;
        self.inner.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.inner.validate(spec)
    }

    fn setup_envs(&self, envs: std::collections::HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.inner.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_a_valid_oci_seccomp_object() {
        let p: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(default_profile()).unwrap();
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        let names: Vec<String> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect();
        for must in [
            "read", "write", "execve", "futex", "socket", "wait4", "pipe", "pipe2", "openat",
        ] {
            assert!(names.iter().any(|n| n == must), "{must} is allowed");
        }
        for never in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "reboot",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "open_by_handle_at",
            "pivot_root",
            "swapon",
            "settimeofday",
            "clock_settime",
            "acct",
            "io_uring_setup",
            "userfaultfd",
            "syslog",
            "sethostname",
        ] {
            assert!(!names.iter().any(|n| n == never), "{never} is not allowed");
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "no name twice");
    }

    #[test]
    fn the_compiled_filter_is_a_program_the_kernel_takes() {
        let bpf = compile_default().unwrap();
        let insns = bpf.len() / std::mem::size_of::<libc::sock_filter>();
        assert!(bpf.len().is_multiple_of(std::mem::size_of::<libc::sock_filter>()));
        // BPF_MAXINSNS: the kernel refuses longer filters.
        assert!((100..=4096).contains(&insns), "{insns} instructions");
        // Every architecture of the profile is checked (AUDIT_ARCH_* in the program).
        let words: Vec<u32> = bpf
            .chunks(8)
            .map(|c| u32::from_ne_bytes(c[4..8].try_into().unwrap()))
            .collect();
        if cfg!(target_arch = "x86_64") {
            for audit_arch in [0xc000_003e_u32, 0x4000_0003] {
                assert!(words.contains(&audit_arch), "{audit_arch:#x} is checked");
            }
        }
        assert!(load(&bpf[..bpf.len() - 1]).is_err(), "a torn program is refused");
    }

    /// Loads the profile in a process of its own (this test binary again, running only this
    /// test on its main thread; no root needed, no_new_privs is enough) and makes the calls
    /// the filter decides about.
    #[test]
    fn the_loaded_filter_refuses_namespaces_modules_mounts_and_block_devices() {
        const CHILD: &str = "TEPUI_SECCOMP_TEST_CHILD";
        let name = "seccomp::tests::the_loaded_filter_refuses_namespaces_modules_mounts_and_block_devices";
        if std::env::var_os(CHILD).is_some() {
            let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(default_profile()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let dir_c = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: raw system calls with valid arguments; this process ends right after.
            let code = unsafe { child_checks(&profile, &dir_c) };
            drop(dir);
            // SAFETY: ends this process at once, with the result as its code.
            unsafe { libc::_exit(code) };
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "check {:?} failed (see child_checks): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Returns 0, or the number of the first check that failed.
    unsafe fn child_checks(profile: &oci_spec::runtime::LinuxSeccomp, dir: &std::ffi::CStr) -> i32 {
        // SAFETY (whole function): raw system calls with valid arguments in a forked child.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return 100;
            }
            match compile(profile) {
                Ok(bpf) if load(&bpf).is_ok() => {}
                _ => return 101,
            }
            let errno = || *libc::__errno_location();
            // Allowed: plain calls, and clone without namespace flags (a child that exits).
            if libc::getpid() <= 0 {
                return 1;
            }
            let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if child == 0 {
                libc::_exit(0);
            }
            if child < 0 {
                return 2;
            }
            let mut st = 0;
            libc::waitpid(child as i32, &mut st, 0);
            // Refused with EPERM: a user namespace, by unshare and by clone.
            if libc::unshare(libc::CLONE_NEWUSER) != -1 || errno() != libc::EPERM {
                return 3;
            }
            let r = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
            );
            if r == 0 {
                libc::_exit(0);
            }
            if r != -1 || errno() != libc::EPERM {
                return 4;
            }
            // clone3 says ENOSYS, so C libraries fall back to clone.
            if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != libc::ENOSYS {
                return 5;
            }
            // Modules and mounts.
            if libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0) != -1 || errno() != libc::EPERM {
                return 6;
            }
            if libc::mount(c"none".as_ptr(), dir.as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) != -1
                || errno() != libc::EPERM
            {
                return 7;
            }
            // mknod: a fifo passes the filter (and is made), a block device does not.
            let dfd = libc::open(dir.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            if dfd < 0 {
                return 8;
            }
            if libc::mknodat(dfd, c"fifo".as_ptr(), libc::S_IFIFO | 0o600, 0) != 0 {
                return 9;
            }
            if libc::mknodat(dfd, c"disk".as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) != -1
                || errno() != libc::EPERM
            {
                return 10;
            }
            0
        }
    }
}
