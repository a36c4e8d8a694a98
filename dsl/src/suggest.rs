//! "Did you mean ...?" suggestions for misspelled names.

/// The candidate closest to `word` (case-insensitive), if it is close enough
/// to be a plausible typo: a small edit distance relative to the length.
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&word, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(distance, c)| distance > 0 && distance <= max_distance(c.len().min(word.len())))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, c)| c)
}

fn max_distance(len: usize) -> usize {
    match len {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_but_not_unrelated_words() {
        let windows = [
            "TumblingWindow",
            "HoppingWindow",
            "SlidingWindow",
            "SessionWindow",
        ];
        assert_eq!(closest("TumblingWindw", windows), Some("TumblingWindow"));
        assert_eq!(closest("hopingwindow", windows), Some("HoppingWindow"));
        assert_eq!(closest("GroupWindow", windows), None);
        assert_eq!(closest("FORM", ["FROM", "INTO"]), Some("FROM"));
        assert_eq!(closest("x", ["FROM"]), None);
    }
}
