use adiuva_error::{DomainError, ErrorKind};

/// Why a sign-in step was refused. The client sees the kind and the code; an `Invalid` sign-in
/// does not say which check failed (the log does), so a forger learns nothing from the answer.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("no such sign-in provider is configured")]
    UnknownProvider,
    #[error(
        "redirect_uri must be a loopback URL (http://127.0.0.1:<port>/... or http://[::1]:<port>/...) or one of OIDC_REDIRECT_URIS"
    )]
    RedirectNotAllowed,
    #[error("code_challenge_method must be S256")]
    UnsupportedChallengeMethod,
    #[error("{0}")]
    InvalidInput(&'static str),
    /// A used, unknown or expired state, a code the provider refused, a verifier that does not
    /// match the challenge, or an ID token that failed a check. The reason is for the log.
    #[error("the sign-in could not be verified")]
    Invalid(String),
    #[error("the provider has not verified this email")]
    EmailUnverified,
    /// The provider's discovery document, keys or token endpoint could not be reached or
    /// answered nonsense.
    #[error("the sign-in provider cannot be reached")]
    Unreachable(String),
    /// A team's provider settings could not be read: the teams domain's error as a client
    /// sees it (the caller logs its cause).
    #[error("{}", .0.detail)]
    TeamSettings(adiuva_error::Public),
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] adiuva_kv::KvError),
    #[error(transparent)]
    Limited(#[from] adiuva_limits::LimitError),
}

impl OidcError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    pub(crate) fn unreachable(reason: impl Into<String>) -> Self {
        Self::Unreachable(reason.into())
    }
}

impl DomainError for OidcError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownProvider
            | Self::RedirectNotAllowed
            | Self::UnsupportedChallengeMethod
            | Self::InvalidInput(_) => ErrorKind::Invalid,
            Self::Invalid(_) => ErrorKind::Unauthenticated,
            Self::EmailUnverified => ErrorKind::Forbidden,
            Self::Unreachable(_) => ErrorKind::Unavailable,
            Self::TeamSettings(public) => public.kind,
            Self::Random => ErrorKind::Internal,
            Self::Store(err) => err.kind(),
            Self::Limited(err) => err.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::RedirectNotAllowed => "redirect_uri_not_allowed",
            Self::UnsupportedChallengeMethod => "unsupported_challenge_method",
            Self::InvalidInput(_) => "validation_error",
            Self::Invalid(_) => "oidc_invalid",
            Self::EmailUnverified => "email_unverified",
            Self::Unreachable(_) => "provider_unavailable",
            Self::TeamSettings(public) => public.code,
            Self::Random => "internal_error",
            Self::Store(err) => err.code(),
            Self::Limited(err) => err.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Limited(err) => err.retry_after_secs(),
            Self::TeamSettings(public) => public.retry_after_secs,
            _ => None,
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            Self::Store(err) => err.public_detail(),
            Self::TeamSettings(public) => Some(public.detail.clone()),
            _ => None,
        }
    }
}
