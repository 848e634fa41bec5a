//! `kelpie top`: a live terminal view of every program and instance
//! (docs/cli.md, "kelpie top").
//!
//! - `model`: a sample of the supervisor → rows, the CPU share, the order
//! - `table`: the columns for a width, the cells, `--once`'s plain lines
//! - `app`: the live view's state and what each key does (pure)
//! - `ui`: drawing it with ratatui
//! - `source`: the control API requests (status, usage, actions, logs)
//! - `terminal`: raw mode and the alternate screen, restored on every exit
//!
//! This file runs it: `--once` takes two samples an interval apart and
//! prints one frame; the live view is one loop over keys, refresh ticks,
//! replies and signals, with every request in a task of its own so a slow
//! action never freezes the screen.

use std::io::IsTerminal;
use std::time::Duration;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::cli::{ControlOpts, TopSort};
use crate::control::protocol::{ActionReply, LogEvent};
use crate::control_client::connection::{ApiError, Client};
use crate::control_client::socket_path;

mod app;
mod model;
mod source;
mod table;
mod terminal;
mod ui;

use app::{App, Effect};
use model::{CpuMeter, Sample};
use source::Source;

/// Exit status of `kelpie top` without a terminal and without `--once`.
const EXIT_USAGE: i32 = 2;

pub fn run(once: bool, sort: TopSort, interval: Duration, control: &ControlOpts) -> i32 {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !once && !interactive {
        eprintln!(
            "kelpie: top needs a terminal on stdin and stdout; use `kelpie top --once` for one plain-text frame"
        );
        return EXIT_USAGE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kelpie: cannot start the async runtime: {err}");
            return 1;
        }
    };
    let source = Source::new(Client::new(socket_path(control)), control.timeout);
    if once {
        runtime.block_on(print_once(&source, sort, interval))
    } else {
        runtime.block_on(live(source, sort, interval))
    }
}

/// Two samples `interval` apart (the CPU share needs both), then the
/// table as plain text.
async fn print_once(source: &Source, sort: TopSort, interval: Duration) -> i32 {
    let fail = |err: ApiError| {
        eprintln!("kelpie: {err}");
        err.exit_code()
    };
    let mut meter = CpuMeter::default();
    let first = match source.sample().await {
        Ok(sample) => sample,
        Err(err) => return fail(err),
    };
    if let Some(usage) = &first.usage {
        meter.measure(usage, first.at);
    }
    tokio::time::sleep(interval).await;
    let second = match source.sample().await {
        Ok(sample) => sample,
        Err(err) => return fail(err),
    };
    let shares = match &second.usage {
        Some(usage) => meter.measure(usage, second.at),
        None => Default::default(),
    };
    let rows = model::rows(&second, &shares, sort);
    let mut text = table::once_lines(&rows, second.programs.shutting_down).join("\n");
    text.push('\n');
    use std::io::Write as _;
    // A closed pipe (`| head`) just ends the output.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    0
}

/// What the request tasks report back to the loop.
enum Reply {
    Sample(Result<Sample, ApiError>),
    Action {
        verb: &'static str,
        name: String,
        reply: Result<ActionReply, ApiError>,
    },
    Logs {
        name: String,
        events: Result<Vec<LogEvent>, ApiError>,
    },
}

async fn live(source: Source, sort: TopSort, interval: Duration) -> i32 {
    // Installed before the screen changes: from here on these signals only
    // end the loop, which restores the terminal on its way out.
    let (mut term, mut hup, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(hup), Ok(int)) => (term, hup, int),
        (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
            eprintln!("kelpie: cannot handle signals: {err}");
            return 1;
        }
    };
    let screen = match terminal::Screen::enter() {
        Ok(screen) => screen,
        Err(err) => {
            terminal::restore();
            eprintln!("kelpie: cannot set up the terminal: {err}");
            return 1;
        }
    };
    let mut term_ui = match Terminal::new(CrosstermBackend::new(std::io::stdout())) {
        Ok(t) => t,
        Err(err) => {
            drop(screen);
            eprintln!("kelpie: cannot set up the terminal: {err}");
            return 1;
        }
    };

    // Keys and resizes: crossterm's reader blocks, so it gets a thread;
    // the thread ends with the process.
    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let reader = std::thread::Builder::new()
        .name("kelpie-top-keys".into())
        .spawn(move || {
            while let Ok(event) = event::read() {
                if key_tx.send(event).is_err() {
                    break;
                }
            }
        });
    if let Err(err) = reader {
        drop(screen);
        eprintln!("kelpie: cannot read the keyboard: {err}");
        return 1;
    }

    let (reply_tx, mut replies) = mpsc::unbounded_channel();
    let mut app = App::new(sort, interval, source.socket().display().to_string());
    // https://no-color.org: any non-empty value.
    app.color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // One sample in flight at a time: a supervisor slower than the
    // interval is asked again only once it answered.
    let mut sampling = false;
    let mut reading_logs = false;

    let code = loop {
        if let Err(err) = term_ui.draw(|frame| ui::draw(&mut app, frame)) {
            drop(screen);
            eprintln!("kelpie: cannot draw: {err}");
            return 1;
        }
        tokio::select! {
            _ = tick.tick() => {
                if !sampling {
                    sampling = true;
                    let (source, tx) = (source.clone(), reply_tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(Reply::Sample(source.sample().await));
                    });
                }
                if let (Some(name), false) = (app.logs_open(), reading_logs) {
                    reading_logs = true;
                    fetch_logs(&source, &reply_tx, name.to_string());
                }
            }
            Some(event) = keys.recv() => {
                let Event::Key(key) = event else {
                    // A resize: drawn at the top of the loop.
                    continue;
                };
                let effect = app.on_key(key);
                if !matches!(effect, Effect::Act { .. }) && app.status.is_some() {
                    // Any other key dismisses the last outcome.
                    app.status = None;
                }
                match effect {
                    Effect::Nothing => {}
                    Effect::Quit => break 0,
                    Effect::Act { verb, name } => {
                        app.status = Some(format!("{verb} {name}…"));
                        let (source, tx) = (source.clone(), reply_tx.clone());
                        tokio::spawn(async move {
                            let reply = source.action(verb, &name).await;
                            let _ = tx.send(Reply::Action { verb, name, reply });
                        });
                    }
                    Effect::Logs(name) => {
                        reading_logs = true;
                        fetch_logs(&source, &reply_tx, name);
                    }
                }
            }
            Some(reply) = replies.recv() => match reply {
                Reply::Sample(sample) => {
                    sampling = false;
                    app.on_sample(sample);
                }
                Reply::Action { verb, name, reply } => app.on_action(verb, &name, reply),
                Reply::Logs { name, events } => {
                    reading_logs = false;
                    app.on_logs(&name, events);
                }
            },
            _ = term.recv() => break 128 + libc::SIGTERM,
            _ = hup.recv() => break 128 + libc::SIGHUP,
            _ = int.recv() => break 128 + libc::SIGINT,
        }
    };
    drop(term_ui);
    drop(screen);
    code
}

fn fetch_logs(source: &Source, tx: &mpsc::UnboundedSender<Reply>, name: String) {
    let (source, tx) = (source.clone(), tx.clone());
    tokio::spawn(async move {
        let events = source.log_tail(&name).await;
        let _ = tx.send(Reply::Logs { name, events });
    });
}
