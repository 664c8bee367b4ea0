//! Who may do what in a group, as pure decisions. The gateway checks them
//! before it acts (or publishes, in Kafka mode); the storage consumer checks
//! a removal again where it sits in the group's log, with the roles of that
//! moment.
//!
//! A group has one owner (its creator, until they leave), admins the owner
//! names, and members. It is closed unless created `open`: a closed group is
//! joined only by accepting an invitation, which an admin (or the owner)
//! sends; nobody is made a member without asking to be. A new member sees
//! the history from their join on, unless the group was created with
//! `history: "all"`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(Error::Invalid(format!("unknown group role `{other}`"))),
        }
    }
}

/// What a member who joins later may read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// Messages stored after the join only.
    #[default]
    FromJoin,
    /// The whole history.
    All,
}

impl History {
    pub fn as_str(self) -> &'static str {
        match self {
            History::FromJoin => "from_join",
            History::All => "all",
        }
    }

    /// The last seq a member joining now may not read: they see seqs above it.
    pub fn hidden_through(self, last_seq: u64) -> u64 {
        match self {
            History::FromJoin => last_seq,
            History::All => 0,
        }
    }
}

impl FromStr for History {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "from_join" => Ok(History::FromJoin),
            "all" => Ok(History::All),
            other => Err(Error::Invalid(format!("unknown history visibility `{other}`"))),
        }
    }
}

/// Why an action on a group is refused; the text is what the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only the group's admins and owner may invite")]
    NotAdmin,
    #[error("only the group's owner may name or remove admins")]
    NotOwner,
    #[error("the owner cannot be removed; the owner may leave instead")]
    TargetIsOwner,
    #[error("an admin is removed by the owner only")]
    TargetIsAdmin,
    #[error("the group is closed: join by accepting an invitation")]
    NotInvited,
    #[error("the owner's role changes only when the owner leaves")]
    OwnerRole,
}

/// May a member with role `actor` invite someone?
pub fn may_invite(actor: Role) -> Result<(), Refusal> {
    if actor >= Role::Admin { Ok(()) } else { Err(Refusal::NotAdmin) }
}

/// May `actor` remove a member whose role is `target`? (Leaving is not a
/// removal: anyone may leave.)
pub fn may_remove(actor: Role, target: Role) -> Result<(), Refusal> {
    match (actor, target) {
        (_, Role::Owner) => Err(Refusal::TargetIsOwner),
        (Role::Owner, _) => Ok(()),
        (Role::Admin, Role::Admin) => Err(Refusal::TargetIsAdmin),
        (Role::Admin, Role::Member) => Ok(()),
        (Role::Member, _) => Err(Refusal::NotAdmin),
    }
}

/// May `actor` give a member whose role is `target` the role `to`? Only the
/// owner names and removes admins; ownership itself passes only on leaving.
pub fn may_set_role(actor: Role, target: Role, to: Role) -> Result<(), Refusal> {
    if actor != Role::Owner {
        return Err(Refusal::NotOwner);
    }
    if target == Role::Owner || to == Role::Owner {
        return Err(Refusal::OwnerRole);
    }
    Ok(())
}

/// May a user join: an open group, or a closed one they were invited to.
pub fn may_join(open: bool, invited: bool) -> Result<(), Refusal> {
    if open || invited { Ok(()) } else { Err(Refusal::NotInvited) }
}

/// Who owns the group after its owner leaves: the longest-standing admin,
/// else the longest-standing member (ties by name), else nobody. `members`
/// are the remaining ones as `(user, role, joined_at)`.
pub fn successor<'a>(members: impl IntoIterator<Item = (&'a str, Role, i64)>) -> Option<&'a str> {
    members.into_iter().min_by_key(|&(user, role, joined_at)| (role != Role::Admin, joined_at, user)).map(|(u, ..)| u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn roles_and_history_round_trip_their_names() {
        for role in [Member, Admin, Owner] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        for h in [History::FromJoin, History::All] {
            assert_eq!(h.as_str().parse::<History>().unwrap(), h);
            assert_eq!(serde_json::to_value(h).unwrap(), h.as_str());
        }
        assert!("root".parse::<Role>().is_err());
        assert!("some".parse::<History>().is_err());
    }

    #[test]
    fn only_admins_and_the_owner_invite() {
        assert_eq!(may_invite(Member), Err(Refusal::NotAdmin));
        assert!(may_invite(Admin).is_ok() && may_invite(Owner).is_ok());
    }

    #[test]
    fn removal_follows_rank() {
        assert!(may_remove(Owner, Admin).is_ok());
        assert!(may_remove(Owner, Member).is_ok());
        assert!(may_remove(Admin, Member).is_ok());
        assert_eq!(may_remove(Admin, Admin), Err(Refusal::TargetIsAdmin));
        assert_eq!(may_remove(Admin, Owner), Err(Refusal::TargetIsOwner));
        assert_eq!(may_remove(Owner, Owner), Err(Refusal::TargetIsOwner));
        assert_eq!(may_remove(Member, Member), Err(Refusal::NotAdmin));
    }

    #[test]
    fn only_the_owner_names_admins_and_ownership_is_not_given_away() {
        assert!(may_set_role(Owner, Member, Admin).is_ok());
        assert!(may_set_role(Owner, Admin, Member).is_ok());
        assert_eq!(may_set_role(Admin, Member, Admin), Err(Refusal::NotOwner));
        assert_eq!(may_set_role(Owner, Member, Owner), Err(Refusal::OwnerRole));
        assert_eq!(may_set_role(Owner, Owner, Member), Err(Refusal::OwnerRole));
    }

    #[test]
    fn a_closed_group_needs_an_invitation() {
        assert_eq!(may_join(false, false), Err(Refusal::NotInvited));
        assert!(may_join(false, true).is_ok());
        assert!(may_join(true, false).is_ok());
    }

    #[test]
    fn history_from_the_join_hides_what_came_before() {
        assert_eq!(History::FromJoin.hidden_through(41), 41);
        assert_eq!(History::All.hidden_through(41), 0);
    }

    #[test]
    fn ownership_passes_to_the_longest_standing_admin_then_member() {
        let admins_later = [("zed", Member, 1), ("amy", Admin, 5), ("bob", Admin, 3)];
        assert_eq!(successor(admins_later), Some("bob"));
        let members_only = [("zed", Member, 2), ("amy", Member, 2), ("cat", Member, 9)];
        assert_eq!(successor(members_only), Some("amy"), "a tie goes by name");
        assert_eq!(successor([]), None);
    }
}
