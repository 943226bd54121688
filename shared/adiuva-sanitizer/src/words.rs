//! Word tokens and the shingle index of the protected texts.
//!
//! Words are read in the folded text (see [`crate::fold`]), so that invisible characters,
//! lookalike letters and compatibility forms change neither where a word starts and ends nor
//! its hash; their ranges are given in the original text.
//!
//! A word is a maximal run of alphanumeric characters; everything else (spaces, punctuation,
//! markdown decoration such as `**`, `>`, backticks, bullet dashes, underscores, JSON quotes)
//! separates words. Words are compared lowercased, so matching is case-insensitive and blind to
//! whitespace runs and decoration between words. A JSON escape `\n`, `\t` or `\r` also separates
//! words, so that a prompt pasted into a JSON string still splits into its own words.

use std::collections::HashMap;

use crate::fold::Folded;

/// One word of a text: its byte range in the original text and the hash of its folded,
/// lowercase form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) hash: u64,
}

/// The words of a folded text, with ranges in the original text. Unless `at_eof`, a last word
/// that nothing but the end of the text (or dropped characters) follows is left out: the next
/// chunk may continue it.
pub(crate) fn words(folded: &Folded<'_>, at_eof: bool) -> Vec<Word> {
    let text = folded.text();
    let mut words = tokenize(text);
    if !at_eof && words.last().is_some_and(|w| w.end == text.len()) {
        words.pop();
    }
    for word in &mut words {
        word.start = folded.start(word.start);
        word.end = folded.end(word.end);
    }
    words
}

/// Splits an already folded `text` into words, with ranges in `text`.
fn tokenize(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current: Option<(usize, u64)> = None;
    let mut previous: Option<char> = None;
    for (index, c) in text.char_indices() {
        let is_word =
            c.is_alphanumeric() && !(previous == Some('\\') && matches!(c, 'n' | 't' | 'r'));
        if is_word {
            let (_, hash) = current.get_or_insert((index, FNV_OFFSET));
            for lower in c.to_lowercase() {
                *hash = (*hash ^ u64::from(u32::from(lower))).wrapping_mul(FNV_PRIME);
            }
        } else if let Some((start, hash)) = current.take() {
            words.push(Word {
                start,
                end: index,
                hash: mix(hash),
            });
        }
        previous = Some(c);
    }
    if let Some((start, hash)) = current {
        words.push(Word {
            start,
            end: text.len(),
            hash: mix(hash),
        });
    }
    words
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Base of the polynomial rolling hash over word hashes (odd, so that powers never vanish).
const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64 finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes of every window of `len` consecutive words, by rolling: linear in `hashes.len()`.
fn rolling(hashes: &[u64], len: usize, mut each: impl FnMut(usize, u64)) {
    if len == 0 || hashes.len() < len {
        return;
    }
    let top = (1..len).fold(1u64, |power, _| power.wrapping_mul(BASE));
    let mut hash = hashes[..len]
        .iter()
        .fold(0u64, |acc, &h| acc.wrapping_mul(BASE).wrapping_add(h));
    each(0, hash);
    for start in 1..=hashes.len() - len {
        hash = hash
            .wrapping_sub(hashes[start - 1].wrapping_mul(top))
            .wrapping_mul(BASE)
            .wrapping_add(hashes[start + len - 1]);
        each(start, hash);
    }
}

/// A window of words of the output that is also a window of a protected text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowMatch {
    /// Index of the first word of the window.
    pub(crate) start: usize,
    /// Number of words in the window.
    pub(crate) len: usize,
    /// Index of the protected text (in construction order) the window was found in; logged,
    /// because it names which prompt leaked without repeating it.
    pub(crate) source: u32,
}

/// Every window of `min_run` consecutive words of every protected text, as 64-bit hashes.
///
/// A protected text shorter than `min_run` words is not indexed at all: a phrase that short
/// cannot be told apart from ordinary prose ("Create a task.", "Delete a note."), and matching it
/// would corrupt answers and the user's own titles and notes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShingleIndex {
    /// Window hash -> first protected text that contains it.
    windows: HashMap<u64, u32>,
    /// Words per window.
    len: usize,
}

