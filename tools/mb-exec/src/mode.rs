//! `COPY --chmod` as mb-exec applies it: the parser and the rules live in
//! [`mb_core::mode`] (shared with mb-parse, which refuses a bad value at its line); this only
//! turns a bad value that still reaches mb-exec (a hand-written plan) into its error.

use crate::error::ExecError;

/// A parsed `--chmod` value (see [`mb_core::mode::ModeChange`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange(mb_core::mode::ModeChange);

impl ModeChange {
    /// Parses a `--chmod` value.
    pub fn parse(text: &str) -> Result<ModeChange, ExecError> {
        mb_core::mode::ModeChange::parse(text)
            .map(ModeChange)
            .map_err(|bad| ExecError::BadChmod(bad.0))
    }

    /// The mode an entry with permission bits `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        self.0.apply(mode, is_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_the_shared_rules_and_reports_bad_values_as_exec_errors() {
        assert_eq!(
            ModeChange::parse("u+x")
                .ok()
                .map(|change| change.apply(0o644, false)),
            Some(0o744)
        );
        assert!(matches!(
            ModeChange::parse("bogus"),
            Err(ExecError::BadChmod(text)) if text == "bogus"
        ));
    }
}
