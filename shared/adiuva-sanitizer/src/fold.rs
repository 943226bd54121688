//! Folding for matching: the detectors read a folded copy of the text, so that a leak disguised
//! with invisible characters, lookalike letters or compatibility forms is still recognised,
//! while the text that is sent stays exactly as written.
//!
//! Each char of the original is folded on its own, into zero or more chars:
//! 1. format characters and the other default-ignorable code points (zero-width space and
//!    joiners, word joiner, byte order mark, soft hyphen, bidirectional controls, variation
//!    selectors, tag characters) are dropped, so they no longer split a word;
//! 2. the compatibility decomposition (NFKD) turns fullwidth forms, mathematical letters,
//!    ligatures, circled, superscript and small-form letters into plain ones, and the combining
//!    marks it leaves (accents, stacked diacritics) are dropped. This folds at least as much as
//!    NFKC does, since the NFKD of NFKC(x) is NFKD(x);
//! 3. a table of common confusables turns Cyrillic, Greek, Armenian and Latin letters that look
//!    like ASCII letters into the ASCII letter they imitate.
//!
//! Folding char by char keeps it linear, needs no lookahead (a stream chunk folds the same alone
//! as inside the whole text, since chunks end on char boundaries), and gives every folded char
//! exactly one original char, so a range found in the folded text maps back to a range of the
//! original. Folding both the protected texts and the output the same way is what matters for
//! matching; the folded text is never shown.

use std::borrow::Cow;
use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A text and its folded copy, with the way back.
#[derive(Debug)]
pub(crate) struct Folded<'a> {
    original: &'a str,
    folded: Cow<'a, str>,
    /// For each byte of `folded`, where the original char it came from starts; `None` when the
    /// folded text is the original (ASCII text folds to itself).
    origin: Option<Vec<usize>>,
}

impl<'a> Folded<'a> {
    pub(crate) fn new(original: &'a str) -> Self {
        if original.is_ascii() {
            return Folded {
                original,
                folded: Cow::Borrowed(original),
                origin: None,
            };
        }
        let mut folded = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        for (start, c) in original.char_indices() {
            fold_char(c, |out| {
                folded.push(out);
                origin.resize(folded.len(), start);
            });
        }
        Folded {
            original,
            folded: Cow::Owned(folded),
            origin: Some(origin),
        }
    }

    /// The folded text, for the detectors.
    pub(crate) fn text(&self) -> &str {
        &self.folded
    }

    /// The original position of a folded position where something starts: the start of the
    /// original char the folded char at `at` came from.
    pub(crate) fn start(&self, at: usize) -> usize {
        match &self.origin {
            None => at,
            Some(origin) => origin.get(at).copied().unwrap_or(self.original.len()),
        }
    }

    /// The original position of a folded position where something ends: the end of the
    /// original char the folded char before `at` came from. Dropped chars after it stay outside.
    pub(crate) fn end(&self, at: usize) -> usize {
        match &self.origin {
            None => at,
            Some(_) if at == 0 => 0,
            Some(origin) => {
                let start = origin[at - 1];
                let len = self.original[start..]
                    .chars()
                    .next()
                    .map_or(0, char::len_utf8);
                start + len
            }
        }
    }

    /// The original range of a folded range.
    pub(crate) fn range(&self, range: Range<usize>) -> Range<usize> {
        self.start(range.start)..self.end(range.end)
    }
}

/// Folds one char, giving each folded char to `emit`.
fn fold_char(c: char, mut emit: impl FnMut(char)) {
    if c.is_ascii() {
        emit(c);
        return;
    }
    if is_ignorable(c) {
        return;
    }
    decompose_compatible(c, |part| {
        if part.is_ascii() {
            emit(part);
        } else if !is_combining_mark(part) && !is_ignorable(part) {
            emit(confusable(part).unwrap_or(part));
        }
    });
}

