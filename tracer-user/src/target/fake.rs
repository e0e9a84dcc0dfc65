//! [`FakeProcess`]: a made-up [`TargetProcess`] for unit tests, so the code that reads the
//! target runs without root and without a process: threads with names, system-call
//! states, context-switch counts and real-time priorities; memory regions, each with its
//! line in the maps; an executable.
//!
//! Regions must not overlap; a read runs to the end of the region it starts in (a
//! neighbouring region is not read on), as a read that runs into unmapped memory does.

use std::{collections::BTreeMap, io, path::PathBuf};

use super::{Executable, MapEntry, ProcError, SyscallState, TargetProcess};

/// One thread of a [`FakeProcess`].
#[derive(Clone, Debug)]
pub(crate) struct FakeThread {
    pub name: String,
    pub syscall: SyscallState,
    pub switches: u64,
    /// The voluntary ones among them.
    pub voluntary_switches: u64,
    pub realtime: Option<u32>,
    /// Its TID in the process's own PID namespace, when that differs from its host TID.
    pub ns_tid: Option<u32>,
}

impl FakeThread {
    /// A thread on a CPU.
    pub(crate) fn running(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            syscall: SyscallState::Running,
            switches: 1,
            voluntary_switches: 1,
            realtime: None,
            ns_tid: None,
        }
    }

    /// The thread, known inside the process's PID namespace as `ns_tid`.
    pub(crate) fn in_namespace(self, ns_tid: u32) -> Self {
        Self {
            ns_tid: Some(ns_tid),
            ..self
        }
    }

    /// A thread asleep in system call `nr` with these arguments, its user stack at `sp`.
    pub(crate) fn in_syscall(name: &str, nr: i64, args: [u64; 6], sp: u64, pc: u64) -> Self {
        Self {
            syscall: SyscallState::InSyscall { nr, args, sp, pc },
            ..Self::running(name)
        }
    }
}

/// A made-up process (see the module notes).
#[derive(Clone, Debug)]
pub(crate) struct FakeProcess {
    pid: u32,
    alive: bool,
    threads: BTreeMap<u32, FakeThread>,
    /// Memory by start address.
    memory: BTreeMap<u64, Vec<u8>>,
    maps: Vec<MapEntry>,
    executable: Option<Executable>,
}

impl FakeProcess {
    /// A live process with no threads, no memory and no executable.
    pub(crate) fn new(pid: u32) -> Self {
        Self {
            pid,
            alive: true,
            threads: BTreeMap::new(),
            memory: BTreeMap::new(),
            maps: Vec::new(),
            executable: None,
        }
    }

    /// The process, exited: every read says it is gone.
    pub(crate) fn exited(mut self) -> Self {
        self.alive = false;
        self
    }

    /// Adds (or replaces) thread `tid`.
    pub(crate) fn thread(mut self, tid: u32, thread: FakeThread) -> Self {
        self.threads.insert(tid, thread);
        self
    }

    /// Maps `bytes` at `start` with permissions `perms` (`"rw-p"`, `"r-xp"`...) and the
    /// maps path `path`.
    pub(crate) fn region(
        mut self,
        start: u64,
        bytes: Vec<u8>,
        perms: &str,
        path: Option<&str>,
    ) -> Self {
        let perms = perms.as_bytes();
        self.maps.push(MapEntry {
            start,
            end: start + bytes.len() as u64,
            read: perms.first() == Some(&b'r'),
            write: perms.get(1) == Some(&b'w'),
            exec: perms.get(2) == Some(&b'x'),
            offset: 0,
            inode: 0,
            path: path.map(str::to_owned),
        });
        self.maps.sort_by_key(|m| m.start);
        self.memory.insert(start, bytes);
        self
    }

    /// Writes `bytes` at `addr`, inside a region mapped already.
    pub(crate) fn poke(mut self, addr: u64, bytes: &[u8]) -> Self {
        let (start, region) = self
            .memory
            .range_mut(..=addr)
            .next_back()
            .expect("poke inside a mapped region");
        let at = usize::try_from(addr - start).expect("small offset");
        region[at..at + bytes.len()].copy_from_slice(bytes);
        self
    }

    /// Sets its executable: `path` as its maps name it, and the file's contents.
    pub(crate) fn with_executable(mut self, path: &str, data: Vec<u8>) -> Self {
        self.executable = Some(Executable {
            open_path: PathBuf::from(path),
            path: Some(path.to_owned()),
            data: std::sync::Arc::new(data.into()),
        });
        self
    }

    fn live_thread(&self, tid: u32) -> Option<&FakeThread> {
        self.threads.get(&tid).filter(|_| self.alive)
    }

    fn gone(&self) -> ProcError {
        ProcError::NoSuchProcess { pid: self.pid }
    }
}

