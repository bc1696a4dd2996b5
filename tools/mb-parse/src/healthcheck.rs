//! HEALTHCHECK: `NONE`, or `CMD` in exec or shell form with its timing flags, into the
//! `Healthcheck` the image config records. Durations use Go's syntax (`30s`, `1m30s`, `1.5h`)
//! because that is what Docker parses them with; they are stored in nanoseconds.

use mb_core::graph::Healthcheck;

use crate::flags::Flags;
use crate::words::{parse_json_array, MaybeJson};

/// Docker's smallest allowed interval, timeout and start period.
const MINIMUM_NANOS: u64 = 1_000_000;

/// The healthcheck a `HEALTHCHECK` line with `flags` and `arguments` (after the flags) sets.
pub fn parse(arguments: &str, flags: &Flags) -> Result<Healthcheck, String> {
    let (kind, rest) = match arguments.split_once(char::is_whitespace) {
        Some((kind, rest)) => (kind, rest.trim()),
        None => (arguments, ""),
    };
    let kind = kind.to_ascii_uppercase();
    let test = match kind.as_str() {
        "NONE" if rest.is_empty() => vec!["NONE".to_string()],
        "NONE" => return Err("HEALTHCHECK NONE takes no arguments".to_string()),
        "CMD" => match parse_json_array(rest) {
            MaybeJson::Strings(args) if !args.is_empty() => {
                let mut test = vec!["CMD".to_string()];
                test.extend(args);
                test
            }
            MaybeJson::NotStrings => {
                return Err("HEALTHCHECK CMD in exec form must be a JSON array of strings".into())
            }
            MaybeJson::NotJson if !rest.is_empty() => {
                vec!["CMD-SHELL".to_string(), rest.to_string()]
            }
            _ => return Err("HEALTHCHECK CMD needs a command".to_string()),
        },
        "" => return Err("HEALTHCHECK needs NONE or CMD followed by a command".to_string()),
        other => {
            return Err(format!(
                "unknown HEALTHCHECK type `{other}`: use CMD or NONE"
            ))
        }
    };
    let retries = match flags.value("retries") {
        None => None,
        Some(text) => {
            let retries: i64 = text
                .parse()
                .map_err(|_| format!("invalid --retries `{text}`: not a whole number"))?;
            if retries < 0 {
                return Err(format!("--retries cannot be negative ({retries})"));
            }
            // Zero means Docker's default, which the config leaves out.
            let retries = u32::try_from(retries)
                .map_err(|_| format!("invalid --retries `{text}`: too large"))?;
            (retries != 0).then_some(retries)
        }
    };
    Ok(Healthcheck {
        test,
        interval: interval(flags, "interval")?,
        timeout: interval(flags, "timeout")?,
        start_period: interval(flags, "start-period")?,
        start_interval: interval(flags, "start-interval")?,
        retries,
    })
}

/// A duration flag: absent or zero means "Docker's default" and is left out, as Docker does.
fn interval(flags: &Flags, name: &str) -> Result<Option<u64>, String> {
    let Some(text) = flags.value(name) else {
        return Ok(None);
    };
    let nanos = go_duration(text).ok_or_else(|| {
        format!("invalid --{name} `{text}`: expected a duration like 30s or 1m30s")
    })?;
    match nanos {
        0 => Ok(None),
        n if n < 0 => Err(format!("--{name} `{text}` cannot be negative")),
        n => {
            let n = u64::try_from(n).map_err(|_| format!("--{name} `{text}` is too long"))?;
            if n < MINIMUM_NANOS {
                Err(format!("--{name} `{text}` cannot be less than 1ms"))
            } else {
                Ok(Some(n))
            }
        }
    }
}

/// Go's `time.ParseDuration`: `[-+]` then one or more `number unit`, units ns, us (µs), ms,
/// s, m, h, numbers possibly fractional; a lone `0` is allowed. In nanoseconds.
pub fn go_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = if number.ends_with('.') {
            number.trim_end_matches('.').parse().ok()?
        } else if number.starts_with('.') {
            format!("0{number}").parse().ok()?
        } else {
            number.parse().ok()?
        };
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let unit_nanos: f64 = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * unit_nanos;
    }
    // Go limits durations to an int64 of nanoseconds.
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_core::graph::Flag;

    fn flags(items: &[(&str, &str)]) -> Flags {
        Flags {
            list: items
                .iter()
                .map(|(name, value)| Flag {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                })
                .collect(),
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("30s"), Some(30_000_000_000));
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(go_duration("100ms"), Some(100_000_000));
        assert_eq!(go_duration("2us"), Some(2_000));
        assert_eq!(go_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(go_duration("0"), Some(0));
        assert_eq!(go_duration(".5s"), Some(500_000_000));
        for bad in ["", "10", "1x", "s", "1..2s", "-", "1s2", "99999999999h"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cmd_forms_and_flags() -> Result<(), String> {
        let shell = parse(
            "CMD curl -f http://localhost/ || exit 1",
            &flags(&[("interval", "5m"), ("timeout", "3s"), ("retries", "3")]),
        )?;
        assert_eq!(
            shell.test,
            ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
        );
        assert_eq!(shell.interval, Some(300_000_000_000));
        assert_eq!(shell.timeout, Some(3_000_000_000));
        assert_eq!(shell.retries, Some(3));
        let exec = parse(
            r#"cmd ["/bin/check", "--quick"]"#,
            &flags(&[("start-period", "1m"), ("start-interval", "0s")]),
        )?;
        assert_eq!(exec.test, ["CMD", "/bin/check", "--quick"]);
        assert_eq!(
            (exec.start_period, exec.start_interval),
            (Some(60_000_000_000), None)
        );
        assert_eq!(parse("none", &flags(&[]))?.test, ["NONE"]);
        Ok(())
    }

    #[test]
    fn healthcheck_errors() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("NONE x", &[], "takes no arguments"),
            ("CMD", &[], "needs a command"),
            ("CMD []", &[], "needs a command"),
            ("CMD [1]", &[], "array of strings"),
            ("PING x", &[], "unknown HEALTHCHECK type `PING`"),
            ("", &[], "needs NONE or CMD"),
            ("CMD x", &[("interval", "5")], "invalid --interval `5`"),
            ("CMD x", &[("timeout", "-1s")], "cannot be negative"),
            ("CMD x", &[("interval", "10us")], "less than 1ms"),
            ("CMD x", &[("retries", "-1")], "cannot be negative"),
            ("CMD x", &[("retries", "many")], "not a whole number"),
        ];
        for (text, given, expected) in cases {
            let error = parse(text, &flags(given)).err().unwrap_or_default();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
