//! Ctrl-C during training. The first SIGINT asks the loop to stop after the
//! current step, write a checkpoint, the metrics and the plots, and exit
//! 130; a second one ends the process at once, as a user who presses Ctrl-C
//! twice expects.

use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Whether Ctrl-C was pressed since `install`.
pub fn requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Asks for a stop as SIGINT would (tests, and platforms without signals).
pub fn request() {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe calls here: an atomic, write(2) and _exit(2).
    if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
        let msg = b"\ninterrupted again: stopping now, without a checkpoint\n";
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(130);
        }
    }
    let msg =
        b"\ninterrupted: finishing this step and writing a checkpoint (Ctrl-C again to stop now)\n";
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

/// Installs the SIGINT handler for the rest of the process.
pub fn install() {
    SIGNALS.store(0, Ordering::SeqCst);
    #[cfg(unix)]
    unsafe {
        // SAFETY: the handler only touches an atomic and makes
        // async-signal-safe calls.
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}
