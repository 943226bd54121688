use adiuva_error::{DomainError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidEmail(&'static str),
    #[error("password must be between 8 and 72 bytes")]
    InvalidPassword,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid or expired access token")]
    InvalidToken,
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    #[error("refresh token was already used; all sessions of this login were revoked")]
    RefreshTokenReused,
    #[error("no account has this email")]
    UnknownEmail,
    #[error("no such session")]
    SessionNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("an admin cannot disable their own account")]
    CannotDisableSelf,
    #[error(
        "an account has this email: sign in to it and link this identity (POST /auth/oidc/link)"
    )]
    LinkRequired,
    #[error("this identity is already linked to an account")]
    IdentityTaken,
    #[error("no such identity")]
    IdentityNotFound,
    #[error(
        "this identity is the account's only way to sign in: set a password or link another first"
    )]
    LastSignInMethod,
    #[error("invalid cursor: use the X-Next-Cursor of the page before")]
    InvalidCursor,
    #[error(
        "a team of this account requires signing in through its SSO (POST /auth/oidc/start with its team_id)"
    )]
    SsoRequired,
    /// A team's provider vouched for an identity whose account is not a member of the team.
    #[error("this team's sign-in can only sign into an account that is a member of the team")]
    SsoNotMember,
    #[error("this email's domain is not one of the team's: its sign-in cannot create an account")]
    SsoDomainNotAllowed,
    #[error(transparent)]
    Team(#[from] adiuva_teams::TeamError),
    #[error("{0}")]
    InvalidPublicKey(&'static str),
    #[error(transparent)]
    Limited(#[from] adiuva_limits::LimitError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    #[error("password hashing failed")]
    Hashing(#[from] bcrypt::BcryptError),
    #[error("failed to sign a token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    #[error("the system random number generator failed")]
    Random(#[source] getrandom::Error),
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl DomainError for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidEmail(_)
            | Self::InvalidPassword
            | Self::InvalidCursor
            | Self::InvalidPublicKey(_) => ErrorKind::Invalid,
            Self::EmailTaken => ErrorKind::Conflict,
            Self::InvalidCredentials
            | Self::MissingToken
            | Self::InvalidToken
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused => ErrorKind::Unauthenticated,
            Self::UnknownEmail | Self::SessionNotFound | Self::UserNotFound => ErrorKind::NotFound,
            Self::AccountDisabled
            | Self::SsoRequired
            | Self::SsoNotMember
            | Self::SsoDomainNotAllowed => ErrorKind::Forbidden,
            Self::Team(err) => err.kind(),
            Self::CannotDisableSelf
            | Self::LinkRequired
            | Self::IdentityTaken
            | Self::LastSignInMethod => ErrorKind::Conflict,
            Self::IdentityNotFound => ErrorKind::NotFound,
            Self::Limited(err) => err.kind(),
            Self::Database(err) => adiuva_db::kind_of(err),
            Self::Hashing(_) | Self::Signing(_) | Self::Random(_) | Self::Task(_) => {
                ErrorKind::Internal
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidEmail(_) => "invalid_email",
            Self::InvalidPassword => "invalid_password",
            Self::EmailTaken => "email_taken",
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::UnknownEmail | Self::SessionNotFound | Self::UserNotFound => "not_found",
            Self::AccountDisabled => "account_disabled",
            Self::CannotDisableSelf => "cannot_disable_self",
            Self::InvalidCursor => "invalid_cursor",
            Self::InvalidPublicKey(_) => "invalid_public_key",
            Self::LinkRequired => "link_required",
            Self::IdentityTaken => "identity_taken",
            Self::IdentityNotFound => "not_found",
            Self::LastSignInMethod => "last_sign_in_method",
            Self::SsoRequired => "sso_required",
            Self::SsoNotMember => "sso_not_member",
            Self::SsoDomainNotAllowed => "sso_domain_not_allowed",
            Self::Team(err) => err.code(),
            Self::Limited(err) => err.code(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            _ => "internal_error",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Limited(err) => err.retry_after_secs(),
            _ => None,
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        if let Self::Team(err) = self {
            return err.public_detail();
        }
        (self.kind() == ErrorKind::Unavailable).then(|| adiuva_error::unavailable("the database"))
    }
}
