"""The console's plumbing: login with a key, signed session cookie, CSRF checks, pages.

Pages are server-rendered; a form post is accepted only when the browser says it comes
from this site (``Origin`` equal to ours, else ``Sec-Fetch-Site: same-origin``), and
the session cookie is ``HttpOnly``, ``Secure`` and ``SameSite=Strict``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment

from arquivo.server.auth import COOKIE_NAME, KeyCache, Principal, sign_session, verify_session
from arquivo.server.config import ServerConfig
from arquivo.server.console.render import environment

__all__ = ["ConsoleUser", "install", "make_router", "page"]

# Browsers are told to show nothing from elsewhere and run no inline script.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """The page needs a console session (answered with a redirect to the login)."""


class CsrfRejected(Exception):
    """A form post that the browser did not vouch for as coming from this site."""


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a console template with the security headers."""
    env: Environment = request.app.state.templates
    html = env.get_template(template).render(
        request=request, config=request.app.state.config, **context
    )
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is not None:
        ours = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return origin == ours
    # No Origin (older browsers on same-origin posts): fall back to Fetch Metadata.
    return request.headers.get("sec-fetch-site") in ("same-origin", "none")


async def check_csrf(request: Request) -> None:
    """Refuse state-changing requests that another site could have made."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
        raise CsrfRejected()


async def console_user(request: Request) -> Principal:
    """The person logged in to the console, from the signed session cookie."""
    value = request.cookies.get(COOKIE_NAME)
    config: ServerConfig = request.app.state.config
    key_id = None if value is None else verify_session(config.session_secret, value)
    if key_id is None:
        raise LoginRequired()
    cache: KeyCache = request.app.state.keys
    principal = await cache.by_id(key_id)
    if principal is None:  # the key was revoked since
        raise LoginRequired()
    return principal


ConsoleUser = Annotated[Principal, Depends(console_user)]


def make_router() -> APIRouter:
    """A router for console pages: under ``/console``, out of OpenAPI, CSRF-checked."""
    return APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(check_csrf)])


router = make_router()


@router.get("/login")
def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    """The login page: one field, the API key."""
    return page(request, "login.html", error=error)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Check the key, then set the session cookie and go to the inbox."""
    cache: KeyCache = request.app.state.keys
    principal = await cache.by_token(key.strip()) if key.strip() else None
    if principal is None:
        return page(request, "login.html", 401, error="That key is not valid (or was revoked).")
    config: ServerConfig = request.app.state.config
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        sign_session(config.session_secret, principal.key_id, config.session_ttl_s),
        max_age=config.session_ttl_s,
        path="/console",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session."""
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/console", secure=True, httponly=True)
    return response


def install(app: FastAPI) -> None:
    """Add the console's pages, assets and error handling to ``app``."""
    from arquivo.server.console import hitl, pages

    app.state.templates = environment()

    async def to_login(request: Request, _: Exception) -> Response:
        if request.method == "GET" and not request.url.path.endswith("/fragment"):
            return RedirectResponse("/console/login", status_code=303)
        return Response("login required", status_code=401)

    async def csrf_rejected(request: Request, _: Exception) -> Response:
        return page(
            request,
            "message.html",
            403,
            title="Refused",
            message="This form was not sent from this site, so it was refused (CSRF check).",
        )

    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(CsrfRejected, csrf_rejected)
    app.include_router(router)
    app.include_router(hitl.router)
    app.include_router(pages.router)
    app.mount(
        "/console/static",
        StaticFiles(packages=[("arquivo.server", "static")]),
        name="console-static",
    )

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/console/", status_code=307)
