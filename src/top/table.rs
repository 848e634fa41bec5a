//! The table as text: which columns fit a width, each cell's text and
//! alignment, and the plain lines `kelpie top --once` prints. The live
//! view draws the same cells, so what a script reads is what a person
//! sees.

use super::model::Row;
use crate::control_client::render::format_uptime;

/// The columns, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    State,
    Ready,
    Pid,
    Uptime,
    Restarts,
    Cpu,
    Rss,
}

pub const COLUMNS: [Column; 8] = [
    Column::Name,
    Column::State,
    Column::Ready,
    Column::Pid,
    Column::Uptime,
    Column::Restarts,
    Column::Cpu,
    Column::Rss,
];

/// The order columns are given up in when the width is short: the name,
/// state and figures last.
const DROP_ORDER: [Column; 5] = [
    Column::Ready,
    Column::Uptime,
    Column::Restarts,
    Column::Pid,
    Column::Rss,
];

/// Between columns.
pub const GAP: usize = 2;

/// Long names are cut (with `…`) down to this many characters before any
/// column is dropped, and below it only once every droppable column is
/// gone.
const NAME_MIN: usize = 12;

impl Column {
    pub fn header(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::Ready => "READY",
            Column::Pid => "PID",
            Column::Uptime => "UPTIME",
            Column::Restarts => "RESTARTS",
            Column::Cpu => "CPU%",
            Column::Rss => "RSS",
        }
    }

    /// Figures are right-aligned, so their digits line up.
    pub fn right_aligned(self) -> bool {
        matches!(
            self,
            Column::Pid | Column::Uptime | Column::Restarts | Column::Cpu | Column::Rss
        )
    }

    /// The cell's text (`-` for nothing to show).
    pub fn cell(self, row: &Row) -> String {
        let dash = || "-".to_string();
        match self {
            Column::Name => row.name.clone(),
            Column::State => row.state.clone(),
            Column::Ready => row.ready.to_string(),
            Column::Pid => row.pid.map_or_else(dash, |p| p.to_string()),
            Column::Uptime => row.uptime_seconds.map_or_else(dash, format_uptime),
            Column::Restarts => row.restarts.to_string(),
            Column::Cpu => row.cpu_percent.map_or_else(dash, format_percent),
            Column::Rss => row.rss_bytes.map_or_else(dash, format_bytes),
        }
    }
}

/// `0.0` to `99.9` with one decimal, whole numbers from 100 (several CPUs).
pub fn format_percent(percent: f64) -> String {
    if percent >= 99.95 {
        format!("{percent:.0}")
    } else {
        format!("{:.1}", percent.max(0.0))
    }
}

/// Binary units, three significant digits at most: `512B`, `12K`, `3.4M`,
/// `245M`, `1.20G`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ if value >= 99.95 => format!("{value:.0}{}", UNITS[unit]),
        1 => format!("{value:.0}{}", UNITS[unit]),
        2 => format!("{value:.1}{}", UNITS[unit]),
        _ => format!("{value:.2}{}", UNITS[unit]),
    }
}

/// The columns shown and their widths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub columns: Vec<(Column, usize)>,
}

impl Layout {
    /// The columns for `rows` in `width` characters (`None`: no limit, as
    /// for `--once`). Each column is as wide as its widest cell; when that
    /// is too wide, the name is cut down to `NAME_MIN`, then columns are
    /// dropped in `DROP_ORDER`, then the name is cut to what is left.
    pub fn fit(rows: &[Row], width: Option<usize>) -> Self {
        let natural: Vec<(Column, usize)> = COLUMNS
            .iter()
            .map(|&column| {
                let widest = rows
                    .iter()
                    .map(|row| column.cell(row).chars().count())
                    .max()
                    .unwrap_or(0);
                (column, widest.max(column.header().len()))
            })
            .collect();
        let Some(width) = width else {
            return Self { columns: natural };
        };
        let total = |columns: &[(Column, usize)], name: usize| {
            columns
                .iter()
                .map(|&(c, w)| if c == Column::Name { name } else { w })
                .sum::<usize>()
                + GAP * columns.len().saturating_sub(1)
        };
        let name_natural = natural[0].1;
        let mut columns = natural;
        let mut drop = DROP_ORDER.iter();
        while total(&columns, name_natural.min(NAME_MIN)) > width {
            match drop.next() {
                Some(column) => columns.retain(|(c, _)| c != column),
                None => break,
            }
        }
        let others = total(&columns, 0);
        let name = width.saturating_sub(others).clamp(1, name_natural.max(1));
        columns[0].1 = name;
        Self { columns }
    }

