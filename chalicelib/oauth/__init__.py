"""OAuth tokens for ``managed_oauth`` providers (being split into private modules; see ``_session``)."""

from chalicelib.oauth._session import (
    GrantRejected,
    KmsCipher,
    LocalCipher,
    OAuthSession,
    OAuthTokenStore,
    TokenCipher,
    TokenDecryptError,
    TokenGrant,
    TokenRecord,
    TokenStore,
    TokenStoreError,
    fingerprint,
)

__all__ = [
    "GrantRejected",
    "KmsCipher",
    "LocalCipher",
    "OAuthSession",
    "OAuthTokenStore",
    "TokenCipher",
    "TokenDecryptError",
    "TokenGrant",
    "TokenRecord",
    "TokenStore",
    "TokenStoreError",
    "fingerprint",
]
