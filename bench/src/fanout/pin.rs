//! CPU pinning for the cost comparison: the server on one core, the load
//! tool on the other, so neither's CPU seconds include the other's
//! contention and the server's runtime sizes itself to the one core it has.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The server's core and the load tool's.
pub const SERVER_CPU: usize = 0;
pub const LOAD_CPU: usize = 1;

/// Online CPUs of the machine (not of this process's affinity mask).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

fn set(tid: libc::pid_t, cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it;
    // sched_setaffinity reads `size_of` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Start `cmd`'s process on `cpu` alone: set between fork and exec, so its
/// runtime (Tokio's workers, Go's GOMAXPROCS) sees one CPU from the start.
pub fn on_exec(cmd: &mut Command, cpu: usize) {
    // SAFETY: the closure makes one async-signal-safe syscall and allocates nothing.
    unsafe {
        cmd.pre_exec(move || set(0, cpu));
    }
}

/// Move every thread of a running process to `cpu`; threads it starts
/// later inherit the mask of the thread that starts them.
pub fn process(pid: u32, cpu: usize) -> std::io::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = task?.file_name().to_string_lossy().parse::<libc::pid_t>().unwrap_or(0);
        if tid > 0 {
            set(tid, cpu)?;
        }
    }
    Ok(())
}

/// The CPUs a process may run on, e.g. `[1]`.
pub fn allowed(pid: u32) -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t filled in by the kernel, read with CPU_ISSET within its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(pid as libc::pid_t, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_started_pinned_runs_on_that_cpu_only() {
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        on_exec(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let allowed = allowed(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(allowed, vec![0]);
    }
}
