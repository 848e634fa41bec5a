//! Drawing the live view: a title line, the table (the cells of
//! `table::Layout`, the selected row reversed, the state colored) and a
//! status line; or the log tail of one program. Everything is cut to the
//! terminal's width, so a narrow one loses columns, never the layout.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::app::{App, LogView, Mode};
use super::table::{Column, Layout};
use crate::cli::TopSort;

/// Lines around the table: the title, the header and the status line.
const CHROME: usize = 3;

const HELP: &str = "↑↓ select  R restart  S start  X stop  l logs  c/m/r/n sort  q quit";
const LOG_HELP: &str = "↑↓ PgUp PgDn scroll  Esc back  R restart  S start  X stop  q quit";

pub fn draw(app: &mut App, frame: &mut Frame) {
    let area = frame.area();
    let lines = screen(app, usize::from(area.width), usize::from(area.height));
    frame.render_widget(Paragraph::new(lines), area);
}

/// The lines of the screen for a `width` × `height` terminal (also what
/// the tests look at).
pub fn screen(app: &mut App, width: usize, height: usize) -> Vec<Line<'static>> {
    app.set_page(height.saturating_sub(CHROME));
    match &app.mode {
        Mode::Table => table_screen(app, width),
        Mode::Logs(view) => log_screen(app, view, height),
    }
}

fn title(app: &App) -> Line<'static> {
    if let Some(message) = &app.disconnected {
        return Line::styled(message.clone(), Style::new().fg(Color::Red).bold());
    }
    if !app.sampled {
        return Line::raw(format!("kelpie top: connecting to {}…", app.socket));
    }
    let sort = match app.sort {
        TopSort::Cpu => "CPU",
        TopSort::Rss => "memory",
        TopSort::Restarts => "restarts",
        TopSort::Name => "name",
    };
    let (programs, instances) = app.counts;
    let mut text = format!(
        "kelpie top  {programs} {}, {instances} {}  sorted by {sort}  every {}  {}",
        if programs == 1 { "program" } else { "programs" },
        if instances == 1 {
            "instance"
        } else {
            "instances"
        },
        humantime::format_duration(app.interval),
        app.socket
    );
    if app.shutting_down {
        text.push_str("  (shutting down)");
    }
    Line::styled(text, Style::new().bold())
}

fn status(app: &App, help: &'static str) -> Line<'static> {
    match &app.status {
        Some(status) => Line::raw(status.clone()),
        None => Line::styled(help, Style::new().add_modifier(Modifier::DIM)),
    }
}

fn table_screen(app: &App, width: usize) -> Vec<Line<'static>> {
    let layout = Layout::fit(&app.rows, Some(width));
    let mut lines = vec![
        title(app),
        Line::styled(Layout::line(layout.header()), Style::new().bold()),
    ];
    let stale = app.disconnected.is_some();
    for (n, row) in app.rows.iter().enumerate().skip(app.offset).take(app.page) {
        let mut spans = Vec::new();
        for (i, (column, cell)) in layout.cells(row).into_iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(" ".repeat(super::table::GAP)));
            }
            let style = match column {
                Column::State if app.color => state_style(&row.state),
                _ => Style::new(),
            };
            spans.push(Span::styled(cell, style));
        }
        let mut style = Style::new();
        if stale {
            style = style.add_modifier(Modifier::DIM);
        }
        if n == app.selected {
            style = style.add_modifier(Modifier::REVERSED);
        }
        lines.push(Line::from(spans).style(style));
    }
    if app.sampled && app.rows.is_empty() {
        lines.push(Line::raw("no programs"));
    }
    while lines.len() < app.page + 2 {
        lines.push(Line::raw(""));
    }
    lines.push(status(app, HELP));
    lines
}

fn log_screen(app: &App, view: &LogView, height: usize) -> Vec<Line<'static>> {
    let body = height.saturating_sub(2);
    let mut lines = vec![Line::styled(
        format!(
            "logs of {} (last {} lines kept by kelpie)  Esc back",
            view.name,
            super::source::LOG_LINES
        ),
        Style::new().bold(),
    )];
    if let Some(error) = &view.error {
        lines.push(Line::styled(
            format!("cannot read the logs: {error}"),
            Style::new().fg(Color::Red),
        ));
    } else if !view.loaded {
        lines.push(Line::raw("loading…"));
    } else if view.lines.is_empty() {
        lines.push(Line::raw("(no output kept for it)"));
    }
    let room = body.saturating_sub(lines.len() - 1);
    let end = view.lines.len().saturating_sub(view.scroll);
    let start = end.saturating_sub(room);
    lines.extend(view.lines[start..end].iter().map(|l| Line::raw(l.clone())));
    while lines.len() < body + 1 {
        lines.push(Line::raw(""));
    }
    lines.push(status(app, LOG_HELP));
    lines
}

