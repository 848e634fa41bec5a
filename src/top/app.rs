//! The live view's state and what each key does to it. Pure: the loop in
//! `top.rs` feeds it samples, replies and keys, and carries out the
//! [`Effect`]s it asks for; `ui` draws it.

use std::collections::HashMap;
use std::time::Duration;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::{self, CpuMeter, Row, Sample};
use crate::cli::TopSort;
use crate::control::protocol::{ActionReply, LogEvent};
use crate::control_client::connection::ApiError;
use crate::control_client::render::{self, LogStyle};

/// What the loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    Quit,
    /// `start`, `stop` or `restart` of a program or instance.
    Act {
        verb: &'static str,
        name: String,
    },
    /// Fetch the log tail of a program or instance (the view is open).
    Logs(String),
}

/// The log tail of one program or instance.
#[derive(Debug, Clone, PartialEq)]
pub struct LogView {
    pub name: String,
    pub lines: Vec<String>,
    /// Lines scrolled up from the newest.
    pub scroll: usize,
    pub error: Option<String>,
    pub loaded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Table,
    Logs(LogView),
}

pub struct App {
    pub sort: TopSort,
    pub interval: Duration,
    pub socket: String,
    pub rows: Vec<Row>,
    /// Programs and instances of the last sample.
    pub counts: (usize, usize),
    pub shutting_down: bool,
    /// The row under the cursor, and the first row shown.
    pub selected: usize,
    pub offset: usize,
    /// Rows that fit on the screen (set when drawing).
    pub page: usize,
    /// The last action's outcome, or another message.
    pub status: Option<String>,
    /// Why the last sample failed.
    pub disconnected: Option<String>,
    pub mode: Mode,
    /// Whether any sample arrived yet.
    pub sampled: bool,
    /// Color the states (off with `NO_COLOR`).
    pub color: bool,
    /// The user moved the cursor: from then on it follows its row when
    /// the order changes (before, it stays on the first row, which the
    /// first CPU figures would otherwise move away).
    moved: bool,
    pub(super) last: Option<Sample>,
    shares: HashMap<String, f64>,
    meter: CpuMeter,
}

impl App {
    pub fn new(sort: TopSort, interval: Duration, socket: String) -> Self {
        Self {
            sort,
            interval,
            socket,
            rows: Vec::new(),
            counts: (0, 0),
            shutting_down: false,
            selected: 0,
            offset: 0,
            page: 1,
            status: None,
            disconnected: None,
            mode: Mode::Table,
            sampled: false,
            color: true,
            moved: false,
            last: None,
            shares: HashMap::new(),
            meter: CpuMeter::default(),
        }
    }

    /// The name of the selected row, to act on.
    pub fn selected_name(&self) -> Option<&str> {
        self.rows.get(self.selected).map(|r| r.name.as_str())
    }

    pub fn on_sample(&mut self, sample: Result<Sample, ApiError>) {
        match sample {
            Ok(sample) => {
                self.disconnected = None;
                self.sampled = true;
                if let Some(usage) = &sample.usage {
                    self.shares = self.meter.measure(usage, sample.at);
                }
                self.shutting_down = sample.programs.shutting_down;
                self.counts = (
                    sample.programs.programs.len(),
                    sample
                        .programs
                        .programs
                        .iter()
                        .map(|p| p.instances.len())
                        .sum(),
                );
                self.last = Some(sample);
                self.rebuild();
            }
            Err(err) => {
                self.disconnected = Some(format!(
                    "disconnected: {err}; retrying every {}",
                    humantime::format_duration(self.interval)
                ));
            }
        }
    }

    /// Rows of the last sample in the current order; the selection stays
    /// on the same name when it is still there.
    fn rebuild(&mut self) {
        let Some(sample) = &self.last else { return };
        let keep = self
            .selected_name()
            .filter(|_| self.moved)
            .map(str::to_string);
        self.rows = model::rows(sample, &self.shares, self.sort);
        if let Some(name) = keep {
            if let Some(at) = self.rows.iter().position(|r| r.name == name) {
                self.selected = at;
            }
        }
        self.select(self.selected);
    }

