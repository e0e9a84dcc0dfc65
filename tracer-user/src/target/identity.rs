//! Whether a process id names a process the tracer can trace: checked before attaching,
//! so that an id that exists but is the wrong kind of thing is refused in one line
//! instead of giving an empty trace.
//!
//! Three kinds of id exist in `/proc` and are not traceable processes:
//! - a thread that is not its process's leader: `/proc/TID` exists for any thread (it is
//!   only left out of the directory listing), but the probes filter on the process id,
//!   so a trace of it would see nothing;
//! - a kernel thread (`--pid 2`): no user memory, no executable, no locks of a program;
//! - a 32-bit program: the probes read the target's stacks and lock words with the
//!   64-bit layouts.
//!
//! And a process the tracer may not read is refused too: another user's process, without
//! `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH`. Its probes would load, but the tracer could
//! read neither its memory nor which threads sit in which futex wait
//! (`/proc/PID/task/TID/syscall`, mode 0400, also needs ptrace rights), so the trace
//! would be empty and exit 0: a deadlock that formed before the attach would go unseen,
//! and one that formed after could not be confirmed.
//!
//! The parsing is pure and unit-tested on sample text; [`untraceable`] reads the files.

use std::{
    fs,
    io::{self, Read as _},
    path::PathBuf,
};

use super::procfs::proc_dir;

/// `PF_KTHREAD` of the kernel's `include/linux/sched.h`: the task is a kernel thread.
const PF_KTHREAD: u32 = 0x0020_0000;

/// Why an existing process id cannot be traced as a process.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untraceable {
    /// The id is a thread's, and not its process's (the thread group leader's).
    #[error("{tid} is a thread of process {pid}{}, not a process: give --pid {pid}", name_suffix(.name.as_deref()))]
    Thread {
        /// The id given.
        tid: u32,
        /// Its process (thread group) id.
        pid: u32,
        /// Its process's name, when it could be read.
        name: Option<String>,
    },
    /// The id is a kernel thread's.
    #[error("{pid} is a kernel thread{}, not a program: it has no locks to trace", name_suffix(.name.as_deref()))]
    KernelThread {
        /// The id given.
        pid: u32,
        /// The kernel thread's name, when it could be read.
        name: Option<String>,
    },
    /// The process runs a 32-bit executable.
    #[error("process {pid}{} runs a 32-bit program: only 64-bit programs can be traced", name_suffix(.name.as_deref()))]
    Bits32 {
        /// The id given.
        pid: u32,
        /// The process's name, when it could be read.
        name: Option<String>,
    },
    /// The tracer runs in a PID namespace of its own (a container) and the process in
    /// another one: the kernel's events name its threads with ids the tracer cannot map.
    #[error(
        "process {pid}{} is in another PID namespace than the tracer's: run the tracer in the host's PID namespace (hostPID) or in the target's (shareProcessNamespace)",
        name_suffix(.name.as_deref())
    )]
    OtherPidNamespace {
        /// The id given.
        pid: u32,
        /// The process's name, when it could be read.
        name: Option<String>,
    },
    /// The kernel refused to let the tracer read the process's `/proc` entries.
    #[error(
        "not privileged to read process {pid}{}: {}: {}: tracing another user's process needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
        name_suffix(.name.as_deref()),
        .denied.path.display(),
        io::Error::from_raw_os_error(.denied.errno)
    )]
    NoAccess {
        /// The id given.
        pid: u32,
        /// The process's name, when it could be read.
        name: Option<String>,
        /// What was refused.
        denied: Denied,
    },
}

/// A `/proc` file the kernel refused to let the tracer read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The file.
    pub path: PathBuf,
    /// `EACCES` (its mode, without `CAP_DAC_READ_SEARCH`) or `EPERM` (no ptrace rights).
    pub errno: i32,
}

/// ` (NAME)` after an id in a message, or nothing.
fn name_suffix(name: Option<&str>) -> String {
    name.map_or_else(String::new, |name| format!(" ({name})"))
}

/// The class of an ELF file, from its identification bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ElfClass {
    Bits32,
    Bits64,
}

/// The class of the ELF file that starts with `header`; `None` when it is not ELF (or
/// the class byte is invalid).
#[must_use]
pub(super) fn elf_class(header: &[u8]) -> Option<ElfClass> {
    // e_ident: the magic, then EI_CLASS (1: ELFCLASS32, 2: ELFCLASS64).
    match header {
        [0x7f, b'E', b'L', b'F', 1, ..] => Some(ElfClass::Bits32),
        [0x7f, b'E', b'L', b'F', 2, ..] => Some(ElfClass::Bits64),
        _ => None,
    }
}

/// The thread group (process) id of a `/proc/ID/status`.
#[must_use]
pub(super) fn parse_status_tgid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The flags (field 9) of a `/proc/ID/stat` line. The command name before them may hold
/// spaces and parentheses, so fields are counted from its closing `)`.
#[must_use]
pub(super) fn parse_stat_flags(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // The first field after the command name is field 3 (the state).
    after_comm.split_whitespace().nth(9 - 3)?.parse().ok()
}