/// The colors of `kelpie status`.
fn state_style(state: &str) -> Style {
    match state {
        "running" => Style::new().fg(Color::Green),
        "starting" | "stopping" | "backoff" => Style::new().fg(Color::Yellow),
        "failed" => Style::new().fg(Color::Red).bold(),
        "exited" | "stopped" => Style::new().add_modifier(Modifier::DIM),
        _ => Style::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ProgramInfo, ProgramsReply};
    use crate::top::model::Sample;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    fn app_with(count: usize) -> App {
        let programs: Vec<ProgramInfo> = (0..count)
            .map(|n| {
                serde_json::from_value(serde_json::json!({
                    "name": format!("program-with-a-long-name-{n:03}"), "state": "running",
                    "ready": true, "required": true, "type": "service", "restarts": 0,
                    "reason": null, "stopped_by_user": false,
                    "instances": [{
                        "name": format!("program-with-a-long-name-{n:03}:0"), "index": 0,
                        "state": "running", "pid": 1000 + n, "ready": true,
                        "uptime_seconds": 5, "started_at": null, "restarts": 0,
                        "last_exit": null, "reason": null, "backoff_seconds": null,
                        "status_text": null
                    }]
                }))
                .unwrap()
            })
            .collect();
        let mut app = App::new(TopSort::Name, Duration::from_secs(1), "/run/k.sock".into());
        app.on_sample(Ok(Sample {
            programs: ProgramsReply {
                shutting_down: false,
                programs,
            },
            usage: None,
            at: tokio::time::Instant::now(),
        }));
        app
    }

    fn rendered(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(app, frame)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn hundreds_of_programs_scroll_in_a_small_narrow_terminal() {
        let mut app = app_with(300);
        let screen = rendered(&mut app, 40, 12);
        assert!(
            screen[0].starts_with("kelpie top  300 programs"),
            "{screen:?}"
        );
        assert!(screen[1].starts_with("NAME"), "{screen:?}");
        assert!(
            screen[1].contains("STATE") && screen[1].contains("CPU%"),
            "{screen:?}"
        );
        assert!(
            !screen[1].contains("READY"),
            "dropped at 40 columns: {screen:?}"
        );
        assert!(screen[2].starts_with("program…me-000 "), "{screen:?}");
        assert!(screen[2].contains("running"), "{screen:?}");
        assert_eq!(screen.len(), 12);
        assert!(screen[11].contains("R restart"), "{screen:?}");
        for _ in 0..250 {
            app.on_key(ratatui::crossterm::event::KeyEvent::from(
                ratatui::crossterm::event::KeyCode::Down,
            ));
        }
        let screen = rendered(&mut app, 40, 12);
        // Nine rows fit; the selected one (250) is the last shown.
        assert!(screen[10].starts_with("program…me-250 "), "{screen:?}");
        assert!(screen[2].starts_with("program…me-242 "), "{screen:?}");
    }

    #[test]
    fn a_tiny_terminal_draws_without_panicking() {
        let mut app = app_with(3);
        for (width, height) in [(1, 1), (5, 2), (80, 3), (10, 40)] {
            let screen = rendered(&mut app, width, height);
            assert_eq!(screen.len(), usize::from(height));
        }
    }

    #[test]
    fn a_disconnect_is_on_the_first_line() {
        let mut app = app_with(2);
        app.on_sample(Err(crate::control_client::connection::ApiError::Client(
            crate::control_client::connection::ClientError::Unavailable {
                path: "/run/k.sock".into(),
                reason: "connection refused".into(),
            },
        )));
        let screen = rendered(&mut app, 120, 8);
        assert!(
            screen[0].starts_with("disconnected: no kelpie supervisor is running at /run/k.sock"),
            "{screen:?}"
        );
        assert!(
            screen[2].starts_with("program-with-a-long-name-000"),
            "{screen:?}"
        );
    }

    /// What drawing one frame costs: `cargo test --release --lib
    /// top::ui::tests::frame_benchmark -- --ignored --nocapture`
    /// (docs/benchmarks.md, "kelpie top: one refresh").
    #[test]
    #[ignore = "a benchmark; prints timings"]
    fn frame_benchmark() {
        for count in [100, 1000] {
            let mut app = app_with(count);
            let sample = app.last.clone().unwrap();
            let mut terminal = Terminal::new(TestBackend::new(120, 50)).unwrap();
            let median = |mut times: Vec<Duration>| {
                times.sort();
                times[times.len() / 2]
            };
            let (mut rows, mut frame, mut once) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..200 {
                let next = sample.clone();
                let start = tokio::time::Instant::now();
                app.on_sample(Ok(next));
                rows.push(start.elapsed());
                let start = tokio::time::Instant::now();
                terminal.draw(|f| draw(&mut app, f)).unwrap();
                frame.push(start.elapsed());
                let start = tokio::time::Instant::now();
                let lines = crate::top::table::once_lines(&app.rows, false);
                once.push(start.elapsed());
                assert_eq!(lines.len(), count + 1);
            }
            println!(
                "{count} programs: sample to rows {:?}, live frame (120x50) {:?}, --once text {:?}",
                median(rows),
                median(frame),
                median(once)
            );
        }
    }
}
