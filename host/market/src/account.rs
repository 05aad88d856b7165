//! Accounts and their roles.

use serde::{Deserialize, Serialize};

/// An account id.
pub type AccountId = u64;

/// What an account may do on the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Places, edits and cancels bids; pays for served intervals.
    Client,
    /// Registers machines and is paid for them.
    Host,
    /// Runs the market: parameters, plugins, deposits.
    Operator,
}

/// A market participant. Its balance lives in the ledger, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    /// Account id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// Roles held; an account may hold several.
    pub roles: Vec<Role>,
}

impl Account {
    /// Whether the account holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Longest account name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Words an account name may not contain (letters and digits compared, case ignored),
/// so that nobody can pass for the market's own staff in views that show names.
const RESERVED: [&str; 5] = ["operator", "admin", "gigaspot", "moderator", "staff"];

/// Checks a name chosen at open registration: 1 to 64 characters, no control characters,
/// and not one that impersonates the market's roles (e.g. "Operator", "GigaSPOT admin").
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.trim().is_empty() {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let folded: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if let Some(word) = RESERVED.iter().find(|w| folded.contains(*w)) {
        return Err(format!(
            "{name:?} contains {word:?}, which is reserved for the market's own accounts"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_impersonate_roles_are_refused() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("GPU Farm 7").is_ok());
        for bad in [
            "Operator",
            "the 0perator",
            "o-p-e-r-a-t-o-r",
            "GigaSPOT",
            "Admin bot",
            "",
            "  ",
            "a\nb",
        ] {
            let refused = check_name(bad).is_err();
            // "the 0perator" uses a zero, which is not the reserved word.
            assert_eq!(refused, bad != "the 0perator", "{bad:?}");
        }
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
