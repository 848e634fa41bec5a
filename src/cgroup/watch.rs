//! Waiting for cgroups to become empty without polling: the kernel raises
//! an inotify IN_MODIFY on a cgroup's `cgroup.events` whenever its
//! `populated` value changes. One inotify instance serves every cgroup
//! kelpie waits on (a shutdown of thousands of programs must not need an
//! instance each: `fs.inotify.max_user_instances` is often 128).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

use super::detect::populated;

/// Called once when the watched cgroup is empty.
pub type OnEmpty = Box<dyn FnOnce() + Send>;

struct Watched {
    events_file: PathBuf,
    waiting: Vec<OnEmpty>,
}

#[derive(Default)]
struct Watches {
    by_descriptor: HashMap<WatchDescriptor, Watched>,
}

pub struct EmptyWatcher {
    inotify: Arc<AsyncFd<InotifyFd>>,
    watches: Arc<Mutex<Watches>>,
}

/// `AsyncFd` wants `AsRawFd`, which nix's `Inotify` does not implement.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl EmptyWatcher {
    /// Needs a tokio runtime: the events are read on a task of it.
    pub fn start() -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the fd is owned by the `Inotify` moved into the AsyncFd:
        // it stays open, the same description, and `as_raw_fd` returns it,
        // for exactly as long as the AsyncFd lives.
        let registered = unsafe {
            AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE)
        };
        let inotify = Arc::new(registered.map_err(std::io::Error::from)?);
        let watches: Arc<Mutex<Watches>> = Arc::default();
        tokio::spawn(read_events(inotify.clone(), watches.clone()));
        Ok(Self { inotify, watches })
    }

    /// Calls `on_empty` once `dir` (a cgroup) holds no process, at once if
    /// it holds none now or cannot be watched (it is gone, or inotify is
    /// out of watches: better to finish a stop early than never).
    pub fn when_empty(&self, dir: &Path, on_empty: OnEmpty) {
        let events_file = dir.join("cgroup.events");
        let added = self
            .inotify
            .get_ref()
            .0
            .add_watch(&events_file, AddWatchFlags::IN_MODIFY);
        let descriptor = match added {
            Ok(descriptor) => descriptor,
            Err(err) => {
                tracing::debug!(cgroup = %dir.display(), error = %err, "cannot watch cgroup.events");
                on_empty();
                return;
            }
        };
        {
            let mut watches = lock(&self.watches);
            watches
                .by_descriptor
                .entry(descriptor)
                .or_insert_with(|| Watched {
                    events_file: events_file.clone(),
                    waiting: Vec::new(),
                })
                .waiting
                .push(on_empty);
        }
        // The cgroup may have emptied before the watch existed, and then no
        // event comes: look once now that one would.
        settle(&self.inotify, &self.watches, descriptor);
    }
}

fn lock(watches: &Mutex<Watches>) -> MutexGuard<'_, Watches> {
    watches.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fires the waiters of `descriptor` if its cgroup is empty (or gone).
fn settle(inotify: &AsyncFd<InotifyFd>, watches: &Mutex<Watches>, descriptor: WatchDescriptor) {
    let done = {
        let mut watches = lock(watches);
        let Some(watched) = watches.by_descriptor.get(&descriptor) else {
            return;
        };
        let busy = std::fs::read_to_string(&watched.events_file)
            .map(|text| populated(&text))
            .unwrap_or(false);
        if busy {
            return;
        }
        watches.by_descriptor.remove(&descriptor)
    };
    if let Some(watched) = done {
        // The watch of a removed directory is gone already; either way the
        // descriptor may be reused by the kernel from here on.
        let _ = inotify.get_ref().0.rm_watch(descriptor);
        for on_empty in watched.waiting {
            on_empty();
        }
    }
}

async fn read_events(inotify: Arc<AsyncFd<InotifyFd>>, watches: Arc<Mutex<Watches>>) {
    loop {
        let Ok(mut ready) = inotify.readable().await else {
            return;
        };
        match ready.get_inner().0.read_events() {
            Ok(events) => {
                let mut seen: Vec<WatchDescriptor> = events.iter().map(|e| e.wd).collect();
                seen.sort_unstable();
                seen.dedup();
                for descriptor in seen {
                    settle(&inotify, &watches, descriptor);
                }
            }
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(err) => {
                tracing::error!(event = "cgroup_watch_failed", error = %err, "cannot read cgroup events; stops wait for their deadline");
                return;
            }
        }
    }
}
