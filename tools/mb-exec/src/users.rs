//! Resolving `user[:group]` (RUN's USER, WORKDIR's owner, `COPY --chown`) to numeric ids through
//! the build filesystem's own /etc/passwd and /etc/group, never the host's.
//!
//! A process (RUN's USER) follows runc's rules: a numeric uid needs no passwd entry (its group
//! is then 0 unless passwd names one), a name that is not listed is an error, and supplementary
//! groups come from /etc/group only when no group was given explicitly.
//!
//! The owner of files a step writes (`COPY --chown`, WORKDIR) follows BuildKit's file
//! operations instead, which differ in one place: a numeric uid alone takes the gid of the same
//! number (`--chown=1234` is 1234:1234) without looking at passwd; see [`Accounts::resolve_owner`].
//!
//! The account files are read through the root's own symlinks ([`resolve_in_root`]): an
//! /etc/passwd that links to `/usr/lib/passwd` means the image's, never the host's.

use std::path::Path;

use crate::error::ExecError;
use crate::rootfs::resolve_in_root;

/// Numeric ids a process or a file gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups, for processes only.
    pub additional_gids: Vec<u32>,
}

/// The contents of a filesystem's /etc/passwd and /etc/group (empty when missing).
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    passwd: String,
    group: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

impl Accounts {
    /// Accounts from the two files' text.
    pub fn from_text(passwd: &str, group: &str) -> Accounts {
        Accounts {
            passwd: passwd.to_string(),
            group: group.to_string(),
        }
    }

    /// Reads `root`/etc/passwd and `root`/etc/group, symlinks resolved inside `root`; a missing
    /// file lists nobody.
    pub fn read(root: &Path) -> Result<Accounts, ExecError> {
        let read = |name: &str| -> Result<String, ExecError> {
            let path = resolve_in_root(root, &format!("etc/{name}"))?;
            match std::fs::read(&path) {
                Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(error) => Err(ExecError::io(&path)(error)),
            }
        };
        Ok(Accounts {
            passwd: read("passwd")?,
            group: read("group")?,
        })
    }

    fn passwd_entries(&self) -> impl Iterator<Item = PasswdEntry<'_>> {
        self.passwd.lines().filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: fields.first()?,
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
    }

    fn group_entries(&self) -> impl Iterator<Item = GroupEntry<'_>> {
        self.group.lines().filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: fields.first()?,
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|members| members.split(',').filter(|m| !m.is_empty()).collect())
                    .unwrap_or_default(),
            })
        })
    }

    /// Resolves `user[:group]`; empty means root.
    pub fn resolve(&self, spec: &str) -> Result<Identity, ExecError> {
        if spec.is_empty() {
            return Ok(Identity::default());
        }
        let (user, group) = match spec.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (spec, None),
        };
        let (uid, entry) = match user.parse::<u32>() {
            Ok(uid) => (uid, self.passwd_entries().find(|entry| entry.uid == uid)),
            Err(_) => {
                let entry = self
                    .passwd_entries()
                    .find(|entry| entry.name == user)
                    .ok_or_else(|| ExecError::UnknownUser(user.to_string()))?;
                (entry.uid, Some(entry))
            }
        };
        match group {
            Some(group) => Ok(Identity {
                uid,
                gid: self.group_id(group)?,
                additional_gids: Vec::new(),
            }),
            None => {
                let gid = entry.as_ref().map_or(0, |entry| entry.gid);
                let additional_gids = match &entry {
                    Some(entry) => self
                        .group_entries()
                        .filter(|group| group.gid != gid && group.members.contains(&entry.name))
                        .map(|group| group.gid)
                        .collect(),
                    None => Vec::new(),
                };
                Ok(Identity {
                    uid,
                    gid,
                    additional_gids,
                })
            }
        }
    }

    /// Resolves `user[:group]` as the owner of files a step writes (`COPY --chown`, WORKDIR), as
    /// BuildKit's file operations do: a numeric user alone owns with the group of the same
    /// number, whatever passwd says (BuildKit's `parseUser` sets gid to uid when there is no
    /// group part); otherwise as [`Accounts::resolve`]. Files have no supplementary groups.
    pub fn resolve_owner(&self, spec: &str) -> Result<Identity, ExecError> {
        if let Ok(uid) = spec.parse::<u32>() {
            return Ok(Identity {
                uid,
                gid: uid,
                additional_gids: Vec::new(),
            });
        }
        Ok(Identity {
            additional_gids: Vec::new(),
            ..self.resolve(spec)?
        })
    }

    fn group_id(&self, group: &str) -> Result<u32, ExecError> {
        if let Ok(gid) = group.parse::<u32>() {
            return Ok(gid);
        }
        self.group_entries()
            .find(|entry| entry.name == group)
            .map(|entry| entry.gid)
            .ok_or_else(|| ExecError::UnknownGroup(group.to_string()))
    }
}

