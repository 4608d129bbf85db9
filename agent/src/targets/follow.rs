//! The exec/exit event stream: tracefs, the tracepoints, and a task that
//! turns ring buffer records into [`ProcessChange`]s for the lifecycle.

use std::{ffi::CStr, path::Path};

use aya::maps::{MapData, RingBuf};
use pausewatch_common::{PROCESS_EXEC, PROCESS_EXIT, ProcessEvent};
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
    mpsc,
};

use thiserror::Error;
use tokio::{io::unix::AsyncFd, sync::watch};

/// Where the agent mounts tracefs when nobody has.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// [`TRACEFS`] for `mount(2)`.
const TRACEFS_C: &CStr = c"/sys/kernel/tracing";

/// Why following processes failed.
#[derive(Debug, Error)]
pub enum FollowError {
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracefs is not mounted and mounting it failed ({0}); as root run \
         `mount -t tracefs nodev /sys/kernel/tracing` (in a container: mount the host's \
         /sys/kernel/tracing), then start the agent again"
    )]
    Tracefs(#[source] std::io::Error),
    /// Polling the process event ring buffer failed.
    #[error("cannot poll the process event ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

/// What happened to a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessChange {
    /// `pid` runs a new program (a new process, or an exec in an old one).
    Exec {
        /// Process id.
        pid: u32,
        /// CLOCK_MONOTONIC nanoseconds of the exec.
        ktime_ns: u64,
        /// The command name the kernel gave the new program, read in the
        /// tracepoint, before the program could rename itself (`None` if
        /// it came empty).
        comm: Option<String>,
    },
    /// `pid` exited.
    Exit {
        /// Process id.
        pid: u32,
    },
}

/// Whether tracefs is mounted where aya looks for tracepoint ids.
pub fn tracefs_mounted() -> bool {
    Path::new(TRACEFS).join("events/sched").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events/sched").is_dir()
}

/// Makes sure tracefs is mounted, mounting it at [`TRACEFS`] if needed (as
/// root). Must run before the first tracepoint attach: aya looks the mount
/// point up once and remembers the answer.
pub fn ensure_tracefs() -> Result<(), FollowError> {
    if tracefs_mounted() {
        return Ok(());
    }
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            TRACEFS_C.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(FollowError::Tracefs(std::io::Error::last_os_error()));
    }
    log::info!("mounted tracefs at {TRACEFS}");
    Ok(())
}

/// How many changes may wait for the lifecycle thread; beyond that they are
/// dropped and counted (`reason="process_events_full"`), so that a host
/// that execs faster than the agent can inspect costs bounded memory.
pub const QUEUE: usize = 16384;

/// Reads the process event ring buffer until `stop` turns true, sending each
/// change to `tx` (dropped ones are counted in `dropped`). Exits early if
/// the receiver is gone.
pub async fn forward(
    ring: RingBuf<MapData>,
    tx: mpsc::SyncSender<ProcessChange>,
    dropped: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), FollowError> {
    // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for
    // as long as the AsyncFd owns the RingBuf.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| FollowError::Poll(std::io::Error::other(e.to_string())))?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(FollowError::Poll)?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    if let Some(change) = decode(&item) {
                        match tx.try_send(change) {
                            Ok(()) => {}
                            Err(mpsc::TrySendError::Full(_)) => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(mpsc::TrySendError::Disconnected(_)) => return Ok(()),
                        }
                    }
                }
                guard.clear_ready();
            }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

fn decode(item: &[u8]) -> Option<ProcessChange> {
    let e: ProcessEvent = crate::bpf::ring_record(item)?;
    match e.what {
        PROCESS_EXEC => Some(ProcessChange::Exec {
            pid: e.pid,
            ktime_ns: e.ktime_ns,
            comm: comm_text(&e.comm),
        }),
        PROCESS_EXIT => Some(ProcessChange::Exit { pid: e.pid }),
        _ => None,
    }
}

/// The text of a NUL-padded kernel command name (not always UTF-8: the
/// kernel copies file name bytes), `None` when empty.
fn comm_text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    (end > 0).then(|| String::from_utf8_lossy(&raw[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pausewatch_common::COMM_LEN;

    fn bytes_of(e: &ProcessEvent) -> Vec<u8> {
        // SAFETY: a plain-old-data struct viewed as bytes.
        unsafe {
            std::slice::from_raw_parts((e as *const ProcessEvent).cast::<u8>(), size_of_val(e))
        }
        .to_vec()
    }

    #[test]
    fn decodes_records() {
        let e = ProcessEvent {
            what: PROCESS_EXIT,
            pid: 77,
            ktime_ns: 5,
            comm: [0; COMM_LEN],
        };
        let bytes = bytes_of(&e);
        assert_eq!(decode(&bytes), Some(ProcessChange::Exit { pid: 77 }));
        assert_eq!(decode(&bytes[..4]), None);

        let mut comm = [0; COMM_LEN];
        comm[..4].copy_from_slice(b"node");
        let exec = ProcessEvent {
            what: PROCESS_EXEC,
            pid: 78,
            ktime_ns: 6,
            comm,
        };
        assert_eq!(
            decode(&bytes_of(&exec)),
            Some(ProcessChange::Exec {
                pid: 78,
                ktime_ns: 6,
                comm: Some("node".into())
            })
        );
    }

    #[test]
    fn the_mount_point_is_the_one_named() {
        assert_eq!(TRACEFS_C.to_str(), Ok(TRACEFS));
    }

    #[test]
    fn command_names_are_cut_at_the_nul() {
        assert_eq!(
            comm_text(b"my-long-service\0"),
            Some("my-long-service".into())
        );
        assert_eq!(comm_text(&[0; COMM_LEN]), None);
        assert_eq!(comm_text(b"a\xffb\0\0"), Some("a\u{fffd}b".into()));
    }
}
