//! Where routing's CPU work runs: a thread of its own at a lower CPU priority (nice +10 on Linux),
//! so that on a busy machine the scheduler serves intake first and routing takes what is left.
//! Intake's answer waits on a durable append only; routing can fall behind and catch up later
//! (`dingrelay_routing_lag_seconds` shows by how much), so this is the order that keeps senders'
//! latency low without losing anything.
//!
//! On a current-thread runtime (the only kind whose clock tests pause) the work runs inline
//! instead: waiting on another thread would let the paused clock jump while it renders.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// The routing thread. Cheap to keep; dropped with the router.
#[derive(Debug)]
pub struct Renderer {
    jobs: Option<mpsc::Sender<Job>>,
}

impl Renderer {
    /// Starts the thread (named `routing`). If it cannot be started, work runs inline.
    pub fn start() -> Renderer {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("routing".to_owned())
            .spawn(move || {
                lower_priority();
                while let Ok(job) = receiver.recv() {
                    job();
                }
            });
        match started {
            Ok(_) => Renderer { jobs: Some(jobs) },
            Err(error) => {
                tracing::warn!(
                    "Cannot start the routing thread; routing runs beside intake instead: {error}."
                );
                Renderer { jobs: None }
            }
        }
    }

    /// Runs `work` on the routing thread and returns its result; inline on a current-thread
    /// runtime, or once the thread is gone. `None` when the thread stopped in the middle of it
    /// (it panicked): nothing of the work's result exists, and later work runs inline.
    pub async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let Some(jobs) = self.jobs.as_ref().filter(|_| !current_thread) else {
            return Some(work());
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            // The thread is gone: the job comes back, and runs here.
            self.jobs = None;
            job();
        }
        match answer.await {
            Ok(result) => Some(result),
            Err(_) => {
                self.jobs = None;
                tracing::error!(
                    "The routing thread stopped in the middle of a batch; the batch stays waiting and is routed again beside intake."
                );
                None
            }
        }
    }
}

/// Nice +10 for the calling thread, on Linux (a per-thread value there).
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers and touch no memory of ours.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if result != 0 {
        tracing::debug!(
            "Cannot lower the routing thread's priority: {}.",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_on_the_niced_routing_thread() {
        let mut renderer = Renderer::start();
        let (name, nice) = renderer
            .run(|| {
                let name = std::thread::current().name().map(str::to_owned);
                #[cfg(target_os = "linux")]
                // SAFETY: as in `lower_priority`.
                let nice =
                    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
                #[cfg(not(target_os = "linux"))]
                let nice = 10;
                (name, nice)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("routing"));
        assert!(nice >= 10, "nice {nice}");
    }

    #[tokio::test]
    async fn on_a_current_thread_runtime_work_runs_inline() {
        let mut renderer = Renderer::start();
        let here = std::thread::current().id();
        assert_eq!(
            renderer.run(move || std::thread::current().id()).await,
            Some(here)
        );
    }
}
