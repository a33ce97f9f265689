"""Who may look, and proof that an action came from the dashboard's own page.

**Auth token** (``auth_token=``, ``--auth-token``). A request is let in when
it carries the token as ``Authorization: Bearer <token>`` (scripts), or the
auth cookie. ``?token=<token>`` on any page sets that cookie and redirects
to the same address without the token, so it does not stay in the address
bar, the history or a proxy's log of later requests. The cookie holds an
HMAC of the token, not the token itself: it survives a restart of the
server, and a leaked cookie does not reveal the token. Every comparison is
:func:`hmac.compare_digest` (no timing oracle).

**CSRF.** Every state-changing action is a POST carrying ``csrf_token``:
the HMAC of a secret (random per process unless ``secret_key`` is given)
and the session id, a random value in an HttpOnly, SameSite=Strict cookie
the dashboard sets on its first page. A page of another site cannot read
the token (same-origin policy) nor compute it (it lacks the secret), so a
forged form post is refused with 403 even by a browser that sends our
cookies along. As a second line, a POST the browser itself labels
cross-site or same-site (``Sec-Fetch-Site``) is refused before the token is
looked at. Several server processes behind one address need the same
``secret_key``, or a form rendered by one is refused by another.

Nothing here stores state: no session table, nothing to expire.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from werkzeug.wrappers import Request

#: Cookie names, prefixed so a dashboard mounted in an application does
#: not collide with the application's own cookies.
AUTH_COOKIE = "task_queue_dashboard_auth"
SESSION_COOKIE = "task_queue_dashboard_session"
#: The form field of the CSRF token.
CSRF_FIELD = "csrf_token"

_AUTH_CONTEXT = b"task_queue dashboard auth cookie v1"


class Guard:
    """The dashboard's checks: the auth token and CSRF tokens."""

    def __init__(self, auth_token: str | None, secret_key: bytes | str | None = None) -> None:
        if auth_token is not None and (not isinstance(auth_token, str) or not auth_token):
            raise ValueError("auth_token must be a non-empty string (None: no token)")
        if isinstance(secret_key, str):
            secret_key = secret_key.encode()
        self.auth_token = auth_token
        self._secret = secret_key or secrets.token_bytes(32)
        self._cookie_value = (
            None
            if auth_token is None
            else hmac.new(auth_token.encode(), _AUTH_CONTEXT, hashlib.sha256).hexdigest()
        )

    # -- auth token ----------------------------------------------------------
    @property
    def needs_token(self) -> bool:
        """Whether requests must show the auth token."""
        return self.auth_token is not None

    def token_matches(self, offered: str) -> bool:
        """``offered`` is the auth token."""
        assert self.auth_token is not None
        return hmac.compare_digest(offered.encode(), self.auth_token.encode())

    @property
    def auth_cookie(self) -> str:
        """The auth cookie's value (an HMAC of the token)."""
        assert self._cookie_value is not None
        return self._cookie_value

    def authenticated(self, request: Request) -> bool:
        """The request shows the token (header or cookie); True without a token."""
        if self.auth_token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and credentials and self.token_matches(credentials.strip()):
            return True
        cookie = request.cookies.get(AUTH_COOKIE)
        return cookie is not None and hmac.compare_digest(
            cookie.encode(), self.auth_cookie.encode()
        )

    # -- CSRF ----------------------------------------------------------------
    @staticmethod
    def new_session() -> str:
        """A fresh session id (the session cookie's value)."""
        return secrets.token_urlsafe(32)

    def csrf_token(self, session: str) -> str:
        """The CSRF token of a session: HMAC(secret, session id)."""
        return hmac.new(self._secret, session.encode(), hashlib.sha256).hexdigest()

    def csrf_refusal(self, request: Request) -> str | None:
        """Why a POST is refused (a sentence), or None when its CSRF token
        is that of its session and the browser does not call it cross-site."""
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return f"the browser says this request came from another site ({site})"
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return "no session cookie (reload the page and try again)"
        offered = request.form.get(CSRF_FIELD, "")
        if not offered:
            return "the form carries no CSRF token"
        if not hmac.compare_digest(offered.encode(), self.csrf_token(session).encode()):
            return "the CSRF token does not match this session (reload the page and try again)"
        return None
