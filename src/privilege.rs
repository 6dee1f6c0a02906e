//! Dropping root after binding: started as root only to bind port 53, c2sink serves as an unprivileged user
//! (`[server] user`), so a bug in the query path cannot touch the rest of the system.

use nix::unistd::{Gid, Uid, User};

/// Who to run as, as written in `[server] user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// A user name, looked up in the system's user database (needs /etc/passwd; not in a scratch image).
    Name(String),
    /// A numeric uid and gid.
    Ids(u32, u32),
}

/// Why the privilege drop did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("\"{0}\" is not a user name, \"UID\" or \"UID:GID\"")]
    Syntax(String),
    #[error("user \"{0}\" not found in the user database; give a numeric UID:GID instead")]
    NoSuchUser(String),
    #[error("looking up user \"{name}\": {source}")]
    Lookup { name: String, source: nix::Error },
    #[error("{step}: {source}")]
    Switch {
        step: &'static str,
        source: nix::Error,
    },
    #[error("still able to regain root after dropping to uid {0}; refusing to serve")]
    Regained(u32),
}

impl RunAs {
    /// Parses `name`, `uid` (gid = uid) or `uid:gid`.
    pub fn parse(spec: &str) -> Result<RunAs, PrivilegeError> {
        let spec = spec.trim();
        let num = |s: &str| s.parse::<u32>().ok();
        if let Some((u, g)) = spec.split_once(':') {
            return match (num(u), num(g)) {
                (Some(u), Some(g)) => Ok(RunAs::Ids(u, g)),
                _ => Err(PrivilegeError::Syntax(spec.to_string())),
            };
        }
        if let Some(u) = num(spec) {
            return Ok(RunAs::Ids(u, u));
        }
        let name_ok = !spec.is_empty()
            && spec
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if name_ok {
            Ok(RunAs::Name(spec.to_string()))
        } else {
            Err(PrivilegeError::Syntax(spec.to_string()))
        }
    }

    /// The uid and gid to switch to.
    pub fn resolve(&self) -> Result<(Uid, Gid), PrivilegeError> {
        match self {
            RunAs::Ids(u, g) => Ok((Uid::from_raw(*u), Gid::from_raw(*g))),
            RunAs::Name(name) => match User::from_name(name) {
                Ok(Some(u)) => Ok((u.uid, u.gid)),
                Ok(None) => Err(PrivilegeError::NoSuchUser(name.clone())),
                Err(source) => Err(PrivilegeError::Lookup {
                    name: name.clone(),
                    source,
                }),
            },
        }
    }
}

/// What [`drop_to`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Now running as this uid and gid.
    To(u32, u32),
    /// Not root to begin with: nothing to drop.
    NotRoot(u32),
}

/// Switches the whole process (every thread) to `run_as` if it runs as root; groups go first, then gid,
/// then uid, and a final check that root cannot be regained.
pub fn drop_to(run_as: &RunAs) -> Result<Dropped, PrivilegeError> {
    let (uid, gid) = run_as.resolve()?;
    if !nix::unistd::geteuid().is_root() {
        return Ok(Dropped::NotRoot(nix::unistd::geteuid().as_raw()));
    }
    let step = |step| move |source| PrivilegeError::Switch { step, source };
    nix::unistd::setgroups(&[gid]).map_err(step("setgroups"))?;
    nix::unistd::setgid(gid).map_err(step("setgid"))?;
    nix::unistd::setuid(uid).map_err(step("setuid"))?;
    if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Regained(uid.as_raw()));
    }
    Ok(Dropped::To(uid.as_raw(), gid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms_parse() {
        assert_eq!(
            RunAs::parse("c2sink").ok(),
            Some(RunAs::Name("c2sink".into()))
        );
        assert_eq!(RunAs::parse("65532").ok(), Some(RunAs::Ids(65532, 65532)));
        assert_eq!(RunAs::parse("100:101").ok(), Some(RunAs::Ids(100, 101)));
        for bad in ["", "a:b", "1:", "c2 sink", "x/y"] {
            assert!(RunAs::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let e = RunAs::Name("no-such-user-c2sink".into())
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("numeric UID:GID"), "{e}");
    }
}
