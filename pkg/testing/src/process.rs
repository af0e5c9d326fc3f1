//! Child processes of the platform's binaries, stopped the way an orchestrator stops them.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Sends `signal` (`INT`, `TERM`) to `child` and waits up to `limit` for it to exit.
pub fn stop(child: &mut Child, signal: &str, limit: Duration) -> ExitStatus {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {}", child.id());
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not stop within {limit:?} of SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