impl TargetProcess for FakeProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn is_alive(&self) -> bool {
        self.alive
    }

    fn thread_ids(&self) -> Result<Vec<u32>, ProcError> {
        if !self.alive {
            return Err(self.gone());
        }
        Ok(self.threads.keys().copied().collect())
    }

    fn namespace_tids(&self) -> Result<Vec<(u32, u32)>, ProcError> {
        if !self.alive {
            return Err(self.gone());
        }
        Ok(self
            .threads
            .iter()
            .map(|(&tid, t)| (tid, t.ns_tid.unwrap_or(tid)))
            .collect())
    }

    fn thread_name(&self, tid: u32) -> Option<String> {
        self.live_thread(tid).map(|t| t.name.clone())
    }

    fn syscall_state(&self, tid: u32) -> Option<SyscallState> {
        self.live_thread(tid).map(|t| t.syscall)
    }

    fn context_switches(&self, tid: u32) -> Option<u64> {
        self.live_thread(tid).map(|t| t.switches)
    }

    fn voluntary_switches(&self, tid: u32) -> Option<u64> {
        self.live_thread(tid).map(|t| t.voluntary_switches)
    }

    fn realtime_priority(&self, tid: u32) -> Option<u32> {
        self.live_thread(tid).and_then(|t| t.realtime)
    }

    fn maps(&self) -> Result<Vec<MapEntry>, ProcError> {
        if !self.alive {
            return Err(self.gone());
        }
        Ok(self.maps.clone())
    }

    fn executable(&self) -> Result<Executable, ProcError> {
        self.executable
            .clone()
            .ok_or_else(|| ProcError::Executable {
                path: PathBuf::from(format!("/proc/{}/exe", self.pid)),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }

    fn host_path(&self, path: &str) -> PathBuf {
        PathBuf::from("/").join(path.trim_start_matches('/'))
    }

    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, ProcError> {
        if !self.alive {
            return Err(self.gone());
        }
        let region = self
            .memory
            .range(..=addr)
            .next_back()
            .and_then(|(&start, bytes)| bytes.get(usize::try_from(addr - start).ok()?..))
            .filter(|rest| !rest.is_empty() || buf.is_empty());
        let Some(rest) = region else {
            return Err(ProcError::Memory {
                pid: self.pid,
                addr,
                len: buf.len(),
                source: io::Error::from_raw_os_error(libc::EFAULT),
            });
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the fake against reading like no process would: short at a region's end,
    /// failing outside any region and once exited.
    #[test]
    fn reads_stop_at_the_end_of_a_region() {
        let fake = FakeProcess::new(7)
            .region(0x1000, vec![0; 16], "rw-p", Some("[heap]"))
            .poke(0x1008, &0xdead_beef_u32.to_ne_bytes());
        assert_eq!(fake.read_u32(0x1008), Some(0xdead_beef));
        let mut buf = [0u8; 8];
        assert_eq!(fake.read_memory(0x100c, &mut buf).ok(), Some(4));
        assert_eq!(fake.read_u64(0x100c), None);
        assert!(matches!(
            fake.read_memory(0x2000, &mut buf),
            Err(ProcError::Memory { .. })
        ));
        assert_eq!(fake.maps().ok().map(|m| m.len()), Some(1));
        let gone = fake.exited();
        assert!(matches!(
            gone.read_memory(0x1008, &mut buf),
            Err(ProcError::NoSuchProcess { pid: 7 })
        ));
        assert!(gone.thread_ids().is_err());
    }

    /// Guards the fake's threads and executable, which the tests of the session and of
    /// the Go tracker stand on.
    #[test]
    fn threads_and_executable() {
        let fake = FakeProcess::new(7)
            .thread(
                8,
                FakeThread::in_syscall("w", 202, [1, 2, 3, 4, 5, 6], 0x10, 0x20),
            )
            .with_executable("/bin/prog", b"\x7fELF".to_vec());
        assert_eq!(fake.thread_ids().ok(), Some(vec![8]));
        assert_eq!(fake.thread_name(8).as_deref(), Some("w"));
        assert!(matches!(
            fake.syscall_state(8),
            Some(SyscallState::InSyscall {
                nr: 202,
                sp: 0x10,
                pc: 0x20,
                ..
            })
        ));
        assert_eq!(fake.thread_name(9), None);
        let exe = fake.executable().expect("an executable");
        assert_eq!(exe.path.as_deref(), Some("/bin/prog"));
        assert!(matches!(
            FakeProcess::new(7).executable(),
            Err(ProcError::Executable { .. })
        ));
    }

    /// Guards the default `realtime_threads` over per-thread priorities.
    #[test]
    fn realtime_threads_count_the_realtime_ones() {
        let fifo = |priority| FakeThread {
            realtime: Some(priority),
            ..FakeThread::running("rt")
        };
        let fake = FakeProcess::new(7)
            .thread(7, FakeThread::running("main"))
            .thread(8, fifo(5))
            .thread(9, fifo(40));
        let found = fake.realtime_threads();
        assert_eq!((found.count, found.max_priority), (2, 40));
    }
}
