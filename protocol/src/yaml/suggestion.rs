//! "Did you mean …": the allowed name closest to a misspelt one, so that an unknown field
//! or value names what the author most likely meant.

/// Largest number of edits (insert, delete, substitute a character) for a suggestion.
pub const MAX_EDITS: usize = 2;

/// The candidate closest to `written` within [`MAX_EDITS`] edits; the first on ties.
pub fn closest<'a>(written: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (*c, edit_distance(c, written)))
        .filter(|(_, d)| *d <= MAX_EDITS)
        .min_by_key(|(_, d)| *d)
        .map(|(c, _)| c)
}

/// ` (did you mean `NAME`?)`, or nothing: written right after the problem in a message.
pub fn hint(suggestion: Option<&str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance, hint};

    #[test]
    fn distances() {
        assert_eq!(edit_distance("name", "name"), 0);
        assert_eq!(edit_distance("name", "nmae"), 2);
        assert_eq!(edit_distance("timeout", "timout"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn the_closest_candidate_within_two_edits() {
        let fields = ["name", "description", "inputs", "outputs", "timeout"];
        assert_eq!(closest("nmae", &fields), Some("name"));
        assert_eq!(closest("input", &fields), Some("inputs"));
        assert_eq!(closest("timout", &fields), Some("timeout"));
        assert_eq!(closest("price", &fields), None);
        // Ties go to the first candidate.
        assert_eq!(closest("lt", &["gt", "lte"]), Some("gt"));
    }

    #[test]
    fn the_hint_is_empty_without_a_suggestion() {
        assert_eq!(hint(Some("name")), " (did you mean `name`?)");
        assert_eq!(hint(None), "");
    }
}
