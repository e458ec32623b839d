//! What the commands read: a named file or standard input, opened once here so every command refuses the same
//! wrong inputs the same way. A directory or a missing file is an error naming it; the first bytes are checked
//! for encodings emoarc does not read (UTF-16 and UTF-32, with or without a byte-order mark, and binary data),
//! which are refused instead of being scored as garbage text; a UTF-8 byte-order mark is read past with a note,
//! and so are lines ended by a carriage return alone, which would otherwise read as one line.

use anyhow::{bail, Context, Result};
use emoarc::UTF8_BOM;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};
use std::path::Path;

/// Bytes looked at, at most, to recognise the encoding: enough for a few lines.
const SNIFF_BYTES: usize = 4096;

/// An opened input: buffered, positioned after any UTF-8 byte-order mark.
pub struct Input {
    pub reader: BufReader<Box<dyn Read>>,
    /// The file's size in bytes when it is a regular file (for progress), `None` for standard input.
    pub size: Option<u64>,
    /// How messages name it: the path as given, or "standard input".
    pub name: String,
}

/// What the start of an input says about its encoding.
#[derive(Debug, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf8WithBom,
    /// Not UTF-8 text; the reason names what it looks like.
    Unreadable(&'static str),
}

/// Opens `path` (`-` is standard input; `what` names the content in the prompt shown when it is a terminal).
pub fn open(path: &Path, what: &str) -> Result<Input> {
    let (raw, size, name): (Box<dyn Read>, Option<u64>, String) = if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("emoarc: reading {what} from standard input; Ctrl-D to end");
        }
        (Box::new(stdin.lock()), None, "standard input".into())
    } else {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("input file {shown} does not exist (name a file, or - for standard input)")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read input {shown}")),
        };
        if meta.is_dir() {
            bail!("input {shown} is a directory; name a file, or - for standard input");
        }
        let f = File::open(path).with_context(|| format!("cannot open input {shown}"))?;
        (Box::new(f), meta.is_file().then(|| meta.len()), shown.to_string())
    };
    let (head, raw) = read_head(raw).with_context(|| format!("reading {name}"))?;
    let skip = match sniff(&head) {
        Encoding::Utf8 => 0,
        Encoding::Utf8WithBom => {
            eprintln!("emoarc: note: {name} starts with a UTF-8 byte-order mark; reading the text after it");
            UTF8_BOM.len()
        }
        Encoding::Unreadable(looks_like) => bail!("{name} looks like {looks_like}, not UTF-8 text, which emoarc reads"),
    };
    let old_mac = head.contains(&b'\r') && !head.contains(&b'\n');
    // The bytes already read come first, then the rest; a byte-order mark is not part of the text.
    let mut head = std::io::Cursor::new(head);
    head.set_position(skip as u64);
    let mut rest: Box<dyn Read> = Box::new(head.chain(raw));
    if old_mac {
        // Lines ended by a carriage return alone (classic Mac OS files) would otherwise read as one line.
        eprintln!("emoarc: note: {name} ends its lines with carriage returns alone; reading each as a line end");
        rest = Box::new(CrAsLf(rest));
    }
    Ok(Input {
        reader: BufReader::with_capacity(1 << 16, rest),
        size,
        name,
    })
}

/// Reads the input's first bytes, to judge its encoding: up to [`SNIFF_BYTES`], and no further than the end
/// of the first line once there are a few bytes (so a person typing at a terminal is not kept waiting). Returns
/// them with the reader, positioned after them.
fn read_head(mut raw: Box<dyn Read>) -> std::io::Result<(Vec<u8>, Box<dyn Read>)> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut chunk = [0u8; 512];
    let mut line_ended = false;
    while head.len() < SNIFF_BYTES && !(line_ended && head.len() >= 4) {
        let want = chunk.len().min(SNIFF_BYTES - head.len());
        match raw.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                line_ended |= chunk[..n].contains(&b'\n');
                head.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((head, raw))
}

/// A reader that turns every carriage return into a line feed (for inputs whose lines end with `\r` alone).
struct CrAsLf<R>(R);

impl<R: Read> Read for CrAsLf<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        buf[..n].iter_mut().filter(|b| **b == b'\r').for_each(|b| *b = b'\n');
        Ok(n)
    }
}