/// What was read of an id: each part `None` when it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Identity {
    /// Its thread group id (`Tgid:` of `status`).
    pub tgid: Option<u32>,
    /// Its task flags (`stat` field 9).
    pub flags: Option<u32>,
    /// The class of its executable.
    pub class: Option<ElfClass>,
    /// The `/proc` file the kernel refused to let us read, if it refused.
    pub denied: Option<Denied>,
    /// Whether the tracer is in a PID namespace other than the host's and the process in
    /// another one than the tracer's.
    pub other_pid_namespace: bool,
}

/// Why `id` is not traceable, from what was read of it; `None` when nothing read says
/// so (what could not be read refuses nothing: the attach then says what is wrong).
/// `name_of` gives a process's name for the message.
#[must_use]
pub(super) fn judge(
    id: u32,
    identity: &Identity,
    name_of: impl Fn(u32) -> Option<String>,
) -> Option<Untraceable> {
    if let Some(pid) = identity.tgid.filter(|&tgid| tgid != id) {
        return Some(Untraceable::Thread {
            tid: id,
            pid,
            name: name_of(pid),
        });
    }
    if identity.flags.is_some_and(|flags| flags & PF_KTHREAD != 0) {
        return Some(Untraceable::KernelThread {
            pid: id,
            name: name_of(id),
        });
    }
    if identity.class == Some(ElfClass::Bits32) {
        return Some(Untraceable::Bits32 {
            pid: id,
            name: name_of(id),
        });
    }
    if identity.other_pid_namespace {
        return Some(Untraceable::OtherPidNamespace {
            pid: id,
            name: name_of(id),
        });
    }
    if let Some(denied) = &identity.denied {
        return Some(Untraceable::NoAccess {
            pid: id,
            name: name_of(id),
            denied: denied.clone(),
        });
    }
    None
}

