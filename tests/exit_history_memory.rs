//! The crash history's memory at its cap, measured with a counting
//! allocator: one program's history full (20 exits), each exit with its
//! 20 kept lines cut to the longest kept (512 bytes) and long reasons.
//! docs/benchmarks.md quotes the number this prints; the assertion keeps
//! it from growing unnoticed. Only the measuring thread's allocations are
//! counted (the test harness's own threads allocate meanwhile).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, SystemTime};

use kelpie::exit_history::{
    Decision, ExitHistory, ExitRecord, KeptLine, Oom, OomSource, EXITS_KEPT, LINES_KEPT,
    LINE_BYTES_KEPT,
};
use kelpie::output_stream::Stream;
use kelpie::state::{ExitKind, ExitStatus};

thread_local! {
    /// Bytes this thread allocated and has not freed yet. A const `Cell`
    /// needs no allocation and no destructor, so the allocator may use it.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(bytes: isize) {
    // Gone only while the thread is torn down, which is not measured.
    let _ = LIVE.try_with(|live| live.set(live.get() + bytes));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's layout contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest exit: every kept line as long as it can be (a 16 KiB line,
/// cut when kept) and long reasons.
fn full_exit(n: usize) -> ExitRecord {
    let long = "x".repeat(16 * 1024);
    ExitRecord {
        seq: 0,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(n as u64),
        instance: 0,
        pid: 1000 + n as i32,
        status: ExitStatus::Signal(9),
        kind: ExitKind::Signal,
        by_kelpie: true,
        kelpie_reason: Some("r".repeat(200)),
        ran: Duration::from_millis(200),
        decision: Decision::Failed {
            reason: "f".repeat(200),
        },
        oom: Some(Oom {
            source: OomSource::KernelLog,
            memcg: Some("/system.slice/kelpie.service/batch".into()),
        }),
        output: (0..LINES_KEPT)
            .map(|_| KeptLine::new(Stream::Stdout, &long))
            .collect(),
    }
}

/// A crash loop's exit: 80-byte lines, a restart, no reasons.
fn typical_exit(n: usize) -> ExitRecord {
    let mut exit = full_exit(n);
    exit.kelpie_reason = None;
    exit.oom = None;
    exit.decision = Decision::Restart {
        delay: Duration::from_secs(1),
    };
    exit.output = (0..LINES_KEPT)
        .map(|_| KeptLine::new(Stream::Stderr, &"y".repeat(80)))
        .collect();
    exit
}

/// Bytes a history holds after `2 × EXITS_KEPT` exits made by `make`:
/// the oldest are dropped as the newest come, and every temporary is
/// freed, so what is left allocated is what the ring holds.
fn held_after(make: fn(usize) -> ExitRecord) -> isize {
    let before = live();
    let mut history = ExitHistory::default();
    for n in 0..EXITS_KEPT * 2 {
        history.push(make(n));
    }
    let held = live() - before;
    assert_eq!(history.len(), EXITS_KEPT);
    drop(history);
    assert_eq!(live(), before, "everything freed");
    held
}

#[test]
fn a_full_history_stays_within_its_bound() {
    // A program that never exited pays for the empty ring only, inline.
    let before = live();
    let empty = ExitHistory::default();
    assert_eq!(live(), before, "an empty ring allocates");
    drop(empty);
    let full = held_after(full_exit);
    let typical = held_after(typical_exit);
    println!(
        "crash history at the cap ({EXITS_KEPT} exits x {LINES_KEPT} lines): \
         {full} bytes per program with every line {LINE_BYTES_KEPT} bytes, \
         {typical} bytes with 80-byte lines; {} bytes per record before its strings, \
         {} bytes inline for an empty one",
        std::mem::size_of::<ExitRecord>(),
        std::mem::size_of::<ExitHistory>()
    );
    assert!(
        full <= 240 * 1024,
        "the crash history grew past its documented bound: {full} bytes"
    );
}
