use adiuva_error::{DomainError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum TeamError {
    /// No such team, or the caller is not one of its members: the two look the same, so that a
    /// team's existence does not leak.
    #[error("no such team")]
    NotFound,
    #[error("no such member of this team")]
    MemberNotFound,
    #[error("no such pending invitation")]
    InvitationNotFound,
    #[error("this needs the team's owner or an admin")]
    AdminRequired,
    #[error("this needs the team's owner")]
    OwnerRequired,
    #[error("the owner cannot be removed; the owner may transfer ownership, then leave")]
    CannotRemoveOwner,
    /// Invalid input: its code and what is wrong.
    #[error("{1}")]
    Invalid(&'static str, &'static str),
    #[error("a user owns at most {0} teams")]
    TeamLimit(u64),
    #[error("the owner must transfer ownership to another member (or delete the team) first")]
    OwnerMustTransfer,
    #[error("the team's subscription is not active")]
    TeamInactive,
    #[error("every seat of the team is taken (members and pending invitations)")]
    SeatsExhausted,
    #[error("this invitation was used, revoked or has expired")]
    InvitationExpired,
    #[error("this invitation is for another email address")]
    InvitationEmailMismatch,
    #[error("already a member of this team")]
    AlreadyMember,
    #[error("no team key was wrapped for you yet")]
    KeyNotShared,
    #[error("invalid cursor: use the X-Next-Cursor of the page before")]
    InvalidCursor,
    #[error("this team has no SSO")]
    SsoNotFound,
    /// `SSO_SECRET_KEY` is not set: no client secret can be sealed or opened.
    #[error("the server has no SSO_SECRET_KEY: team SSO cannot be used")]
    SsoKeyMissing,
    /// A stored client secret does not open (`SSO_SECRET_KEY` changed since it was sealed).
    #[error("the team's SSO client secret cannot be opened with the current SSO_SECRET_KEY")]
    SsoSecretUnreadable,
    #[error("the system random number generator failed")]
    Random(#[source] getrandom::Error),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for TeamError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound
            | Self::MemberNotFound
            | Self::InvitationNotFound
            | Self::KeyNotShared
            | Self::SsoNotFound => ErrorKind::NotFound,
            Self::AdminRequired
            | Self::OwnerRequired
            | Self::CannotRemoveOwner
            | Self::InvitationEmailMismatch => ErrorKind::Forbidden,
            Self::Invalid(..) | Self::InvalidCursor => ErrorKind::Invalid,
            Self::TeamLimit(_)
            | Self::OwnerMustTransfer
            | Self::SeatsExhausted
            | Self::AlreadyMember => ErrorKind::Conflict,
            Self::TeamInactive => ErrorKind::QuotaExceeded,
            Self::InvitationExpired => ErrorKind::Gone,
            Self::SsoKeyMissing | Self::SsoSecretUnreadable => ErrorKind::Unavailable,
            Self::Random(_) => ErrorKind::Internal,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound | Self::MemberNotFound | Self::InvitationNotFound => "not_found",
            Self::AdminRequired => "team_admin_required",
            Self::OwnerRequired => "team_owner_required",
            Self::CannotRemoveOwner => "cannot_remove_owner",
            Self::Invalid(code, _) => code,
            Self::TeamLimit(_) => "team_limit_reached",
            Self::OwnerMustTransfer => "owner_must_transfer",
            Self::TeamInactive => "team_inactive",
            Self::SeatsExhausted => "seats_exhausted",
            Self::InvitationExpired => "invitation_expired",
            Self::InvitationEmailMismatch => "invitation_email_mismatch",
            Self::AlreadyMember => "already_member",
            Self::KeyNotShared => "key_not_shared",
            Self::InvalidCursor => "invalid_cursor",
            Self::SsoNotFound => "sso_not_found",
            Self::SsoKeyMissing => "sso_secret_key_missing",
            Self::SsoSecretUnreadable => "sso_secret_unreadable",
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Random(_) | Self::Database(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            Self::SsoKeyMissing => {
                Some("team SSO is not available: the server has no SSO_SECRET_KEY".into())
            }
            Self::SsoSecretUnreadable => {
                Some("the team's SSO client secret cannot be read: its owner sets it again".into())
            }
            _ => (self.kind() == ErrorKind::Unavailable)
                .then(|| adiuva_error::unavailable("the database")),
        }
    }
}
