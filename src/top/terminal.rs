//! The terminal while `kelpie top` runs: raw mode, the alternate screen
//! and a hidden cursor, and their undoing, which must happen however the
//! view ends. A normal quit drops the [`Screen`]; a panic runs the hook
//! installed here before the message is printed (so it lands on the
//! restored screen); SIGTERM and SIGHUP are caught by the loop in
//! `top.rs`, which then returns through the drop.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use ratatui::crossterm::{cursor, execute, terminal};

/// Whether the terminal is in the view's mode now (so restoring twice, by
/// the panic hook and by the drop, writes nothing the second time).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// The view's terminal mode, undone when dropped.
pub struct Screen(());

impl Screen {
    pub fn enter() -> io::Result<Self> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Self(());
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor and turns raw mode off;
/// errors are ignored (a terminal that hung up cannot be restored, and
/// there is nobody to tell).
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
    let _ = terminal::disable_raw_mode();
}