/// Whether `err` is the kernel refusing access (rather than the file being gone).
fn is_denied(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// Reads `task/ID/syscall` of process `id`: the file the tracer needs the most rights
/// for (ptrace attach rights, and its mode 0400 lets only the owner read it). `Some` when
/// the kernel refused; `None` when it was read, or is gone (the attach says so).
fn syscall_file_denied(id: u32) -> Option<Denied> {
    let path = proc_dir(id).join(format!("task/{id}/syscall"));
    // The ptrace check is made at the read, the mode's at the open.
    let refused = match fs::File::open(&path) {
        Ok(mut file) => file.read_to_end(&mut Vec::new()).err(),
        Err(err) => Some(err),
    }?;
    is_denied(&refused).then(|| Denied {
        path,
        errno: refused.raw_os_error().unwrap_or(libc::EACCES),
    })
}

/// Why the process id `id` cannot be traced, read from `/proc/ID`; `None` when it can,
/// or when it does not exist (for the attach to say so).
#[must_use]
pub(super) fn untraceable(id: u32) -> Option<Untraceable> {
    let dir = proc_dir(id);
    let read = |file: &str| fs::read_to_string(dir.join(file)).ok();
    let class = fs::File::open(dir.join("exe")).ok().and_then(|mut exe| {
        let mut header = [0u8; 5];
        exe.read_exact(&mut header).ok()?;
        elf_class(&header)
    });
    let identity = Identity {
        tgid: read("status").as_deref().and_then(parse_status_tgid),
        flags: read("stat").as_deref().and_then(parse_stat_flags),
        class,
        denied: syscall_file_denied(id),
        other_pid_namespace: super::discovery::own_pid_namespace().is_some_and(|(_, own)| {
            super::discovery::pid_namespace_of(id).is_some_and(|theirs| theirs != own)
        }),
    };
    judge(id, &identity, |pid| {
        fs::read_to_string(proc_dir(pid).join("comm"))
            .ok()
            .map(|name| name.trim_end_matches('\n').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stat` line of `comm` with `flags` in field 9.
    fn stat_line(comm: &str, flags: u32) -> String {
        format!("42 ({comm}) S 0 0 0 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 5")
    }

    /// Guards the kernel-thread check against counting fields from the start of the
    /// line (a command name with spaces or a `)` would shift them).
    #[test]
    fn stat_flags_are_field_nine_after_the_command_name() {
        assert_eq!(
            parse_stat_flags(&stat_line("kthreadd", 0x0020_8040)),
            Some(0x0020_8040)
        );
        assert_eq!(parse_stat_flags(&stat_line("a b) S 7 7", 0x40)), Some(0x40));
        assert_eq!(parse_stat_flags("42 (short) S 0"), None);
        assert_eq!(parse_stat_flags(""), None);
    }

    #[test]
    fn tgid_is_read_from_its_own_line() {
        let status = "Name:\tworker_a\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1234\nNgid:\t0\nPid:\t1235\nPPid:\t1\n";
        assert_eq!(parse_status_tgid(status), Some(1234));
        assert_eq!(parse_status_tgid("Name:\tx\nPid:\t5\n"), None);
    }

    /// Guards the 32-bit check against reading the wrong byte or taking any file for ELF.
    #[test]
    fn elf_class_is_the_fifth_identification_byte() {
        assert_eq!(elf_class(b"\x7fELF\x01\x01\x01"), Some(ElfClass::Bits32));
        assert_eq!(elf_class(b"\x7fELF\x02\x01\x01"), Some(ElfClass::Bits64));
        assert_eq!(elf_class(b"\x7fELF\x00"), None);
        assert_eq!(elf_class(b"#!/bin/sh\n"), None);
        assert_eq!(elf_class(b"\x7fEL"), None);
        // This test's own executable (a 64-bit build).
        let own = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_class(&own), Some(ElfClass::Bits64));
    }

    /// Guards each refusal and its order: a thread is named with its process, a kernel
    /// thread and a 32-bit program are refused, and what could not be read refuses nothing.
    #[test]
    fn judge_refuses_threads_kernel_threads_and_32_bit_programs() {
        let name_of = |pid: u32| Some(format!("p{pid}"));
        let process = Identity {
            tgid: Some(1234),
            flags: Some(0x0040_0100),
            class: Some(ElfClass::Bits64),
            denied: None,
            other_pid_namespace: false,
        };
        assert_eq!(judge(1234, &process, name_of), None);
        assert_eq!(judge(1234, &Identity::default(), name_of), None);

        let thread = judge(1235, &process, name_of).unwrap();
        assert_eq!(
            thread,
            Untraceable::Thread {
                tid: 1235,
                pid: 1234,
                name: Some("p1234".into())
            }
        );
        assert_eq!(
            thread.to_string(),
            "1235 is a thread of process 1234 (p1234), not a process: give --pid 1234"
        );

        let kthread = Identity {
            tgid: Some(2),
            flags: Some(0x0020_8040),
            class: None,
            denied: None,
            other_pid_namespace: false,
        };
        let refused = judge(2, &kthread, |_| Some("kthreadd".into())).unwrap();
        assert!(matches!(refused, Untraceable::KernelThread { pid: 2, .. }));
        assert_eq!(
            refused.to_string(),
            "2 is a kernel thread (kthreadd), not a program: it has no locks to trace"
        );

        let bits32 = Identity {
            class: Some(ElfClass::Bits32),
            ..process.clone()
        };
        let refused = judge(1234, &bits32, |_| None).unwrap();
        assert_eq!(
            refused.to_string(),
            "process 1234 runs a 32-bit program: only 64-bit programs can be traced"
        );

        // A tracer in a container, and a process of another container.
        let elsewhere = Identity {
            other_pid_namespace: true,
            ..process.clone()
        };
        let refused = judge(1234, &elsewhere, |_| Some("app".into())).unwrap();
        assert!(
            refused
                .to_string()
                .starts_with("process 1234 (app) is in another PID namespace than the tracer's"),
            "{refused}"
        );
    }

    /// Guards against tracing a process whose `/proc` entries the kernel will not let us
    /// read (an empty trace and exit 0): it is refused, naming the file, the kernel's
    /// answer and the capabilities; a thread id is still sent to its process first.
    #[test]
    fn judge_refuses_a_process_it_may_not_read() {
        let denied = Identity {
            tgid: Some(1234),
            flags: Some(0x0040_0100),
            class: None,
            denied: Some(Denied {
                path: PathBuf::from("/proc/1234/task/1234/syscall"),
                errno: libc::EACCES,
            }),
            other_pid_namespace: false,
        };
        let refused = judge(1234, &denied, |_| Some("app".into())).unwrap();
        assert_eq!(
            refused.to_string(),
            format!(
                "not privileged to read process 1234 (app): /proc/1234/task/1234/syscall: {}: \
                 tracing another user's process needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
                io::Error::from_raw_os_error(libc::EACCES)
            )
        );
        assert!(matches!(
            judge(1235, &denied, |_| None),
            Some(Untraceable::Thread { pid: 1234, .. })
        ));
    }

    /// Guards the refusal against counting a file that is gone (or any error but the
    /// kernel's refusal) as a refusal: the attach reports a vanished process itself.
    #[test]
    fn only_a_refusal_is_denied() {
        assert!(is_denied(&io::Error::from_raw_os_error(libc::EACCES)));
        assert!(is_denied(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_denied(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(!is_denied(&io::Error::from_raw_os_error(libc::ESRCH)));
        assert_eq!(syscall_file_denied(0x7fff_fff0), None);
    }

    /// Guards the reader against refusing an ordinary process: this test's own (a
    /// 64-bit leader, not a kernel thread), and a missing id (left to the attach).
    #[test]
    fn own_process_is_traceable() {
        assert_eq!(untraceable(std::process::id()), None);
        assert_eq!(untraceable(0x7fff_fff0), None);
    }
}
