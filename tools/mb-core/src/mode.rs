//! `COPY --chmod` / `ADD --chmod` values: octal (`0644`, `755`, at most `07777`) or symbolic
//! (`u+x,go-w`, `a=rX`) as chmod(1) reads them, parsed once so that mb-parse can refuse a bad
//! value at its line and mb-exec applies exactly what was accepted.
//!
//! An octal mode replaces the permission bits of every copied entry, directories included, as
//! BuildKit does; a symbolic one is applied to each entry's own mode, so `+X` can tell
//! directories from files. Not for other modes (RUN --mount `mode=` is plain octal).

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// Set these bits.
    Octal(u32),
    /// Apply these clauses in order.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: Vec<char>,
}

/// A `--chmod` value that is neither octal (up to 07777) nor symbolic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod `{0}`: expected octal up to 07777 like 0644, or symbolic like u+x,go-w")]
pub struct BadMode(pub String);

const USER_BITS: u32 = 0o4700;
const GROUP_BITS: u32 = 0o2070;
const OTHER_BITS: u32 = 0o1007;

impl ModeChange {
    /// Parses a `--chmod` value.
    pub fn parse(text: &str) -> Result<ModeChange, BadMode> {
        let bad = || BadMode(text.to_string());
        if !text.is_empty() && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| bad())?;
            return if mode <= 0o7777 {
                Ok(ModeChange::Octal(mode))
            } else {
                Err(bad())
            };
        }
        let mut clauses = Vec::new();
        for part in text.split(',') {
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_text, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_text.chars() {
                who |= match c {
                    'u' => USER_BITS,
                    'g' => GROUP_BITS,
                    'o' => OTHER_BITS,
                    'a' => USER_BITS | GROUP_BITS | OTHER_BITS,
                    _ => return Err(bad()),
                };
            }
            if who == 0 {
                who = USER_BITS | GROUP_BITS | OTHER_BITS;
            }
            // Several operators may follow one `who`, as in `u+r-w`.
            let mut chars = rest.chars().peekable();
            while let Some(op) = chars.next() {
                let mut perms = Vec::new();
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    if !matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't') {
                        return Err(bad());
                    }
                    perms.push(c);
                    chars.next();
                }
                clauses.push(Clause { who, op, perms });
            }
        }
        Ok(ModeChange::Symbolic(clauses))
    }

    /// The mode an entry with permission bits `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeChange::Octal(bits) => *bits,
            ModeChange::Symbolic(clauses) => clauses.iter().fold(mode & 0o7777, |mode, clause| {
                let mut bits = 0;
                for perm in &clause.perms {
                    bits |= match perm {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                        's' => 0o6000,
                        't' => 0o1000,
                        _ => 0,
                    };
                }
                let bits = bits & clause.who;
                match clause.op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    _ => (mode & !(clause.who & 0o7777)) | bits,
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, mode: u32, is_dir: bool) -> u32 {
        ModeChange::parse(text)
            .map(|change| change.apply(mode, is_dir))
            .unwrap_or(u32::MAX)
    }

    #[test]
    fn octal_replaces_the_bits() {
        assert_eq!(apply("0644", 0o755, false), 0o644);
        assert_eq!(apply("755", 0o600, true), 0o755);
        assert_eq!(apply("4755", 0o600, false), 0o4755);
    }

    #[test]
    fn symbolic_modes_change_only_what_they_name() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("go-w", 0o666, false), 0o644);
        assert_eq!(apply("a=r", 0o755, false), 0o444);
        assert_eq!(apply("+x", 0o600, false), 0o711);
        assert_eq!(apply("u=rw,g=r,o=", 0o777, false), 0o640);
        assert_eq!(apply("u+r-w", 0o200, false), 0o400);
    }

    #[test]
    fn capital_x_applies_to_directories_and_executables_only() {
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o744, false), 0o755);
        assert_eq!(apply("a+X", 0o700, true), 0o711);
    }

    #[test]
    fn nonsense_is_rejected() {
        for text in [
            "", "99", "77777", "10000", "64a", "u+q", "z+x", "rwx", "bogus",
        ] {
            assert_eq!(
                ModeChange::parse(text),
                Err(BadMode(text.to_string())),
                "{text}"
            );
        }
        assert_eq!(
            BadMode("bogus".into()).to_string(),
            "invalid --chmod `bogus`: expected octal up to 07777 like 0644, or symbolic like u+x,go-w"
        );
    }
}
