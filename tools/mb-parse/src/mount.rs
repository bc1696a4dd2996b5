//! `RUN --mount=...`: splitting a mount's comma-separated options (syntax, checked for every
//! stage) and turning them into a typed, expanded [`RunMount`] (for the stages that are built),
//! with BuildKit's defaults and its checks on which option fits which mount type.
//!
//! The `from=` option is not expanded (BuildKit refuses variables there) so that stage
//! references are known before any stage is expanded; everything else is.

use std::borrow::Cow;

use mb_core::graph::{CopyFrom, MountKind, RunMount};

const KNOWN_OPTIONS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "size",
    "env",
];

/// One `--mount` value split into its options, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSyntax {
    /// `(key lowercased, value)` in order; options like `ro` have no value.
    pub options: Vec<(String, Option<String>)>,
    /// `from=` as written.
    pub from: Option<String>,
}

/// Splits a `--mount` value (`type=cache,target=/x,...`) and checks the option names.
pub fn split_mount(value: &str) -> Result<MountSyntax, String> {
    let mut options = Vec::new();
    let mut from = None;
    for field in csv_fields(value)? {
        if field.is_empty() {
            continue;
        }
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_ascii_lowercase(), Some(value.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            return Err(format!(
                "RUN --mount: unknown option `{key}` in `{field}` (known: {})",
                KNOWN_OPTIONS.join(", ")
            ));
        }
        if value.is_none()
            && !matches!(
                key.as_str(),
                "ro" | "readonly" | "rw" | "readwrite" | "required"
            )
        {
            return Err(format!("RUN --mount: `{field}` needs a value: `{key}=...`"));
        }
        if key == "from" {
            if value.as_deref().is_some_and(|from| from.contains('$')) {
                return Err(format!(
                    "RUN --mount: `{field}`: variables are not expanded in from=, define an alias stage instead"
                ));
            }
            from.clone_from(&value);
        }
        options.push((key, value));
    }
    Ok(MountSyntax { options, from })
}

/// Go's `encoding/csv` rules for one record: a field that starts with `"` runs to the closing
/// quote, and `""` inside it is one quote. Unquoted fields borrow from `text`.
fn csv_fields(text: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut fields = Vec::new();
    let mut rest = text;
    loop {
        let Some(quoted) = rest.strip_prefix('"') else {
            match rest.split_once(',') {
                Some((field, after)) => {
                    fields.push(Cow::Borrowed(field));
                    rest = after;
                    continue;
                }
                None => {
                    fields.push(Cow::Borrowed(rest));
                    return Ok(fields);
                }
            }
        };
        let mut field = String::new();
        let mut chars = quoted.char_indices().peekable();
        let after_quote = loop {
            match chars.next() {
                None => return Err(format!("RUN --mount: unterminated quote in `{text}`")),
                Some((_, '"')) if chars.peek().is_some_and(|(_, next)| *next == '"') => {
                    chars.next();
                    field.push('"');
                }
                Some((index, '"')) => break &quoted[index + 1..],
                Some((_, ch)) => field.push(ch),
            }
        };
        fields.push(Cow::Owned(field));
        match after_quote.strip_prefix(',') {
            Some(after) => rest = after,
            None if after_quote.is_empty() => return Ok(fields),
            None => {
                return Err(format!(
                    "RUN --mount: extraneous text after a quoted field in `{text}`"
                ))
            }
        }
    }
}

/// What a mount needs from its surroundings.
pub struct MountContext<'a> {
    /// The stage or image `from=` resolved to, if given.
    pub from: Option<CopyFrom>,
    /// The working directory, for relative targets.
    pub workdir: &'a str,
    /// How many SSH mounts came before this one in the instruction, for the default socket path.
    pub ssh_index: usize,
}

