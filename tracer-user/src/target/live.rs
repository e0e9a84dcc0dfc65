//! [`LiveProcess`]: the [`TargetProcess`] of a real process, read through `/proc` and
//! `process_vm_readv(2)` (the parsing is in [`super::procfs`]). Needs ptrace rights over
//! the target for its memory and its threads' system calls; the rest is world-readable.

use std::{fs, os::unix::fs::MetadataExt, path::PathBuf, sync::Arc};

use super::{
    Executable, FileBytes, MapEntry, ProcError, SyscallState, TargetProcess, Untraceable, identity,
    procfs::{self, proc_dir},
};

/// A real process, by id. Holds nothing open: every call reads `/proc` afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveProcess {
    pid: u32,
}

impl LiveProcess {
    /// The process `pid` (which may not exist: every read then says it is gone).
    #[must_use]
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// Whether the process exists at all, zombies included.
    #[must_use]
    pub fn exists(&self) -> bool {
        procfs::process_exists(self.pid)
    }

    /// Why this id cannot be traced as a process (a thread that is not its process's
    /// leader, a kernel thread, a 32-bit program); `None` when it can, or when it does
    /// not exist.
    #[must_use]
    pub fn untraceable(&self) -> Option<Untraceable> {
        identity::untraceable(self.pid)
    }
}

impl TargetProcess for LiveProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn is_alive(&self) -> bool {
        procfs::process_alive(self.pid)
    }

    fn thread_ids(&self) -> Result<Vec<u32>, ProcError> {
        procfs::thread_ids(self.pid)
    }

    fn namespace_tids(&self) -> Result<Vec<(u32, u32)>, ProcError> {
        procfs::namespace_tids(self.pid)
    }

    fn thread_name(&self, tid: u32) -> Option<String> {
        procfs::thread_name(self.pid, tid)
    }

    fn syscall_state(&self, tid: u32) -> Option<SyscallState> {
        procfs::syscall_state(self.pid, tid)
    }

    fn context_switches(&self, tid: u32) -> Option<u64> {
        procfs::context_switches(self.pid, tid)
    }

    fn voluntary_switches(&self, tid: u32) -> Option<u64> {
        procfs::voluntary_switches(self.pid, tid)
    }

    fn realtime_priority(&self, tid: u32) -> Option<u32> {
        procfs::realtime_priority(self.pid, tid)
    }

    fn maps(&self) -> Result<Vec<MapEntry>, ProcError> {
        procfs::read_maps(self.pid)
    }

    fn executable(&self) -> Result<Executable, ProcError> {
        let open_path = proc_dir(self.pid).join("exe");
        let data = FileBytes::open(&open_path).map_err(|source| ProcError::Executable {
            path: open_path.clone(),
            source,
        })?;
        let path = fs::read_link(&open_path)
            .ok()
            .map(|path| path.to_string_lossy().into_owned());
        Ok(Executable {
            open_path,
            path,
            data: Arc::new(data),
        })
    }

    fn host_path(&self, path: &str) -> PathBuf {
        procfs::host_path(self.pid, path)
    }

    fn executable_identity(&self) -> Option<(u64, u64)> {
        let meta = fs::metadata(proc_dir(self.pid).join("exe")).ok()?;
        Some((meta.dev(), meta.ino()))
    }

    fn mapped_files_dir(&self) -> Option<PathBuf> {
        Some(procfs::map_files_dir(self.pid))
    }

    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, ProcError> {
        procfs::read_memory(self.pid, addr, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the typed reads against byte order and short reads: this process reads
    /// its own memory through the same path it reads a target's.
    #[test]
    fn typed_reads_of_own_memory() {
        let me = LiveProcess::new(std::process::id());
        let words: [u32; 3] = [0x1122_3344, 0xffff_fffe, 0x5566_7788];
        let at = words.as_ptr() as u64;
        assert_eq!(me.read_u32(at), Some(0x1122_3344));
        assert_eq!(me.read_i32(at + 4), Some(-2));
        assert_eq!(
            me.read_u64(at),
            Some(u64::from(words[0]) | u64::from(words[1]) << 32)
        );
        // Page 0 is never mapped.
        assert_eq!(me.read_u32(8), None);
        assert!(me.is_alive() && me.exists());
        assert!(me.thread_ids().is_ok_and(|t| t.contains(&me.pid())));
    }

    /// Guards the single read of the executable at attach: contents and the path the
    /// maps name it by come together.
    #[test]
    fn executable_is_read_with_its_path() {
        let me = LiveProcess::new(std::process::id());
        let exe = me.executable().expect("own executable");
        assert!(exe.data.starts_with(b"\x7fELF"));
        assert_eq!(exe.open_path, proc_dir(me.pid()).join("exe"));
        let maps = me.maps().expect("own maps");
        let path = exe.path.expect("the exe link");
        assert!(
            maps.iter()
                .any(|m| m.path.as_deref() == Some(path.as_str()))
        );
        let gone = LiveProcess::new(0x7fff_fff0);
        assert!(matches!(
            gone.executable(),
            Err(ProcError::Executable { .. })
        ));
        assert!(!gone.is_alive() && !gone.exists());
    }
}
