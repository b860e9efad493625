//! Crash points for tests: when one is armed, the code at that point stops as if the process died there.
//!
//! Only a build with the `testing` feature can arm one; in any other build [`Hooks::fire`] is a constant `false`.

/// Where a test can make vkhook stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The setup runner stops right after the server was added or edited at VK.
    SetupAfterServer,
    /// A bot worker stops right after VK accepted a reply, before recording it.
    BotAfterSend,
    /// The receiver refuses the next event with 503, as if the store were down.
    ReceiverFailNextEvent,
}

#[derive(Default)]
pub struct Hooks {
    #[cfg(feature = "testing")]
    any: std::sync::atomic::AtomicBool,
    #[cfg(feature = "testing")]
    armed: std::sync::Mutex<Vec<CrashPoint>>,
}

impl Hooks {
    #[cfg(feature = "testing")]
    pub fn arm(&self, point: CrashPoint) {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).push(point);
        self.any.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True once for each time `point` was armed. Costs one atomic load when nothing is armed.
    #[cfg(feature = "testing")]
    pub fn fire(&self, point: CrashPoint) -> bool {
        if !self.any.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match armed.iter().position(|p| *p == point) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }

    /// Never fires: this build cannot arm crash points.
    #[cfg(not(feature = "testing"))]
    #[inline(always)]
    pub fn fire(&self, _point: CrashPoint) -> bool {
        false
    }
}
