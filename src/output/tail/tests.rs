use std::collections::VecDeque;

use super::*;
use crate::output::MAX_LINE_BYTES;

fn output(instance: u32, stream: Stream, line: String) -> TailLine {
    TailLine {
        time: SystemTime::UNIX_EPOCH,
        instance,
        kind: LineKind::Output { stream, line },
    }
}

fn mark(instance: u32, previous_pid: i32, pid: i32) -> TailLine {
    TailLine {
        time: SystemTime::UNIX_EPOCH,
        instance,
        kind: LineKind::Restarted { previous_pid, pid },
    }
}

fn text(line: &TailLine) -> &str {
    match &line.kind {
        LineKind::Output { line, .. } => line,
        _ => "",
    }
}

/// Pushes `lines` as the batch of one pipe read.
fn push_batch(tail: &mut Tail, instance: u32, stream: Stream, lines: &[String]) {
    let mut text = String::new();
    let mut ends = Vec::new();
    for line in lines {
        text.push_str(line);
        ends.push(text.len() as u32);
        text.push('\n');
    }
    tail.push_batch(
        SystemTime::UNIX_EPOCH,
        instance,
        stream,
        &LineBatch::from_parts(&text, &ends),
    );
}

/// The tail as it was before the ring, one `String` per line: what the
/// ring must behave like.
#[derive(Default)]
struct Model {
    lines: VecDeque<TailLine>,
    bytes: usize,
}

impl Model {
    fn push(&mut self, line: TailLine) {
        self.bytes += text(&line).len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= text(&old).len(),
                None => break,
            }
        }
    }
}

#[test]
fn tail_is_bounded_by_lines_and_bytes() {
    let mut tail = Tail::default();
    for i in 0..(TAIL_LINES + 50) {
        tail.push(output(0, Stream::Stdout, format!("line {i}")));
    }
    assert_eq!(tail.len(), TAIL_LINES);
    assert_eq!(tail.last(1).first().map(text), Some("line 1049"));
    assert_eq!(tail.last(TAIL_LINES).first().map(text), Some("line 50"));
    let mut tail = Tail::default();
    for _ in 0..100 {
        tail.push(output(0, Stream::Stderr, "z".repeat(MAX_LINE_BYTES)));
    }
    assert!(tail.bytes() <= TAIL_BYTES);
    assert_eq!(tail.len(), TAIL_BYTES / MAX_LINE_BYTES);
}

/// Batches are bounded the same way: by lines, and by bytes, keeping the
/// newest lines of the batch.
#[test]
fn a_batch_evicts_by_lines_and_by_bytes() {
    let mut tail = Tail::default();
    push_batch(&mut tail, 0, Stream::Stdout, &["old".to_string()]);
    let many: Vec<String> = (0..TAIL_LINES + 5).map(|i| format!("l{i}")).collect();
    push_batch(&mut tail, 0, Stream::Stdout, &many);
    assert_eq!(tail.len(), TAIL_LINES);
    let kept = tail.last(usize::MAX);
    assert_eq!(kept.first().map(text), Some("l5"));
    assert_eq!(
        kept.last().map(text),
        Some(format!("l{}", TAIL_LINES + 4).as_str())
    );

    let mut tail = Tail::default();
    push_batch(&mut tail, 0, Stream::Stdout, &["old".to_string()]);
    let big: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "b".repeat(MAX_LINE_BYTES - 2)))
        .collect();
    push_batch(&mut tail, 0, Stream::Stderr, &big);
    assert_eq!(tail.len(), TAIL_BYTES / MAX_LINE_BYTES);
    assert_eq!(tail.bytes(), TAIL_BYTES);
    let kept = tail.last(usize::MAX);
    assert!(text(&kept[0]).starts_with("04"), "oldest kept is line 4");
    assert!(text(&kept[15]).starts_with("19"));

    // A line of the batch too old to keep takes everything before it
    // along, even what would still fit.
    let mut tail = Tail::default();
    push_batch(&mut tail, 0, Stream::Stdout, &["old".to_string()]);
    let batch = ["b".repeat(TAIL_BYTES - 5), "s1".repeat(5), "s2".repeat(5)];
    push_batch(&mut tail, 0, Stream::Stdout, &batch);
    let kept = tail.last(usize::MAX);
    assert_eq!(
        kept.iter().map(text).collect::<Vec<_>>(),
        [&batch[1], &batch[2]]
    );
}

