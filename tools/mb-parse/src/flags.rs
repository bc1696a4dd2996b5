//! Which `--flags` each instruction takes, and checking the flags of one instruction: unknown,
//! duplicate, missing values, and flags that exist in Docker but are not supported yet.

use mb_core::graph::Flag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--x`, `--x=true`, `--x=false`.
    Bool,
    /// `--x=value`, at most once.
    Value,
    /// `--x=value`, any number of times.
    Repeated,
}

struct Spec {
    name: &'static str,
    kind: Kind,
    supported: bool,
}

const fn spec(name: &'static str, kind: Kind, supported: bool) -> Spec {
    Spec {
        name,
        kind,
        supported,
    }
}

fn specs(keyword: &str) -> &'static [Spec] {
    const FROM: &[Spec] = &[spec("platform", Kind::Value, true)];
    const RUN: &[Spec] = &[
        spec("network", Kind::Value, true),
        spec("mount", Kind::Repeated, true),
        spec("security", Kind::Value, false),
        spec("device", Kind::Repeated, false),
    ];
    const COPY: &[Spec] = &[
        spec("from", Kind::Value, true),
        spec("chown", Kind::Value, true),
        spec("chmod", Kind::Value, true),
        // --link only changes how BuildKit stacks the layer, not the files it holds.
        spec("link", Kind::Bool, true),
        spec("parents", Kind::Bool, false),
        spec("exclude", Kind::Repeated, false),
    ];
    const ADD: &[Spec] = &[
        spec("chown", Kind::Value, true),
        spec("chmod", Kind::Value, true),
        spec("link", Kind::Bool, true),
        spec("checksum", Kind::Value, true),
        spec("keep-git-dir", Kind::Bool, false),
        spec("unpack", Kind::Bool, false),
        spec("exclude", Kind::Repeated, false),
    ];
    const HEALTHCHECK: &[Spec] = &[
        spec("interval", Kind::Value, true),
        spec("timeout", Kind::Value, true),
        spec("start-period", Kind::Value, true),
        spec("start-interval", Kind::Value, true),
        spec("retries", Kind::Value, true),
    ];
    match keyword {
        "FROM" => FROM,
        "HEALTHCHECK" => HEALTHCHECK,
        "RUN" => RUN,
        "COPY" => COPY,
        "ADD" => ADD,
        _ => &[],
    }
}

/// The checked flags of one instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// The flags in order, as written.
    pub list: Vec<Flag>,
}

impl Flags {
    /// The value of a flag that takes one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|flag| flag.name == name)
            .and_then(|flag| flag.value.as_deref())
    }

    /// Every value of a repeatable flag, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.list
            .iter()
            .filter(move |flag| flag.name == name)
            .filter_map(|flag| flag.value.as_deref())
    }

    /// A boolean flag: given alone or `=true` is true; absent or `=false` is false, in any
    /// case (`--link=FALSE`), as BuildKit lowercases the value.
    pub fn is_set(&self, name: &str) -> bool {
        self.list.iter().any(|flag| {
            flag.name == name
                && !flag
                    .value
                    .as_deref()
                    .is_some_and(|value| value.eq_ignore_ascii_case("false"))
        })
    }
}

/// Checks the flag words (`--name[=value]`) of an instruction with keyword `keyword`.
pub fn check<W: AsRef<str>>(keyword: &str, words: Vec<W>) -> Result<Flags, String> {
    let specs = specs(keyword);
    let mut list: Vec<Flag> = Vec::with_capacity(words.len());
    for word in &words {
        let without_dashes = word.as_ref().trim_start_matches('-');
        let (name, value) = match without_dashes.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (without_dashes.to_string(), None),
        };
        let Some(spec) = specs.iter().find(|spec| spec.name == name) else {
            return Err(format!("unknown flag `--{name}` for {keyword}"));
        };
        if !spec.supported {
            return Err(format!("{keyword} --{name} is not supported yet"));
        }
        if spec.kind != Kind::Repeated && list.iter().any(|flag| flag.name == name) {
            return Err(format!("duplicate flag `--{name}`"));
        }
        match (spec.kind, value.as_deref()) {
            (Kind::Bool, None) => {}
            // BuildKit's bflag compares the lowercased value, so `--link=TRUE` is fine.
            (Kind::Bool, Some(given))
                if given.eq_ignore_ascii_case("true") || given.eq_ignore_ascii_case("false") => {}
            (Kind::Bool, Some(other)) => {
                return Err(format!("flag `--{name}` is true or false, not `{other}`"))
            }
            (Kind::Value | Kind::Repeated, None) => {
                return Err(format!("flag `--{name}` needs a value: `--{name}=...`"))
            }
            (Kind::Value | Kind::Repeated, Some(_)) => {}
        }
        list.push(Flag { name, value });
    }
    Ok(Flags { list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn known_flags_are_kept_as_written() -> Result<(), String> {
        let flags = check(
            "COPY",
            words(&["--from=build", "--chown=app:app", "--link"]),
        )?;
        assert_eq!(flags.value("from"), Some("build"));
        assert_eq!(flags.value("chown"), Some("app:app"));
        assert_eq!(flags.list.len(), 3);
        assert_eq!(flags.list[2].value, None);
        assert!(flags.is_set("link"));
        assert!(!check("COPY", words(&["--link=false"]))?.is_set("link"));
        let run = check("RUN", words(&["--mount=a", "--network=none", "--mount=b"]))?;
        assert_eq!(run.values("mount").collect::<Vec<_>>(), ["a", "b"]);
        Ok(())
    }

    #[test]
    fn boolean_values_ignore_case() -> Result<(), String> {
        assert!(check("COPY", words(&["--link=TRUE"]))?.is_set("link"));
        assert!(check("COPY", words(&["--link=True"]))?.is_set("link"));
        assert!(!check("COPY", words(&["--link=False"]))?.is_set("link"));
        assert!(!check("COPY", words(&["--link=FALSE"]))?.is_set("link"));
        assert!(
            check("COPY", words(&["--link=1"])).is_err(),
            "only true and false"
        );
        Ok(())
    }

    #[test]
    fn flag_errors() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("COPY", &["--form=x"], "unknown flag `--form` for COPY"),
            ("USER", &["--x"], "unknown flag `--x` for USER"),
            ("COPY", &["--from=a", "--from=b"], "duplicate flag `--from`"),
            ("COPY", &["--from"], "needs a value"),
            ("COPY", &["--link=maybe"], "true or false"),
            (
                "RUN",
                &["--security=insecure"],
                "RUN --security is not supported yet",
            ),
            (
                "RUN",
                &["--device=/dev/x"],
                "RUN --device is not supported yet",
            ),
            ("ADD", &["--unpack"], "ADD --unpack is not supported yet"),
            (
                "ADD",
                &["--keep-git-dir"],
                "ADD --keep-git-dir is not supported yet",
            ),
            (
                "COPY",
                &["--parents"],
                "COPY --parents is not supported yet",
            ),
            (
                "COPY",
                &["--exclude=x"],
                "COPY --exclude is not supported yet",
            ),
            ("HEALTHCHECK", &["--interval"], "needs a value"),
        ];
        for (keyword, given, expected) in cases {
            let error = check(keyword, words(given)).err().unwrap_or_default();
            assert!(error.contains(expected), "{given:?}: {error}");
        }
    }
}
