"""OAuth tokens for ``managed_oauth`` providers: encrypted storage in DynamoDB and the refresh protocol.

The API (everything else is private to the package):

- ``OAuthSession``, ``TokenGrant``, ``GrantRejected``, ``fingerprint``: the refresh protocol — a usable access
  token for one provider's fetch, refresh tokens rotated durably and never spent twice (``_session``).
- ``OAuthTokenStore``, ``TokenStore``, ``TokenRecord``, ``TokenStoreError``: where the tokens live, encrypted,
  written with optimistic versioning (``_token_store``).

The ciphers that encrypt the tokens (``KmsCipher``, ``LocalCipher``) are in ``chalicelib.ciphers``.
"""

from chalicelib.oauth._session import GrantRejected, OAuthSession, TokenGrant, fingerprint
from chalicelib.oauth._token_store import OAuthTokenStore, TokenRecord, TokenStore, TokenStoreError

__all__ = [
    "GrantRejected",
    "OAuthSession",
    "OAuthTokenStore",
    "TokenGrant",
    "TokenRecord",
    "TokenStore",
    "TokenStoreError",
    "fingerprint",
]