/// The ring wraps: lines cut by its end read back whole, in order, and
/// the ring stops growing at what the bounds need.
#[test]
fn lines_read_back_whole_across_the_wrap() {
    let mut tail = Tail::default();
    let mut model = Model::default();
    for i in 0..5000 {
        let line = format!("{i:05}{}", "w".repeat(i % 173));
        tail.push(output(0, Stream::Stdout, line.clone()));
        model.push(output(0, Stream::Stdout, line));
    }
    assert_eq!(tail.last(usize::MAX), Vec::from(model.lines.clone()));
    assert!(tail.ring_size() <= RING_MAX);
    // 1000 lines of at most 178 bytes never need the largest ring.
    assert!(
        tail.ring_size() < 2 * TAIL_LINES * 180,
        "{}",
        tail.ring_size()
    );

    // Longer and longer lines grow the ring while it holds wrapped text.
    for i in 0..3000 {
        let line = format!("{i:05}{}", "g".repeat(i / 12));
        tail.push(output(1, Stream::Stderr, line.clone()));
        model.push(output(1, Stream::Stderr, line));
        if i % 50 == 0 {
            assert_eq!(
                tail.last(usize::MAX),
                Vec::from(model.lines.clone()),
                "line {i}"
            );
        }
    }
    assert_eq!(tail.last(usize::MAX), Vec::from(model.lines));
    assert!(tail.ring_size() <= RING_MAX);
}

/// A line longer than what the ring has left grows it (or evicts, once it
/// is at its largest); a line over `TAIL_BYTES` empties the tail as it did
/// when pushed and evicted at once.
#[test]
fn a_line_larger_than_the_space_left() {
    let mut tail = Tail::default();
    tail.push(output(0, Stream::Stdout, "small".into()));
    let small_ring = tail.ring_size();
    let large = "L".repeat(small_ring * 3);
    tail.push(output(0, Stream::Stdout, large.clone()));
    assert!(tail.ring_size() > small_ring);
    let kept = tail.last(usize::MAX);
    assert_eq!(kept.iter().map(text).collect::<Vec<_>>(), ["small", &large]);

    let mut tail = Tail::default();
    tail.push(output(0, Stream::Stdout, "before".into()));
    tail.push(output(0, Stream::Stdout, "x".repeat(TAIL_BYTES + 1)));
    assert!(tail.is_empty());
    assert_eq!(tail.bytes(), 0);
    tail.push(output(0, Stream::Stdout, "after".into()));
    assert_eq!(tail.last(5).iter().map(text).collect::<Vec<_>>(), ["after"]);

    let mut tail = Tail::default();
    push_batch(&mut tail, 0, Stream::Stdout, &["before".into()]);
    push_batch(
        &mut tail,
        0,
        Stream::Stdout,
        &["kept?".into(), "x".repeat(TAIL_BYTES + 1)],
    );
    assert!(tail.is_empty());
}

