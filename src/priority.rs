//! Scheduler priority of the calling thread: the ledger writer is favoured (every write waits
//! on it), a rules build is not (a hot reload takes only the cores the trades leave idle).

/// Sets the calling thread's nice value (Linux: per thread; elsewhere: not supported). Lowering
/// a priority (a higher value) always works; raising one needs CAP_SYS_NICE.
pub fn set_this_threads_nice(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; setpriority changes
        // only this thread's nice value.
        let done = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_thread_can_lower_its_own_priority() {
        std::thread::spawn(|| {
            super::set_this_threads_nice(10).unwrap();
            // SAFETY: plain integers in and out.
            let nice =
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            assert_eq!(nice, 10);
        })
        .join()
        .unwrap();
    }
}
