//! How big a binary plist is once read, checked before the `plist` crate
//! builds a value from it. A binary plist refers to its objects by
//! number, so one array can name the same array many times over: a few
//! hundred bytes that expand to billions of values (as YAML aliases can).
//! And a value nested thousands deep overflows the stack when
//! `plist::Value` is dropped. So the object table is walked here first,
//! counting each object once with what it expands to, with the same
//! bounds the YAML reader keeps. (An XML plist has no references, so the
//! input cap bounds its values; its nesting is bounded by `key_lines`'
//! scan, which knows lines.) The crate's own event stream would do, but
//! it is public only behind a feature the crate calls unstable.
//!
//! The layout read (Apple's CFBinaryPList.c): a 32-byte trailer at the
//! end holds the size of an offset and of an object reference, the
//! number of objects, the top object and where the offset table starts;
//! each object begins with a marker whose high four bits are its type and
//! low four its length (15: the length follows as an integer object).
//! Arrays and sets hold `length` references, dictionaries `length` keys
//! then `length` values.
//!
//! A launchd job is a dictionary a few levels deep with at most some
//! hundreds of values, far inside both bounds.

/// Nesting deeper than this is refused.
pub const MAX_DEPTH: usize = 64;
/// More values than this (each element, key and value counts) is refused.
pub const MAX_VALUES: u64 = 1_000_000;

/// Why a plist is refused (a binary plist has no lines to name).
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub message: String,
}

/// Walks the objects of the binary plist `bytes`. A malformed plist (a
/// reference out of range, a cycle) is not an error here: the walk stops,
/// and the crate's parse that follows reports it in its own words.
pub fn check_binary(bytes: &[u8]) -> Result<(), TooLarge> {
    match Table::read(bytes) {
        Some(table) => table.check(),
        None => Ok(()),
    }
}

struct Table<'a> {
    bytes: &'a [u8],
    offset_size: usize,
    ref_size: usize,
    objects: usize,
    top: usize,
    offsets_at: usize,
}

/// A big-endian unsigned integer of `bytes` (at most 8 of them).
fn be(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)))
}