/// Random pushes of lines, batches and restart marks of two instances
/// leave the ring holding exactly what the one-`String`-per-line tail
/// held.
#[test]
fn the_ring_keeps_what_the_string_tail_kept() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut tail = Tail::default();
    let mut model = Model::default();
    for step in 0..4000 {
        let instance = next(2) as u32;
        let stream = if next(2) == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let line = |next: &mut dyn FnMut(u64) -> u64| {
            let len = match next(20) {
                0 => next(MAX_LINE_BYTES as u64 * 3) as usize,
                1 => 0,
                _ => next(120) as usize,
            };
            format!("{step}é{}", "r".repeat(len))
        };
        match next(10) {
            0 => {
                let m = mark(instance, step, step + 1);
                tail.push(m.clone());
                model.push(m);
            }
            1..=4 => {
                let l = line(&mut next);
                tail.push(output(instance, stream, l.clone()));
                model.push(output(instance, stream, l));
            }
            _ => {
                let most = if next(8) == 0 { 1500 } else { 40 };
                let count = next(most) as usize;
                let lines: Vec<String> = (0..count).map(|_| line(&mut next)).collect();
                push_batch(&mut tail, instance, stream, &lines);
                for l in lines {
                    model.push(output(instance, stream, l));
                }
            }
        }
        assert_eq!(tail.len(), model.lines.len(), "step {step}");
        assert_eq!(tail.bytes(), model.bytes, "step {step}");
        assert!(tail.ring_size() <= RING_MAX);
        if step % 97 == 0 {
            assert_eq!(tail.last(usize::MAX), Vec::from(model.lines.clone()));
        }
    }
    assert_eq!(tail.last(usize::MAX), Vec::from(model.lines));
}

/// A tail that never held a line has no ring; marks take no ring bytes.
#[test]
fn an_empty_or_marks_only_tail_has_no_ring() {
    let mut tail = Tail::default();
    assert_eq!(tail.ring_size(), 0);
    tail.push(mark(0, 1, 2));
    assert_eq!(tail.ring_size(), 0);
    push_batch(&mut tail, 0, Stream::Stdout, &[]);
    assert_eq!(tail.ring_size(), 0);
    assert_eq!(tail.len(), 1);
}

#[test]
fn lines_of_one_process_end_at_its_restart_marks() {
    let mut tail = Tail::default();
    tail.push(output(0, Stream::Stdout, "a1".into()));
    tail.push(output(1, Stream::Stdout, "other instance".into()));
    tail.push(output(0, Stream::Stderr, "a2".into()));
    tail.push(mark(0, 100, 101));
    tail.push(output(0, Stream::Stdout, "b1".into()));
    tail.push(mark(0, 101, 102));
    tail.push(output(0, Stream::Stdout, "c1".into()));
    tail.push(output(0, Stream::Stdout, "c2".into()));
    let of = |pid, n| -> Vec<String> {
        tail.lines_of_process(0, pid, Some(102), n)
            .into_iter()
            .map(|(_, l)| l.into_owned())
            .collect()
    };
    assert_eq!(of(100, 20), ["a1", "a2"]);
    assert_eq!(of(101, 20), ["b1"]);
    assert_eq!(of(102, 20), ["c1", "c2"]);
    assert_eq!(of(102, 1), ["c2"]);
    assert!(of(99, 20).is_empty());
    let streams: Vec<Stream> = tail
        .lines_of_process(0, 100, Some(102), 20)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(streams, [Stream::Stdout, Stream::Stderr]);
    // Before any restart every line is the one process's.
    let mut first = Tail::default();
    first.push(output(0, Stream::Stdout, "only".into()));
    assert_eq!(first.lines_of_process(0, 7, Some(7), 20).len(), 1);
    assert!(first.lines_of_process(0, 7, None, 20).is_empty());
}

#[test]
fn last_of_one_instance_takes_its_newest_lines() {
    let mut tail = Tail::default();
    for i in 0..10 {
        tail.push(output(i % 2, Stream::Stdout, format!("line {i}")));
    }
    let odd = tail.last_of(2, Some(1));
    let odd: Vec<&str> = odd.iter().map(text).collect();
    assert_eq!(odd, ["line 7", "line 9"]);
    assert_eq!(tail.last_of(3, None).len(), 3);
    assert!(tail.last_of(5, Some(4)).is_empty());
    // The instance filter holds across batches and the wrap.
    let mut tail = Tail::default();
    for round in 0..50 {
        let lines: Vec<String> = (0..100).map(|i| format!("{round}-{i}")).collect();
        push_batch(&mut tail, round % 3, Stream::Stdout, &lines);
    }
    let of_one = tail.last_of(150, Some(1));
    assert_eq!(of_one.len(), 150);
    assert!(of_one.iter().all(|l| l.instance == 1));
    assert_eq!(text(&of_one[149]), "49-99");
    assert_eq!(text(&of_one[0]), "46-50");
}