    /// Moves the cursor to `index` (clamped) and scrolls it into view.
    fn select(&mut self, index: usize) {
        self.selected = index.min(self.rows.len().saturating_sub(1));
        let page = self.page.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        // No blank space below the last row while rows are hidden above.
        self.offset = self.offset.min(self.rows.len().saturating_sub(page));
    }

    /// The screen holds `rows` table rows now.
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows.max(1);
        self.select(self.selected);
    }

    pub fn on_action(&mut self, verb: &str, name: &str, reply: Result<ActionReply, ApiError>) {
        self.status = Some(match reply {
            Ok(reply) => render::action_lines(verb, &reply).join("; "),
            Err(err) => format!("{verb} {name}: {err}"),
        });
    }

    pub fn on_logs(&mut self, name: &str, events: Result<Vec<LogEvent>, ApiError>) {
        let several = self
            .last
            .as_ref()
            .and_then(|s| s.programs.programs.iter().find(|p| p.name == name))
            .is_some_and(|p| p.instances.len() > 1);
        let Mode::Logs(view) = &mut self.mode else {
            return;
        };
        if view.name != name {
            return;
        }
        match events {
            Ok(events) => {
                let style = LogStyle {
                    prefix: several,
                    timestamps: false,
                };
                let lines: Vec<String> = events
                    .iter()
                    .filter_map(|e| render::log_line(e, style))
                    .collect();
                // Keep the reader's place when new lines arrive below it.
                if view.scroll > 0 {
                    view.scroll += lines.len().saturating_sub(view.lines.len());
                }
                view.lines = lines;
                view.error = None;
            }
            Err(err) => view.error = Some(err.to_string()),
        }
        view.loaded = true;
    }

    /// What `key` does. Only presses count (terminals that report
    /// releases would act twice otherwise).
    pub fn on_key(&mut self, key: KeyEvent) -> Effect {
        if key.kind != KeyEventKind::Press {
            return Effect::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return Effect::Quit,
            KeyCode::Char('q') => return Effect::Quit,
            _ if ctrl => return Effect::Nothing,
            _ => {}
        }
        let name = match &self.mode {
            Mode::Logs(view) => Some(view.name.clone()),
            Mode::Table => self.selected_name().map(str::to_string),
        };
        let act = |verb| match &name {
            Some(name) => Effect::Act {
                verb,
                name: name.clone(),
            },
            None => Effect::Nothing,
        };
        match key.code {
            KeyCode::Char('R') => return act("restart"),
            KeyCode::Char('S') => return act("start"),
            KeyCode::Char('X') => return act("stop"),
            _ => {}
        }
        if let Mode::Logs(view) = &mut self.mode {
            let page = self.page.max(1);
            let most = view.lines.len().saturating_sub(1);
            match key.code {
                KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('l') => {
                    self.mode = Mode::Table
                }
                KeyCode::Up | KeyCode::Char('k') => view.scroll = (view.scroll + 1).min(most),
                KeyCode::Down | KeyCode::Char('j') => view.scroll = view.scroll.saturating_sub(1),
                KeyCode::PageUp => view.scroll = (view.scroll + page).min(most),
                KeyCode::PageDown => view.scroll = view.scroll.saturating_sub(page),
                KeyCode::Home | KeyCode::Char('g') => view.scroll = most,
                KeyCode::End | KeyCode::Char('G') => view.scroll = 0,
                _ => {}
            }
            return Effect::Nothing;
        }
        let page = self.page.max(1);
        if matches!(
            key.code,
            KeyCode::Up
                | KeyCode::Down
                | KeyCode::PageUp
                | KeyCode::PageDown
                | KeyCode::Home
                | KeyCode::End
                | KeyCode::Char('k' | 'j' | 'g' | 'G')
        ) {
            self.moved = true;
        }
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.select(self.selected.saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.select(self.selected + 1),
            KeyCode::PageUp => self.select(self.selected.saturating_sub(page)),
            KeyCode::PageDown => self.select(self.selected + page),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Char('c') => self.sort_by(TopSort::Cpu),
            KeyCode::Char('m') => self.sort_by(TopSort::Rss),
            KeyCode::Char('r') => self.sort_by(TopSort::Restarts),
            KeyCode::Char('n') => self.sort_by(TopSort::Name),
            KeyCode::Enter | KeyCode::Char('l') => {
                if let Some(name) = name {
                    self.mode = Mode::Logs(LogView {
                        name: name.clone(),
                        lines: Vec::new(),
                        scroll: 0,
                        error: None,
                        loaded: false,
                    });
                    return Effect::Logs(name);
                }
            }
            _ => {}
        }
        Effect::Nothing
    }

    fn sort_by(&mut self, sort: TopSort) {
        self.sort = sort;
        self.rebuild();
    }

    /// The program or instance whose log tail is open.
    pub fn logs_open(&self) -> Option<&str> {
        match &self.mode {
            Mode::Logs(view) => Some(&view.name),
            Mode::Table => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ProgramInfo, ProgramsReply};
    use crate::control_client::connection::ClientError;
    use tokio::time::Instant;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn programs(names: &[&str]) -> Sample {
        let programs: Vec<ProgramInfo> = names
            .iter()
            .enumerate()
            .map(|(n, name)| {
                let json = serde_json::json!({
                    "name": name, "state": "running", "ready": true, "required": true,
                    "type": "service", "restarts": n, "reason": null,
                    "stopped_by_user": false, "enabled": true,
                    "instances": [{
                        "name": format!("{name}:0"), "index": 0, "state": "running",
                        "pid": 100 + n, "ready": true, "uptime_seconds": 5,
                        "started_at": null, "restarts": n, "last_exit": null,
                        "reason": null, "backoff_seconds": null, "status_text": null
                    }]
                });
                serde_json::from_value(json).unwrap()
            })
            .collect();
        Sample {
            programs: ProgramsReply {
                shutting_down: false,
                programs,
            },
            usage: None,
            at: Instant::now(),
        }
    }

    fn app(names: &[&str]) -> App {
        let mut app = App::new(TopSort::Name, Duration::from_secs(1), "k.sock".into());
        app.on_sample(Ok(programs(names)));
        app
    }

    #[test]
    fn the_cursor_scrolls_through_hundreds_of_rows() {
        let names: Vec<String> = (0..300).map(|n| format!("p{n:03}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut app = app(&names);
        app.set_page(20);
        assert_eq!((app.selected, app.offset), (0, 0));
        for _ in 0..25 {
            app.on_key(key(KeyCode::Down));
        }
        assert_eq!((app.selected, app.offset), (25, 6));
        app.on_key(key(KeyCode::PageDown));
        assert_eq!((app.selected, app.offset), (45, 26));
        app.on_key(key(KeyCode::End));
        assert_eq!((app.selected, app.offset), (299, 280));
        app.on_key(key(KeyCode::Char('j')));
        assert_eq!(app.selected, 299, "stays on the last row");
        app.on_key(key(KeyCode::Home));
        assert_eq!((app.selected, app.offset), (0, 0));
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected, 0);
        // A taller screen shows more rows, with none blank at the end.
        app.on_key(key(KeyCode::End));
        app.set_page(50);
        assert_eq!(app.offset, 250);
    }

    #[test]
    fn the_selection_follows_its_row_across_sorts_and_samples() {
        let mut app = app(&["a", "b", "c"]);
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.selected_name(), Some("b"));
        // By restarts: c (2), b (1), a (0).
        app.on_key(key(KeyCode::Char('r')));
        assert_eq!(app.sort, TopSort::Restarts);
        assert_eq!(app.selected_name(), Some("b"));
        assert_eq!(app.selected, 1);
        app.on_key(key(KeyCode::Up));
        assert_eq!(app.selected_name(), Some("c"));
        // c goes away: the cursor stays at its place.
        app.on_sample(Ok(programs(&["a", "b"])));
        assert_eq!(app.selected, 0);
        assert_eq!(app.selected_name(), Some("b"));
    }

    #[test]
    fn before_any_move_the_cursor_stays_on_the_first_row() {
        let mut app = app(&["a", "b", "c"]);
        assert_eq!(app.selected_name(), Some("a"));
        app.on_key(key(KeyCode::Char('r')));
        assert_eq!(app.selected_name(), Some("c"), "the first row now");
    }

    #[test]
    fn action_keys_name_the_selected_row_and_quitting_is_q_or_ctrl_c() {
        let mut app = app(&["a", "b"]);
        app.on_key(key(KeyCode::Char('j')));
        let restart = Effect::Act {
            verb: "restart",
            name: "b".into(),
        };
        assert_eq!(app.on_key(key(KeyCode::Char('R'))), restart);
        assert_eq!(
            app.on_key(key(KeyCode::Char('X'))),
            Effect::Act {
                verb: "stop",
                name: "b".into()
            }
        );
        assert_eq!(
            app.on_key(key(KeyCode::Char('S'))),
            Effect::Act {
                verb: "start",
                name: "b".into()
            }
        );
        // Lowercase r sorts; it never acts.
        assert_eq!(app.on_key(key(KeyCode::Char('r'))), Effect::Nothing);
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Effect::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Effect::Quit);
        // Nothing to act on before the first sample.
        let mut empty = App::new(TopSort::Cpu, Duration::from_secs(1), "k".into());
        assert_eq!(empty.on_key(key(KeyCode::Char('R'))), Effect::Nothing);
    }

    #[test]
    fn the_log_tail_opens_scrolls_and_closes() {
        let mut app = app(&["a", "b"]);
        app.set_page(5);
        assert_eq!(app.on_key(key(KeyCode::Enter)), Effect::Logs("a".into()));
        assert_eq!(app.logs_open(), Some("a"));
        let line = |n: usize| LogEvent::Line {
            program: "a".into(),
            instance: 0,
            stream: "stdout".into(),
            time: None,
            line: format!("line {n}"),
        };
        app.on_logs("a", Ok((0..20).map(line).collect()));
        let Mode::Logs(view) = &app.mode else {
            panic!("not in the log view")
        };
        assert_eq!(view.lines.len(), 20);
        assert_eq!(view.lines[19], "line 19");
        app.on_key(key(KeyCode::PageUp));
        app.on_key(key(KeyCode::Up));
        let Mode::Logs(view) = &app.mode else {
            panic!("not in the log view")
        };
        assert_eq!(view.scroll, 6);
        // Newer lines arrive: the reader keeps their place.
        app.on_logs("a", Ok((0..23).map(line).collect()));
        let Mode::Logs(view) = &app.mode else {
            panic!("not in the log view")
        };
        assert_eq!(view.scroll, 9);
        // Acting from the log view acts on its program.
        assert_eq!(
            app.on_key(key(KeyCode::Char('R'))),
            Effect::Act {
                verb: "restart",
                name: "a".into()
            }
        );
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.logs_open(), None);
        assert_eq!(app.mode, Mode::Table);
    }

    #[test]
    fn a_failed_sample_keeps_the_rows_and_says_so() {
        let mut app = app(&["a"]);
        app.on_sample(Err(ApiError::Client(ClientError::Unavailable {
            path: "k.sock".into(),
            reason: "connection refused".into(),
        })));
        assert_eq!(app.rows.len(), 1);
        let message = app.disconnected.clone().unwrap();
        assert!(message.starts_with("disconnected: "), "{message}");
        assert!(message.contains("connection refused"), "{message}");
        assert!(message.contains("retrying every 1s"), "{message}");
        app.on_sample(Ok(programs(&["a"])));
        assert_eq!(app.disconnected, None);
    }
}