    /// The cells of the header line, padded.
    pub fn header(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|&(column, width)| pad(column.header(), width, column.right_aligned()))
            .collect()
    }

    /// The cells of `row`, padded (and the name cut) to their widths.
    pub fn cells(&self, row: &Row) -> Vec<(Column, String)> {
        self.columns
            .iter()
            .map(|&(column, width)| {
                (
                    column,
                    pad(&column.cell(row), width, column.right_aligned()),
                )
            })
            .collect()
    }

    /// One line of cells, with no trailing blanks.
    pub fn line<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
        let gap = " ".repeat(GAP);
        let mut out = String::new();
        for (n, cell) in cells.into_iter().enumerate() {
            if n > 0 {
                out.push_str(&gap);
            }
            out.push_str(cell.as_ref());
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// `text` in exactly `width` characters: padded, or cut in the middle
/// with `…` (names of a fleet often differ only at the end: `web:1`,
/// `worker-17`).
pub fn pad(text: &str, width: usize, right: bool) -> String {
    let len = text.chars().count();
    if len > width {
        if width == 0 {
            return String::new();
        }
        let tail = (width - 1) / 2;
        let head = width - 1 - tail;
        let mut cut: String = text.chars().take(head).collect();
        cut.push('…');
        cut.extend(text.chars().skip(len - tail));
        return cut;
    }
    let fill = " ".repeat(width - len);
    if right {
        fill + text
    } else {
        format!("{text}{fill}")
    }
}

/// What `kelpie top --once` prints: the header and one line per row, every
/// column at its natural width, then `supervisor is shutting down` when it
/// is.
pub fn once_lines(rows: &[Row], shutting_down: bool) -> Vec<String> {
    let layout = Layout::fit(rows, None);
    let mut lines = vec![Layout::line(layout.header())];
    lines.extend(
        rows.iter()
            .map(|row| Layout::line(layout.cells(row).into_iter().map(|(_, cell)| cell))),
    );
    if shutting_down {
        lines.push("supervisor is shutting down".to_string());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: &str, pid: Option<i32>, cpu: Option<f64>, rss: Option<u64>) -> Row {
        let (program, index) = match name.split_once(':') {
            Some((p, i)) => (p.to_string(), i.parse().ok()),
            None => (name.to_string(), None),
        };
        Row {
            name: name.to_string(),
            program,
            index,
            instances: 1,
            state: state.to_string(),
            ready: if state == "running" { "yes" } else { "-" },
            pid,
            uptime_seconds: pid.map(|_| 3725),
            restarts: 2,
            cpu_percent: cpu,
            rss_bytes: rss,
        }
    }

    #[test]
    fn figures_are_short_and_readable() {
        let table = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1K"),
            (12 * 1024 + 300, "12K"),
            (3_565_158, "3.4M"),
            (256_901_120, "245M"),
            (1_288_490_189, "1.20G"),
        ];
        for (bytes, text) in table {
            assert_eq!(format_bytes(bytes), text, "{bytes}");
        }
        for (percent, text) in [
            (0.0, "0.0"),
            (12.345, "12.3"),
            (99.96, "100"),
            (250.4, "250"),
        ] {
            assert_eq!(format_percent(percent), text, "{percent}");
        }
    }

    #[test]
    fn once_prints_aligned_plain_lines() {
        let rows = vec![
            row("web", "running", None, Some(12.5), Some(52 * 1024 * 1024)),
            row(
                "web:0",
                "running",
                Some(4711),
                Some(12.5),
                Some(26 * 1024 * 1024),
            ),
            row("web:1", "backoff", None, None, Some(0)),
            row("db", "stopped", None, Some(0.0), None),
        ];
        let expected = [
            "NAME   STATE    READY   PID  UPTIME  RESTARTS  CPU%    RSS",
            "web    running  yes       -       -         2  12.5  52.0M",
            "web:0  running  yes    4711   1h02m         2  12.5  26.0M",
            "web:1  backoff  -         -       -         2     -     0B",
            "db     stopped  -         -       -         2   0.0      -",
            "supervisor is shutting down",
        ];
        let lines = once_lines(&rows, true);
        assert_eq!(lines, expected);
        for line in &lines {
            assert!(!line.contains('\x1b'), "no escape codes: {line:?}");
            assert_eq!(line.trim_end(), line, "no trailing blanks");
        }
    }

    #[test]
    fn an_empty_supervisor_is_the_header_alone() {
        assert_eq!(
            once_lines(&[], false),
            ["NAME  STATE  READY  PID  UPTIME  RESTARTS  CPU%  RSS"]
        );
    }

    #[test]
    fn narrow_widths_drop_columns_then_cut_the_name() {
        let rows = vec![row(
            "a-rather-long-program-name",
            "running",
            Some(123_456),
            Some(1.0),
            Some(1),
        )];
        let shown = |width| {
            Layout::fit(&rows, Some(width))
                .columns
                .iter()
                .map(|&(c, w)| (c.header(), w))
                .collect::<Vec<_>>()
        };
        // Everything fits at its natural width (79 characters).
        let wide = shown(79);
        assert_eq!(wide.len(), 8);
        assert_eq!(wide[0], ("NAME", 26));
        // A little less: the name gives way first.
        assert_eq!(shown(78)[0], ("NAME", 25));
        let at_60 = shown(60);
        assert_eq!(at_60.len(), 7);
        assert_eq!(at_60[0], ("NAME", 14));
        assert!(!at_60.iter().any(|(h, _)| *h == "READY"));
        // 40: name, state, pid and the CPU and memory figures.
        assert_eq!(
            shown(40),
            [
                ("NAME", 12),
                ("STATE", 7),
                ("PID", 6),
                ("CPU%", 4),
                ("RSS", 3)
            ]
        );
        // Very narrow: the name is cut to what is left, never below one.
        assert_eq!(shown(20)[0], ("NAME", 5));
        assert_eq!(shown(10)[0], ("NAME", 1));
        for width in [27, 30, 40, 60, 78, 79, 200] {
            let layout = Layout::fit(&rows, Some(width));
            let line = Layout::line(layout.cells(&rows[0]).into_iter().map(|(_, c)| c));
            let header = Layout::line(layout.header());
            assert!(line.chars().count() <= width, "{width}: {line:?}");
            assert!(header.chars().count() <= width, "{width}: {header:?}");
        }
        let cut = Layout::fit(&rows, Some(30));
        assert_eq!(cut.cells(&rows[0])[0].1, "a-rathe…am-name");
    }

    #[test]
    fn pad_aligns_and_cuts() {
        assert_eq!(pad("ab", 4, false), "ab  ");
        assert_eq!(pad("ab", 4, true), "  ab");
        assert_eq!(pad("abcdef", 4, false), "ab…f");
        assert_eq!(pad("web-worker:12", 9, false), "web-…r:12");
        assert_eq!(pad("abc", 1, false), "…");
        assert_eq!(pad("abc", 0, false), "");
    }
}