/// The typed mount, its values expanded with `expand`.
pub fn run_mount(
    syntax: &MountSyntax,
    context: MountContext<'_>,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<RunMount, String> {
    let mut kind = MountKind::Bind;
    let mut read_only: Option<bool> = None;
    let mut mount = RunMount::new(kind, String::new());
    for (key, value) in &syntax.options {
        let value = match value {
            Some(value) => expand(value)?,
            None => "true".to_string(),
        };
        let invalid = |what: &str| format!("RUN --mount: invalid {key} `{value}`: {what}");
        match key.as_str() {
            "type" => {
                kind = [
                    MountKind::Bind,
                    MountKind::Cache,
                    MountKind::Tmpfs,
                    MountKind::Secret,
                    MountKind::Ssh,
                ]
                .into_iter()
                .find(|kind| kind_name(*kind).eq_ignore_ascii_case(&value))
                .ok_or_else(|| invalid("use bind, cache, tmpfs, secret or ssh"))?
            }
            "from" => {}
            "source" | "src" => mount.source = Some(value),
            "target" | "dst" | "destination" => mount.target = value,
            "readonly" | "ro" => {
                read_only = Some(parse_bool(&value).ok_or_else(|| invalid("not true or false"))?)
            }
            "readwrite" | "rw" => {
                read_only = Some(!parse_bool(&value).ok_or_else(|| invalid("not true or false"))?)
            }
            "required" => {
                if !matches!(kind, MountKind::Secret | MountKind::Ssh) {
                    return Err(format!(
                        "RUN --mount: `required` is only for secret and ssh mounts, not {}",
                        kind_name(kind)
                    ));
                }
                mount.required = parse_bool(&value).ok_or_else(|| invalid("not true or false"))?;
            }
            "id" => mount.id = Some(value),
            // Whether the type allows it is checked once every option is read, as BuildKit
            // does: `sharing=locked,type=cache` is fine.
            "sharing" => {
                let sharing = value.to_ascii_lowercase();
                if !matches!(sharing.as_str(), "shared" | "private" | "locked") {
                    return Err(invalid("use shared, private or locked"));
                }
                mount.sharing = Some(sharing);
            }
            "mode" => {
                mount.mode =
                    Some(u32::from_str_radix(&value, 8).map_err(|_| invalid("not an octal mode"))?)
            }
            "uid" => mount.uid = Some(value.parse().map_err(|_| invalid("not a number"))?),
            "gid" => mount.gid = Some(value.parse().map_err(|_| invalid("not a number"))?),
            "size" => {
                if kind != MountKind::Tmpfs {
                    return Err(format!(
                        "RUN --mount: `size` is only for tmpfs mounts, not {}",
                        kind_name(kind)
                    ));
                }
                mount.size =
                    Some(ram_in_bytes(&value).ok_or_else(|| invalid("not a size like 64m"))?);
            }
            "env" => mount.env = Some(value),
            _ => return Err(format!("RUN --mount: unknown option `{key}`")),
        }
    }
    mount.kind = kind;
    if mount.sharing.is_some() && kind != MountKind::Cache {
        return Err(format!(
            "RUN --mount: `sharing` is only for cache mounts, not {}",
            kind_name(kind)
        ));
    }
    let file_info_allowed = matches!(kind, MountKind::Secret | MountKind::Ssh | MountKind::Cache);
    if !file_info_allowed && (mount.mode.is_some() || mount.uid.is_some() || mount.gid.is_some()) {
        return Err(format!(
            "RUN --mount: mode, uid and gid are not allowed for {} mounts",
            kind_name(kind)
        ));
    }
    // Caches and tmpfs are writable unless told otherwise; everything else is read-only.
    mount.read_write = !read_only.unwrap_or(!matches!(kind, MountKind::Cache | MountKind::Tmpfs));
    if !mount.target.is_empty() {
        mount.target = absolute_target(context.workdir, &mount.target)?;
    }
    match kind {
        MountKind::Bind | MountKind::Cache | MountKind::Tmpfs => {
            if mount.target.is_empty() {
                return Err(format!(
                    "RUN --mount type={} needs a target=",
                    kind_name(kind)
                ));
            }
            if kind == MountKind::Bind {
                mount.from = Some(context.from.unwrap_or(CopyFrom::Context));
            } else if kind == MountKind::Cache {
                mount.from = context.from;
                if mount.id.is_none() {
                    mount.id = Some(mount.target.clone());
                }
                if mount.sharing.is_none() {
                    mount.sharing = Some("shared".to_string());
                }
            } else {
                // BuildKit ignores from= and source= on a tmpfs: it is always empty.
                mount.source = None;
            }
        }
        MountKind::Secret => {
            if context.from.is_some() {
                return Err("RUN --mount type=secret takes no from=".to_string());
            }
            // As BuildKit: source= is another name for the id, and the id defaults to the
            // target's file name.
            let id = match (mount.source.take(), mount.id.take()) {
                (Some(_), Some(_)) => {
                    return Err(
                        "RUN --mount type=secret takes source= or id=, not both (they name the same secret)"
                            .to_string(),
                    )
                }
                (Some(source), None) => source,
                (None, Some(id)) => id,
                (None, None) if !mount.target.is_empty() => base_name(&mount.target).to_string(),
                (None, None) => {
                    return Err("RUN --mount type=secret needs an id= or a target=".to_string())
                }
            };
            // With env= and no target the secret is only a variable, never a file.
            if mount.target.is_empty() && mount.env.is_none() {
                mount.target = format!("/run/secrets/{}", base_name(&id));
            }
            mount.id = Some(id);
            mount.mode.get_or_insert(0o400);
        }
        MountKind::Ssh => {
            if context.from.is_some() || mount.source.is_some() {
                return Err("RUN --mount type=ssh takes no from= or source=".to_string());
            }
            mount.id.get_or_insert_with(|| "default".to_string());
            if mount.target.is_empty() {
                mount.target = format!("/run/buildkit/ssh_agent.{}", context.ssh_index);
            }
            mount.mode.get_or_insert(0o600);
        }
    }
    Ok(mount)
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::Cache => "cache",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Secret => "secret",
        MountKind::Ssh => "ssh",
    }
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
        .unwrap_or("/")
}