impl ShingleIndex {
    pub(crate) fn new(protected: &[&str], min_run: usize) -> Self {
        let len = min_run.max(1);
        let mut windows = HashMap::new();
        for (source, text) in protected.iter().enumerate() {
            let hashes: Vec<u64> = tokenize(Folded::new(text).text())
                .iter()
                .map(|w| w.hash)
                .collect();
            let source = u32::try_from(source).unwrap_or(u32::MAX);
            rolling(&hashes, len, |_, hash| {
                windows.entry(hash).or_insert(source);
            });
        }
        ShingleIndex { windows, len }
    }

    /// How many words a match spans (zero when nothing is indexed), so how far back a new word
    /// can extend a match.
    pub(crate) fn max_len(&self) -> usize {
        if self.windows.is_empty() { 0 } else { self.len }
    }

    /// Every window of `hashes` found in a protected text.
    pub(crate) fn matches(&self, hashes: &[u64]) -> Vec<WindowMatch> {
        let mut found = Vec::new();
        if self.windows.is_empty() {
            return found;
        }
        rolling(hashes, self.len, |start, hash| {
            if let Some(&source) = self.windows.get(&hash) {
                found.push(WindowMatch {
                    start,
                    len: self.len,
                    source,
                });
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<&str> {
        words_of(text)
            .iter()
            .map(|w| &text[w.start..w.end])
            .collect()
    }

    fn words_of(text: &str) -> Vec<Word> {
        super::words(&Folded::new(text), true)
    }

    #[test]
    fn decoration_and_escapes_separate_words() {
        assert_eq!(
            words("**Always** > `ask`-first"),
            ["Always", "ask", "first"]
        );
        assert_eq!(words("line one\\nline two"), ["line", "one", "line", "two"]);
        assert_eq!(words("tpl_task_agent"), ["tpl", "task", "agent"]);
        assert_eq!(words("Größe über"), ["Größe", "über"]);
    }

    #[test]
    fn disguised_words_keep_their_original_ranges() {
        assert_eq!(
            words("a pro\u{200B}mpt, ｆｕｌｌ\u{3000}wіdth"),
            ["a", "pro\u{200B}mpt", "ｆｕｌｌ", "wіdth"]
        );
        let plain = words_of("prompt full width");
        let disguised = words_of("pro\u{AD}mpt ｆｕｌｌ wіdth");
        for (a, b) in plain.iter().zip(&disguised) {
            assert_eq!(a.hash, b.hash);
        }
    }

    #[test]
    fn an_unfinished_last_word_waits_for_the_next_chunk() {
        let complete = |text: &str| super::words(&Folded::new(text), false).len();
        assert_eq!(complete("one two"), 1);
        assert_eq!(
            complete("one two\u{200B}"),
            1,
            "a zero-width space may be inside a word"
        );
        assert_eq!(complete("one two "), 2);
    }

    #[test]
    fn short_texts_are_not_indexed() {
        let index = ShingleIndex::new(&["Create a task.", "one two three four"], 4);
        assert_eq!(index.max_len(), 4);
        let hashes: Vec<u64> = words_of("Create a task. one two three four")
            .iter()
            .map(|w| w.hash)
            .collect();
        let found = index.matches(&hashes);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].start, found[0].source), (3, 1));
        assert_eq!(ShingleIndex::new(&["Create a task."], 8).max_len(), 0);
    }

    #[test]
    fn hashes_ignore_case() {
        let a = words_of("Project Manager");
        let b = words_of("PROJECT manager");
        assert_eq!(a[0].hash, b[0].hash);
        assert_eq!(a[1].hash, b[1].hash);
    }

    #[test]
    fn rolling_equals_direct_hash() {
        let hashes: Vec<u64> = (1..20).map(|i| mix(i * 7919)).collect();
        let mut rolled = Vec::new();
        rolling(&hashes, 5, |start, hash| rolled.push((start, hash)));
        assert_eq!(rolled.len(), 15);
        for (start, hash) in rolled {
            let mut direct = Vec::new();
            rolling(&hashes[start..start + 5], 5, |_, h| direct.push(h));
            assert_eq!(direct, [hash]);
        }
    }
}