/// Whether resolving `spec` needs the filesystem's account files (it names a user or group).
pub fn needs_accounts(spec: &str) -> bool {
    spec.split(':')
        .any(|part| !part.is_empty() && part.parse::<u32>().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts::from_text(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n",
            "root:x:0:\nstaff:x:50:app,other\napp:x:1000:\nwheel:x:10:\n",
        )
    }

    #[test]
    fn names_resolve_with_primary_and_supplementary_groups() -> Result<(), ExecError> {
        let identity = accounts().resolve("app")?;
        assert_eq!(
            identity,
            Identity {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![50]
            }
        );
        assert_eq!(accounts().resolve("")?, Identity::default());
        Ok(())
    }

    #[test]
    fn explicit_group_replaces_primary_and_drops_supplementary() -> Result<(), ExecError> {
        let identity = accounts().resolve("app:wheel")?;
        assert_eq!((identity.uid, identity.gid), (1000, 10));
        assert!(identity.additional_gids.is_empty());
        assert_eq!(accounts().resolve("app:7")?.gid, 7);
        Ok(())
    }

    #[test]
    fn numeric_ids_work_without_account_files() -> Result<(), ExecError> {
        let empty = Accounts::default();
        assert_eq!(
            empty.resolve("1234:5678")?,
            Identity {
                uid: 1234,
                gid: 5678,
                additional_gids: vec![]
            }
        );
        assert_eq!(empty.resolve("42")?.gid, 0);
        assert_eq!(accounts().resolve("1000")?.gid, 1000);
        Ok(())
    }

    #[test]
    fn file_owners_take_a_lone_numeric_uid_as_the_gid_too() -> Result<(), ExecError> {
        let owner = |spec: &str| {
            accounts()
                .resolve_owner(spec)
                .map(|identity| (identity.uid, identity.gid, identity.additional_gids))
        };
        // BuildKit: `--chown=1234` is 1234:1234, and a listed uid does not take passwd's gid.
        assert_eq!(owner("1234")?, (1234, 1234, vec![]));
        assert_eq!(owner("0")?, (0, 0, vec![]));
        assert_eq!(Accounts::default().resolve_owner("42")?.gid, 42);
        // An explicit group, or a name, resolve as for a process, without supplementary groups.
        assert_eq!(owner("1234:7")?, (1234, 7, vec![]));
        assert_eq!(owner("1234:wheel")?, (1234, 10, vec![]));
        assert_eq!(owner("app")?, (1000, 1000, vec![]));
        assert_eq!(owner("")?, (0, 0, vec![]));
        // A process keeps runc's rule: an unlisted numeric uid runs with group 0.
        assert_eq!(Accounts::default().resolve("42")?.gid, 0);
        Ok(())
    }

    #[test]
    fn account_files_are_read_through_the_root_s_own_symlinks() -> Result<(), ExecError> {
        let dir = tempfile::tempdir().map_err(ExecError::io("tempdir"))?;
        let root = dir.path();
        let accounts_dir = root.join("usr/lib/accounts-for-this-test");
        std::fs::create_dir_all(&accounts_dir).map_err(ExecError::io(&accounts_dir))?;
        std::fs::create_dir_all(root.join("etc")).map_err(ExecError::io(root))?;
        std::fs::write(
            accounts_dir.join("passwd"),
            "builder:x:4321:4322::/home/builder:/bin/sh\n",
        )
        .map_err(ExecError::io(&accounts_dir))?;
        std::fs::write(accounts_dir.join("group"), "builders:x:4323:\n")
            .map_err(ExecError::io(&accounts_dir))?;
        // Absolute targets: followed from the host's / they name nothing (or the host's files).
        for name in ["passwd", "group"] {
            std::os::unix::fs::symlink(
                Path::new("/usr/lib/accounts-for-this-test").join(name),
                root.join("etc").join(name),
            )
            .map_err(ExecError::io(root))?;
        }
        let accounts = Accounts::read(root)?;
        let identity = accounts.resolve("builder:builders")?;
        assert_eq!((identity.uid, identity.gid), (4321, 4323));
        assert_eq!(accounts.resolve("builder")?.gid, 4322);
        Ok(())
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let user = accounts().resolve("nobody").err().map(|e| e.to_string());
        assert!(user.is_some_and(|m| m.contains("unknown user `nobody`")));
        let group = accounts()
            .resolve("app:nogroup")
            .err()
            .map(|e| e.to_string());
        assert!(group.is_some_and(|m| m.contains("unknown group `nogroup`")));
    }

    #[test]
    fn only_names_need_the_account_files() {
        assert!(!needs_accounts("0:0"));
        assert!(!needs_accounts("1000"));
        assert!(needs_accounts("app"));
        assert!(needs_accounts("1000:staff"));
    }
}