/// The target made absolute against the working directory, which cannot be `/` itself.
fn absolute_target(workdir: &str, target: &str) -> Result<String, String> {
    let resolved = crate::stages::resolve_path(workdir, target);
    if resolved == "/" {
        return Err(format!(
            "RUN --mount: invalid target `{target}`: cannot mount over /"
        ));
    }
    Ok(resolved)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units' `RAMInBytes`: a number with an optional binary unit (`64m`, `1.5GiB`).
fn ram_in_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let number_end = text
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    let bytes = number * 1024f64.powi(power);
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(value: &str, from: Option<CopyFrom>) -> Result<RunMount, String> {
        let syntax = split_mount(value)?;
        let expand = |word: &str| Ok(word.replace("$T", "/cache"));
        run_mount(
            &syntax,
            MountContext {
                from,
                workdir: "/work",
                ssh_index: 0,
            },
            &expand,
        )
    }

    #[test]
    fn bind_mounts_default_to_the_context_read_only() -> Result<(), String> {
        let bind = mount("target=src,source=go.sum", None)?;
        assert_eq!(bind.kind, MountKind::Bind);
        assert_eq!(bind.target, "/work/src");
        assert_eq!(bind.from, Some(CopyFrom::Context));
        assert_eq!(bind.source.as_deref(), Some("go.sum"));
        assert!(!bind.read_write);
        let writable = mount(
            "type=bind,dst=/x,rw,from=build",
            Some(CopyFrom::Stage { index: 0 }),
        )?;
        assert!(writable.read_write);
        assert_eq!(writable.from, Some(CopyFrom::Stage { index: 0 }));
        assert!(mount("type=bind,target=/x,readwrite=false", None).is_ok_and(|m| !m.read_write));
        Ok(())
    }

    #[test]
    fn cache_mounts_take_their_id_from_the_target() -> Result<(), String> {
        let cache = mount(
            "type=cache,target=$T,sharing=LOCKED,mode=0755,uid=1000,gid=1000",
            None,
        )?;
        assert_eq!(cache.target, "/cache");
        assert_eq!(cache.id.as_deref(), Some("/cache"));
        assert_eq!(cache.sharing.as_deref(), Some("locked"));
        assert_eq!(
            (cache.mode, cache.uid, cache.gid),
            (Some(0o755), Some(1000), Some(1000))
        );
        assert!(cache.read_write);
        assert_eq!(cache.from, None);
        let named = mount("type=cache,id=npm,target=/root/.npm,ro", None)?;
        assert_eq!(named.id.as_deref(), Some("npm"));
        assert_eq!(named.sharing.as_deref(), Some("shared"));
        assert!(!named.read_write);
        Ok(())
    }

    #[test]
    fn options_are_checked_against_the_type_given_anywhere() -> Result<(), String> {
        let cache = mount("sharing=locked,type=cache,target=/x", None)?;
        assert_eq!(cache.kind, MountKind::Cache);
        assert_eq!(cache.sharing.as_deref(), Some("locked"));
        let error = mount("sharing=locked,type=tmpfs,target=/x", None)
            .err()
            .unwrap_or_default();
        assert!(
            error.contains("only for cache mounts, not tmpfs"),
            "{error}"
        );
        Ok(())
    }

    #[test]
    fn secrets_and_ssh_get_buildkit_defaults() -> Result<(), String> {
        let secret = mount("type=secret,id=aws,required", None)?;
        assert_eq!(secret.target, "/run/secrets/aws");
        assert_eq!(secret.mode, Some(0o400));
        assert!(secret.required);
        let by_target = mount("type=secret,target=/root/.netrc", None)?;
        assert_eq!(by_target.id.as_deref(), Some(".netrc"));
        let as_env = mount("type=secret,id=token,env=TOKEN", None)?;
        assert_eq!(
            (as_env.target.as_str(), as_env.env.as_deref()),
            ("", Some("TOKEN"))
        );
        let ssh = mount("type=ssh", None)?;
        assert_eq!(ssh.id.as_deref(), Some("default"));
        assert_eq!(ssh.target, "/run/buildkit/ssh_agent.0");
        assert_eq!(ssh.mode, Some(0o600));
        Ok(())
    }

    #[test]
    fn tmpfs_sizes() -> Result<(), String> {
        assert_eq!(
            mount("type=tmpfs,target=/t,size=64m", None)?.size,
            Some(64 << 20)
        );
        assert_eq!(
            mount("type=tmpfs,target=/t,size=1GiB", None)?.size,
            Some(1 << 30)
        );
        assert_eq!(
            mount("type=tmpfs,target=/t,size=100", None)?.size,
            Some(100)
        );
        assert!(mount("type=tmpfs,target=/t", None)?.read_write);
        Ok(())
    }

    #[test]
    fn quoted_fields() -> Result<(), String> {
        let syntax = split_mount("type=bind,\"target=/a,b\",source=\"\"")?;
        assert_eq!(
            syntax.options[1],
            ("target".to_string(), Some("/a,b".to_string()))
        );
        Ok(())
    }

    #[test]
    fn mount_errors() {
        let cases = [
            ("type=cache,target=/x,colour=red", "unknown option `colour`"),
            ("type=cache,target", "needs a value"),
            ("type=volume,target=/x", "invalid type `volume`"),
            ("type=bind", "needs a target="),
            ("target=/x,required", "only for secret and ssh"),
            ("target=/x,sharing=locked", "only for cache"),
            (
                "type=cache,target=/x,sharing=sometimes",
                "use shared, private or locked",
            ),
            ("target=/x,mode=0644", "not allowed for bind"),
            ("type=cache,target=/x,mode=9", "not an octal mode"),
            ("type=cache,target=/x,uid=me", "not a number"),
            ("type=cache,target=/x,size=1g", "only for tmpfs"),
            ("type=tmpfs,target=/x,size=lots", "not a size"),
            ("type=secret,from=x,id=a", "takes no from="),
            ("type=secret", "needs an id= or a target="),
            ("type=secret,source=a,id=b", "source= or id=, not both"),
            ("type=ssh,source=x", "takes no from= or source="),
            ("target=/", "cannot mount over /"),
            ("from=$STAGE,target=/x", "not expanded in from="),
            ("target=/x,ro=maybe", "not true or false"),
            ("\"target=/x", "unterminated quote"),
        ];
        for (value, expected) in cases {
            let from = value
                .contains("from=x")
                .then_some(CopyFrom::Stage { index: 0 });
            let error = mount(value, from).err().unwrap_or_default();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }
}
