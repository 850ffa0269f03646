//! TaskOOM events: one thread polls the OOM watches (libkeel's, v1 eventfd
//! or v2 memory.events) of every container of the shim, so that a pod of
//! twenty containers costs one thread, not twenty.

use crate::events::Events;
use containerd_shim::protos::events::task::TaskOOM;
use libkeel::cgroups::OomWatch;
use nix::fcntl::OFlag;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;

pub struct OomWatcher {
    tx: mpsc::Sender<(String, OomWatch)>,
    /// Written to when a watch is added, to wake the poll.
    wake: OwnedFd,
}

impl OomWatcher {
    pub fn start(events: Events) -> std::io::Result<OomWatcher> {
        let (tx, rx) = mpsc::channel();
        let (wake_r, wake_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(128 * 1024)
            .spawn(move || run(rx, wake_r, events))?;
        Ok(OomWatcher { tx, wake: wake_w })
    }

    /// Watches container `id` until its cgroup goes away.
    pub fn add(&self, id: String, watch: OomWatch) {
        if self.tx.send((id, watch)).is_ok() {
            let _ = nix::unistd::write(&self.wake, &[1]);
        }
    }
}

fn run(rx: mpsc::Receiver<(String, OomWatch)>, wake: OwnedFd, events: Events) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut watches: Vec<(String, OomWatch)> = Vec::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(w) => watches.push(w),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let woke = {
            let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                watches
                    .iter()
                    .map(|(_, w)| PollFd::new(w.as_fd(), PollFlags::POLLIN)),
            );
            // A removed v2 cgroup does not wake inotify: look every second.
            let timeout = if watches.is_empty() {
                PollTimeout::NONE
            } else {
                PollTimeout::from(1000u16)
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log::error!("poll OOM watches: {e}");
                    return;
                }
            }
            fds[0].revents().is_some_and(|r| !r.is_empty())
        };
        if woke {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(&wake, &mut buf), Ok(n) if n > 0) {}
        }
        watches.retain_mut(|(id, w)| match w.read() {
            Ok(Some(0)) => true,
            Ok(Some(_)) => {
                events.publish(TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                });
                true
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("OOM watch of {id}: {e}");
                false
            }
        });
    }
}
