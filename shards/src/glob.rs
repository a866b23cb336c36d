//! Name patterns: a name in which `*` stands for any run of characters (empty included), with no
//! other special character, so every name can also be matched literally. Used by channel history
//! (`history.channels`), channel rules (`[[channels.namespaces]]`) and grants (JWT claims). Matching
//! allocates nothing and is linear in practice.

/// Matches `name` against `pattern`, where `*` is any run of bytes. Greedy with one backtrack point
/// (the last `*`): linear in practice, `pattern.len() × name.len()` at worst.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // After the last `*` seen: (pattern index after it, name index it currently absorbs up to).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((after, absorbed)) => {
                    // Let the `*` take one more byte and try again from there.
                    star = Some((after, absorbed + 1));
                    p = after;
                    n = absorbed + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtracking_finds_the_right_split() {
        assert!(matches(b"*ab*ab", b"xxabyyabab"));
        assert!(matches(b"a*b*c", b"abbbbc"));
        assert!(!matches(b"a*b*c", b"abbbb"));
        assert!(matches(b"**", b""));
        assert!(!matches(b"", b"a"));
        // A worst case stays cheap: 128-byte name, many stars.
        let name = "a".repeat(128);
        assert!(!matches(b"*a*a*a*a*a*a*a*b", name.as_bytes()));
    }
}