/// Recognises the encoding from the first bytes. UTF-8 text holds no NUL bytes; UTF-16 text of the Latin
/// alphabet is about half NULs, all at odd offsets (little-endian) or all at even ones (big-endian).
fn sniff(head: &[u8]) -> Encoding {
    if head.starts_with(b"\xFF\xFE\x00\x00") || head.starts_with(b"\x00\x00\xFE\xFF") {
        return Encoding::Unreadable("UTF-32 (it starts with a UTF-32 byte-order mark; convert it: iconv -f UTF-32 -t UTF-8)");
    }
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Encoding::Unreadable("UTF-16 (it starts with a UTF-16 byte-order mark; convert it: iconv -f UTF-16 -t UTF-8)");
    }
    if head.starts_with(UTF8_BOM) {
        return Encoding::Utf8WithBom;
    }
    let zeros_at = |parity: usize| head.iter().skip(parity).step_by(2).filter(|&&b| b == 0).count();
    let (even, odd) = (zeros_at(0), zeros_at(1));
    if even + odd == 0 {
        return Encoding::Utf8;
    }
    let pairs = head.len() / 2;
    if odd * 3 >= pairs && even == 0 {
        Encoding::Unreadable(
            "UTF-16 little-endian without a byte-order mark (every other byte is zero; convert it: iconv -f \
             UTF-16LE -t UTF-8)",
        )
    } else if even * 3 >= pairs && odd == 0 {
        Encoding::Unreadable(
            "UTF-16 big-endian without a byte-order mark (every other byte is zero; convert it: iconv -f UTF-16BE \
             -t UTF-8)",
        )
    } else {
        Encoding::Unreadable("binary data (it holds NUL bytes; a compressed or binary file?)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() })
            .collect()
    }

    #[test]
    fn recognises_what_is_not_utf8() {
        assert_eq!(sniff(b"hello\nworld\n"), Encoding::Utf8);
        assert_eq!(sniff("caf\u{e9} \u{1f621}\n".as_bytes()), Encoding::Utf8);
        assert_eq!(sniff(b""), Encoding::Utf8);
        assert_eq!(sniff(b"\xEF\xBB\xBFhello"), Encoding::Utf8WithBom);
        let unreadable = |bytes: &[u8]| match sniff(bytes) {
            Encoding::Unreadable(why) => why,
            other => panic!("{other:?} for {bytes:?}"),
        };
        assert!(unreadable(&[b"\xFF\xFE".as_slice(), &utf16("hi", false)].concat()).starts_with("UTF-16 ("));
        assert!(unreadable(&[b"\xFE\xFF".as_slice(), &utf16("hi", true)].concat()).starts_with("UTF-16 ("));
        assert!(unreadable(b"\xFF\xFE\x00\x00h\x00\x00\x00").starts_with("UTF-32"));
        assert!(unreadable(&utf16("hello there\nI am angry\n", false)).contains("little-endian"));
        assert!(unreadable(&utf16("hello there\nI am angry\n", true)).contains("big-endian"));
        assert!(unreadable(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03text").starts_with("binary"));
    }

    #[test]
    fn carriage_returns_alone_become_line_ends() {
        let mut out = String::new();
        CrAsLf(b"one\rtwo\rthree".as_slice()).read_to_string(&mut out).unwrap();
        assert_eq!(out, "one\ntwo\nthree");
    }

    #[test]
    fn short_reads_are_gathered_before_judging_and_nothing_is_lost() {
        // A reader that hands out one byte per read, as a slow pipe may.
        struct Trickle(std::io::Cursor<Vec<u8>>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let end = buf.len().min(1);
                self.0.read(&mut buf[..end])
            }
        }
        let trickle = |bytes: Vec<u8>| Box::new(Trickle(std::io::Cursor::new(bytes))) as Box<dyn Read>;
        let text = "first line\nsecond line\n".repeat(300);
        let (head, rest) = read_head(trickle(text.clone().into_bytes())).unwrap();
        assert_eq!(head, b"first line\n", "stops at the first line's end");
        assert_eq!(sniff(&head), Encoding::Utf8);
        let mut all = String::from_utf8(head).unwrap();
        BufReader::new(rest).read_to_string(&mut all).unwrap();
        assert_eq!(all, text);
        // A long first line is judged on its first SNIFF_BYTES.
        let (head, _) = read_head(trickle(vec![b'a'; 3 * SNIFF_BYTES])).unwrap();
        assert_eq!(head.len(), SNIFF_BYTES);
        // UTF-16 trickled in one byte at a time is still recognised.
        let (head, _) = read_head(trickle(utf16("hello there\nI am angry\n", false))).unwrap();
        assert!(matches!(sniff(&head), Encoding::Unreadable(_)), "{head:?}");
    }
}
