//! Schema policy (`cloud.md` §2 `policy.*`, §7.1) and review scopes.
//!
//! The config module turns `cloud.yaml` into a [`Policy`]; everything downstream takes this
//! plain value, so tests and the CLI need no files.

use std::fmt;

/// `policy.coalescing`: how far one review reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coalescing {
    /// One review per (table, hash) for the whole fleet; one mirror per table.
    #[default]
    Project,
    /// One review per (device, table, hash); one mirror per device and table.
    PerDevice,
}

impl Coalescing {
    /// The scope of a device's batches under this mode.
    pub fn scope_for(self, device_id: &str) -> Scope {
        match self {
            Coalescing::Project => Scope::Project,
            Coalescing::PerDevice => Scope::Device(device_id.to_string()),
        }
    }
}

/// The schema decisions of §7 that the apply transaction takes without an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// `policy.coalescing`.
    pub coalescing: Coalescing,
    /// `policy.auto_approve`: approve every new hash with all columns `mirror`.
    pub auto_approve: bool,
    /// `policy.allow_additive_continue`: approve a purely additive hash, new columns `mirror`.
    pub allow_additive_continue: bool,
}

/// The reach of a review, its bindings and its mirror (§7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The whole fleet (`coalescing: project`).
    Project,
    /// One device (`coalescing: per_device`).
    Device(String),
}

impl Scope {
    /// The stored form: `project` or `device:{id}` (a device id never contains `/`, `+`, `#`,
    /// and the prefix keeps the two apart whatever the id is).
    pub fn key(&self) -> String {
        match self {
            Scope::Project => "project".to_string(),
            Scope::Device(d) => format!("device:{d}"),
        }
    }

    /// Parses [`Scope::key`]'s form.
    pub fn from_key(key: &str) -> Option<Scope> {
        if key == "project" {
            Some(Scope::Project)
        } else {
            key.strip_prefix("device:")
                .map(|d| Scope::Device(d.to_string()))
        }
    }

    /// The device of a per-device scope.
    pub fn device(&self) -> Option<&str> {
        match self {
            Scope::Project => None,
            Scope::Device(d) => Some(d),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_round_trip() {
        for s in [
            Scope::Project,
            Scope::Device("project".into()),
            Scope::Device("a:b".into()),
        ] {
            assert_eq!(Scope::from_key(&s.key()), Some(s));
        }
        assert_eq!(Scope::from_key("nonsense"), None);
    }
}
