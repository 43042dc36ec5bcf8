//! Reading a registry file (`docs/registry-format.md`) on every core: a block of whole
//! lines at a time (a few MiB ending at a newline), the block's lines checked in
//! parallel (each line needs nothing of the others), then admitted in file order (line
//! numbers, duplicate card ids), so that a bad file is refused naming the same line a
//! sequential read would. Shared by `kofu registry import` and an embedded node's
//! `KOFU_REGISTRY_FILE`; the rules themselves are `kofu_core::registry_file`'s.

use std::io::Read;

use kofu_core::records::ResidentRecord;
use kofu_core::registry_file::{FieldError, LineError, Reader, check_line, recheck_line};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

/// Bytes read per block: thousands of lines, enough to keep every core busy between
/// the sequential steps, little enough to hold a few at once.
const BLOCK: usize = 4 << 20;

/// A file's bytes, a block of whole lines at a time, and the SHA-256 of what was read.
pub struct Blocks<R> {
    input: R,
    /// The start of a line the last block did not end.
    carry: Vec<u8>,
    sha: Sha256,
}

impl<R: Read> Blocks<R> {
    pub fn new(input: R) -> Blocks<R> {
        Blocks {
            input,
            carry: Vec::new(),
            sha: Sha256::new(),
        }
    }

    /// The next block: whole lines, each with its `\n` (the file's last line may lack
    /// it); `None` at the end.
    pub fn next_block(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut block = std::mem::take(&mut self.carry);
        loop {
            let start = block.len();
            block.resize(start + BLOCK, 0);
            let n = self.input.read(&mut block[start..])?;
            block.truncate(start + n);
            if n == 0 {
                if block.is_empty() {
                    return Ok(None);
                }
                break;
            }
            // A line longer than a block (refused later, as over 64 KiB) makes the
            // block grow until it ends.
            if let Some(end) = block[start..].iter().rposition(|b| *b == b'\n') {
                self.carry = block.split_off(start + end + 1);
                break;
            }
        }
        self.sha.update(&block);
        Ok(Some(block))
    }

    /// The SHA-256 of every byte read.
    pub fn digest(self) -> [u8; 32] {
        self.sha.finalize().into()
    }
}

/// The lines of a block, without their `\n`.
fn lines(block: &[u8]) -> Vec<&[u8]> {
    let body = block.strip_suffix(b"\n").unwrap_or(block);
    body.split(|b| *b == b'\n').collect()
}

/// One line checked: blank (`None`), or its card's digest and what was kept of it.
type Checked<T> = Result<Option<([u8; 32], T)>, FieldError>;

/// Checks every line of `block` on every core, keeps what `keep` makes of each record,
/// then admits the lines in order into `reader`; `Err` names the first bad line.
/// `again`: the block's bytes passed this check before (see `recheck_line`).
pub fn check_block<T: Send>(
    reader: &mut Reader,
    block: &[u8],
    again: bool,
    keep: impl Fn(ResidentRecord) -> T + Sync,
) -> Result<Vec<T>, LineError> {
    let check = if again { recheck_line } else { check_line };
    let checked: Vec<Checked<T>> = lines(block)
        .par_iter()
        .with_min_len(64)
        .map(|line| check(line).map(|r| r.map(|r| (r.card_id.digest_bytes(), keep(r)))))
        .collect();
    let mut out = Vec::with_capacity(checked.len());
    for line in checked {
        match line {
            Ok(Some((digest, kept))) => {
                reader.admit(Ok(Some(digest)))?;
                out.push(kept);
            }
            Ok(None) => {
                reader.admit(Ok(None))?;
            }
            Err(e) => {
                reader.admit(Err(e))?;
            }
        }
    }
    Ok(out)
}

/// Every record of a whole file read from `input`, or its first bad line (`Ok(Err)`);
/// `Err` when reading failed.
pub fn read_all(input: impl Read) -> std::io::Result<Result<Vec<ResidentRecord>, LineError>> {
    let mut blocks = Blocks::new(input);
    let mut reader = Reader::new();
    let mut records = Vec::new();
    while let Some(block) = blocks.next_block()? {
        match check_block(&mut reader, &block, false, |r| r) {
            Ok(mut some) => records.append(&mut some),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size end at line ends, and together are the input.
    #[test]
    fn blocks_end_at_line_ends() {
        let long = "x".repeat(BLOCK + 10);
        let text = format!("a\n\n{long}\nb\r\nc");
        let mut blocks = Blocks::new(text.as_bytes());
        let mut all = Vec::new();
        while let Some(b) = blocks.next_block().expect("read") {
            assert!(
                b.ends_with(b"\n") || b.ends_with(b"c"),
                "a block ends mid-line"
            );
            all.extend(b);
        }
        assert_eq!(all, text.as_bytes());
        let want: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(blocks.digest(), want);
        assert!(Blocks::new(&b""[..]).next_block().expect("read").is_none());
        assert_eq!(lines(b"a\n\nb\n"), [&b"a"[..], b"", b"b"]);
        assert_eq!(lines(b"a"), [&b"a"[..]]);
    }
}
