//! Process limits that decide what a node can hold: open files and locked memory.
//!
//! Read once at start-up. The soft open-file limit is raised to the hard one (as most servers do);
//! the connection cap is derived from it with a reserve for everything that is not a client socket,
//! so the node answers 1013 before the kernel answers EMFILE.

use std::io;

/// File descriptors kept back from clients: listeners, io_uring rings and eventfds per shard, the admin
/// server and its clients, logs, the Redis link later.
pub fn fd_reserve(shards: usize) -> u64 {
    64 + 16 * shards as u64
}

/// The limits this process runs under.
#[derive(Clone, Copy, Debug)]
pub struct ProcessLimits {
    /// Soft RLIMIT_NOFILE after raising it (what the process may actually open).
    pub nofile: u64,
    /// Hard RLIMIT_NOFILE.
    pub nofile_hard: u64,
    /// RLIMIT_MEMLOCK in bytes; `None` when unlimited.
    pub memlock: Option<u64>,
}

impl ProcessLimits {
    /// Reads the limits, raising the soft open-file limit to the hard one.
    pub fn read_and_raise() -> io::Result<Self> {
        let mut nofile = getrlimit(libc::RLIMIT_NOFILE)?;
        if nofile.rlim_cur < nofile.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: nofile.rlim_max,
                rlim_max: nofile.rlim_max,
            };
            // SAFETY: setrlimit reads a valid rlimit struct we own.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                nofile = raised;
            }
        }
        let memlock = getrlimit(libc::RLIMIT_MEMLOCK)?;
        Ok(ProcessLimits {
            nofile: nofile.rlim_cur,
            nofile_hard: nofile.rlim_max,
            memlock: (memlock.rlim_cur != libc::RLIM_INFINITY).then_some(memlock.rlim_cur),
        })
    }

    /// Client connections the open-file limit allows for a node of `shards` shards.
    pub fn connection_capacity(&self, shards: usize) -> usize {
        self.nofile.saturating_sub(fd_reserve(shards)) as usize
    }
}

/// getrlimit for `resource`.
pub(crate) fn getrlimit(resource: libc::__rlimit_resource_t) -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_leaves_the_reserve() {
        let l = ProcessLimits {
            nofile: 20_000,
            nofile_hard: 20_000,
            memlock: Some(8 << 20),
        };
        assert_eq!(l.connection_capacity(2), 20_000 - 96);
        let tiny = ProcessLimits {
            nofile: 50,
            nofile_hard: 50,
            memlock: None,
        };
        assert_eq!(tiny.connection_capacity(2), 0);
        let read = ProcessLimits::read_and_raise().unwrap();
        assert!(read.nofile > 0 && read.nofile <= read.nofile_hard);
    }
}