impl<'a> Table<'a> {
    fn read(bytes: &'a [u8]) -> Option<Table<'a>> {
        let trailer = bytes.get(bytes.len().checked_sub(32)?..)?;
        let offset_size = usize::from(trailer[6]);
        let ref_size = usize::from(trailer[7]);
        let objects = usize::try_from(be(&trailer[8..16])?).ok()?;
        let top = usize::try_from(be(&trailer[16..24])?).ok()?;
        let offsets_at = usize::try_from(be(&trailer[24..32])?).ok()?;
        let table_len = objects.checked_mul(offset_size)?;
        if offset_size == 0 || ref_size == 0 || top >= objects {
            return None;
        }
        if offsets_at.checked_add(table_len)? > bytes.len() {
            return None;
        }
        Some(Table {
            bytes,
            offset_size,
            ref_size,
            objects,
            top,
            offsets_at,
        })
    }

    fn sized(&self, at: usize, size: usize) -> Option<usize> {
        let n = be(self.bytes.get(at..at.checked_add(size)?)?)?;
        usize::try_from(n).ok()
    }

    /// The objects `object` refers to, `None` inside for a scalar.
    fn children(&self, object: usize) -> Option<Option<Vec<usize>>> {
        let at = self.sized(
            self.offsets_at + object * self.offset_size,
            self.offset_size,
        )?;
        let marker = *self.bytes.get(at)?;
        let per_entry = match marker >> 4 {
            0xa | 0xc => 1,
            0xd => 2,
            _ => return Some(None),
        };
        let (len, refs_at) = match marker & 0x0f {
            0x0f => {
                let int = *self.bytes.get(at + 1)?;
                if int >> 4 != 1 || int & 0x0f > 3 {
                    return None;
                }
                let size = 1usize << (int & 0x0f);
                (self.sized(at + 2, size)?, at + 2 + size)
            }
            len => (usize::from(len), at + 1),
        };
        let count = len.checked_mul(per_entry)?;
        if count.checked_mul(self.ref_size)? > self.bytes.len() {
            return None;
        }
        (0..count)
            .map(|i| {
                let child = self.sized(refs_at + i * self.ref_size, self.ref_size)?;
                (child < self.objects).then_some(child)
            })
            .collect::<Option<Vec<usize>>>()
            .map(Some)
    }

    fn check(&self) -> Result<(), TooLarge> {
        const UNSEEN: u8 = 0;
        const OPEN: u8 = 1;
        const DONE: u8 = 2;
        let mut state = vec![UNSEEN; self.objects];
        // What each finished object expands to, itself included.
        let mut values = vec![0u64; self.objects];
        struct Frame {
            object: usize,
            children: Vec<usize>,
            next: usize,
            values: u64,
        }
        let mut stack: Vec<Frame> = Vec::new();
        // Opens `object`: a container becomes a frame (false when the
        // file is malformed there), a scalar is done at once.
        let open = |object: usize, stack: &mut Vec<Frame>, state: &mut [u8], values: &mut [u64]| {
            match self.children(object) {
                None => false,
                Some(None) => {
                    state[object] = DONE;
                    values[object] = 1;
                    true
                }
                Some(Some(children)) => {
                    state[object] = OPEN;
                    stack.push(Frame {
                        object,
                        values: 1,
                        children,
                        next: 0,
                    });
                    true
                }
            }
        };
        if !open(self.top, &mut stack, &mut state, &mut values) {
            return Ok(());
        }
        loop {
            if stack.len() > MAX_DEPTH {
                return Err(TooLarge {
                    message: format!("nested more than {MAX_DEPTH} levels deep"),
                });
            }
            // What is expanded so far: the finished children each frame
            // has added up.
            if stack.iter().fold(0u64, |n, f| n.saturating_add(f.values)) > MAX_VALUES {
                return Err(too_many());
            }
            let Some(frame) = stack.last_mut() else { break };
            let Some(&child) = frame.children.get(frame.next) else {
                let (object, count) = (frame.object, frame.values);
                stack.pop();
                state[object] = DONE;
                values[object] = count;
                if let Some(parent) = stack.last_mut() {
                    parent.values = parent.values.saturating_add(count);
                }
                continue;
            };
            frame.next += 1;
            match state[child] {
                DONE => frame.values = frame.values.saturating_add(values[child]),
                // A cycle: the crate refuses it.
                OPEN => return Ok(()),
                _ => {
                    if !open(child, &mut stack, &mut state, &mut values) {
                        return Ok(());
                    }
                    // A scalar is done at once (a container is open): it
                    // counts in the frame that refers to it.
                    if state[child] == DONE {
                        if let Some(frame) = stack.last_mut() {
                            frame.values = frame.values.saturating_add(1);
                        }
                    }
                }
            }
        }
        if values[self.top] > MAX_VALUES {
            return Err(too_many());
        }
        Ok(())
    }
}

fn too_many() -> TooLarge {
    TooLarge {
        message: format!("more than {MAX_VALUES} values (a launchd job has some dozens)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plist::Value;
    use std::io::Cursor;

    fn binary(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        value
            .to_writer_binary(&mut out)
            .unwrap_or_else(|e| panic!("write a binary plist: {e}"));
        out
    }

    /// A job dictionary holding `inner` under `Deep`.
    fn job(inner: Value) -> Value {
        let mut dict = plist::Dictionary::new();
        dict.insert("Label".into(), Value::String("x".into()));
        dict.insert("Deep".into(), inner);
        Value::Dictionary(dict)
    }

    fn nested(depth: usize) -> Value {
        let mut value = Value::Array(Vec::new());
        for _ in 1..depth {
            value = Value::Array(vec![value]);
        }
        job(value)
    }

    #[test]
    fn nesting_is_bounded() {
        // The job's dictionary is the first level.
        assert_eq!(check_binary(&binary(&nested(MAX_DEPTH - 1))), Ok(()));
        let err = check_binary(&binary(&nested(MAX_DEPTH))).err();
        assert_eq!(
            err.map(|e| e.message),
            Some(format!("nested more than {MAX_DEPTH} levels deep"))
        );
    }

    /// A binary plist by hand: `{Label = "x"; Deep = A6}` where `A0` is
    /// `["lol"]` and each `A(k+1)` is 16 references to `A(k)`. A few
    /// hundred bytes that name 16^6 strings.
    fn shared_bomb(levels: u8) -> Vec<u8> {
        let mut objects: Vec<Vec<u8>> = vec![b"\x53lol".to_vec()];
        for k in 0..levels {
            let mut array = vec![0xaf, 0x10, 16];
            array.extend(std::iter::repeat_n(k, 16));
            objects.push(array);
        }
        let deep = levels;
        objects.push(b"\x55Label".to_vec());
        objects.push(b"\x51x".to_vec());
        objects.push(b"\x54Deep".to_vec());
        objects.push(vec![0xd2, levels + 1, levels + 3, levels + 2, deep]);
        let mut out = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for object in &objects {
            offsets.push(out.len() as u16);
            out.extend(object);
        }
        let table = out.len() as u64;
        for offset in offsets {
            out.extend(offset.to_be_bytes());
        }
        out.extend([0u8; 6]);
        out.extend([2u8, 1]); // offset size, reference size
        out.extend((objects.len() as u64).to_be_bytes());
        out.extend(((objects.len() - 1) as u64).to_be_bytes());
        out.extend(table.to_be_bytes());
        out
    }

    #[test]
    fn shared_objects_count_every_time_they_are_reached() {
        // Two levels are a fine plist: the bomb is the hand-made one.
        assert_eq!(check_binary(&shared_bomb(2)), Ok(()));
        let value = Value::from_reader(Cursor::new(shared_bomb(2)))
            .unwrap_or_else(|e| panic!("a valid binary plist: {e}"));
        let deep = value
            .as_dictionary()
            .and_then(|d| d.get("Deep"))
            .and_then(Value::as_array)
            .map(Vec::len);
        assert_eq!(deep, Some(16));

        let err = check_binary(&shared_bomb(6)).err();
        assert_eq!(
            err.map(|e| e.message),
            Some(format!(
                "more than {MAX_VALUES} values (a launchd job has some dozens)"
            ))
        );
    }

    #[test]
    fn malformed_input_is_left_to_the_parser() {
        assert_eq!(check_binary(b"bplist00 garbage"), Ok(()));
    }
}