/// Format characters (general category Cf) and the other default-ignorable code points: they
/// are invisible, so a disguise can put them inside words.
fn is_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD // soft hyphen
            | 0x034F // combining grapheme joiner
            | 0x0600..=0x0605 // Arabic number signs
            | 0x061C // Arabic letter mark
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160 // Hangul fillers
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F // Mongolian variation selectors and vowel separator
            | 0x200B..=0x200F // zero-width space, non-joiner, joiner; direction marks
            | 0x202A..=0x202E // bidirectional embeddings and overrides
            | 0x2060..=0x206F // word joiner, invisible operators, bidirectional isolates
            | 0x3164 // Hangul filler
            | 0xFE00..=0xFE0F // variation selectors
            | 0xFEFF // zero-width no-break space, byte order mark
            | 0xFFA0 // halfwidth Hangul filler
            | 0xFFF0..=0xFFFB // interlinear annotation
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F // Egyptian hieroglyph format controls
            | 0x1BCA0..=0x1BCA3 // shorthand format controls
            | 0x1D173..=0x1D17A // musical symbol format controls
            | 0xE0000..=0xE0FFF // tags and variation selectors supplement
    )
}

/// The ASCII letter a lookalike imitates (after decomposition, so accented forms are covered by
/// their base letter).
fn confusable(c: char) -> Option<char> {
    let ascii = match c {
        // Cyrillic capitals.
        'А' => 'A',
        'В' => 'B',
        'Е' => 'E',
        'К' => 'K',
        'М' => 'M',
        'Н' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'У' | 'Ү' => 'Y',
        'Х' => 'X',
        'Ѕ' => 'S',
        'І' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        'Һ' => 'H',
        // Cyrillic small letters.
        'а' => 'a',
        'е' => 'e',
        'к' => 'k',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'у' | 'ү' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'і' => 'i',
        'ј' => 'j',
        'һ' => 'h',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        // Greek capitals.
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        'Ϲ' => 'C',
        'Ϳ' => 'J',
        // Greek small letters.
        'α' => 'a',
        'γ' => 'y',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'υ' => 'u',
        'χ' => 'x',
        'ϲ' => 'c',
        'ϳ' => 'j',
        // Armenian.
        'հ' => 'h',
        'ո' => 'n',
        'ս' => 'u',
        'օ' => 'o',
        'Օ' => 'O',
        // Latin letters outside ASCII.
        'ı' | 'ɩ' => 'i',
        'ȷ' => 'j',
        'ɑ' => 'a',
        'ɡ' => 'g',
        'ǀ' => 'l',
        _ => return None,
    };
    Some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(text: &str) -> String {
        Folded::new(text).text().to_owned()
    }

    #[test]
    fn ascii_folds_to_itself() {
        let text = "Create a task {\"x\": 1} <thinking>";
        assert_eq!(fold(text), text);
        assert!(Folded::new(text).origin.is_none());
    }

    #[test]
    fn disguises_fold_to_plain_letters() {
        assert_eq!(
            fold("pro\u{200B}mpt in\u{00AD}struc\u{2060}tions\u{FEFF}"),
            "prompt instructions"
        );
        assert_eq!(fold("рrоmрt"), "prompt");
        assert_eq!(fold("ΑΒΟΥΤ"), "ABOYT");
        assert_eq!(fold("ｐｒｏｍｐｔ\u{3000}ｔｅｘｔ"), "prompt text");
        assert_eq!(fold("𝐩𝐫𝐨𝐦𝐩𝐭 ﬁle"), "prompt file");
        assert_eq!(fold("p\u{0336}r\u{0336}o\u{0301}mpt café"), "prompt cafe");
    }

    #[test]
    fn ranges_map_back_to_the_original() {
        let text = "ab ｃ\u{200B}ｄ ﬁx";
        let folded = Folded::new(text);
        assert_eq!(folded.text(), "ab cd fix");
        let cd = folded.text().find("cd").unwrap();
        let range = folded.range(cd..cd + 2);
        assert_eq!(&text[range], "ｃ\u{200B}ｄ");
        // A word that starts inside an expanded char starts with that char.
        let ix = folded.text().find("ix").unwrap();
        assert_eq!(&text[folded.range(ix..ix + 2)], "ﬁx");
        assert_eq!(folded.start(folded.text().len()), text.len());
        assert_eq!(folded.end(0), 0);
    }
}
