"""May this token write there? The access part of every publish preflight, checked before any byte is sent.

A hub with an API (``hf:``, ``modelscope:``) is asked who the token is (its SDK's ``whoami``);
the publisher turns that answer into an :class:`Identity` and :func:`require_write` refuses,
in one keyed line (exit 2), a target whose namespace the token may not write to: a namespace
that is neither the user's nor one of its organisations, a read-only token, a read-only role in
the organisation, a fine-grained token without write access there. :func:`visibility` says
what the repository's visibility is and will be (the preflight table's column) and refuses
``--private`` for an existing public repository unless ``--make-private`` asks to change it.
:func:`hub_errors` words any HTTP error answer of an SDK inside it (huggingface_hub's
``HfHubHTTPError`` family, ModelScope's ``APIError`` family, any ``response.status_code``) with
the repository and token it concerns: exit 2 when the token or the name is at fault (401, 403,
404, other 4xx), 1 when the hub failed (5xx, 429, timeouts).

A git host (``openxlab:``, ``git:``) has no ``whoami``: :func:`check_git_access` asks the remote
itself, with the publish's credentials and time limits, what ``git push`` would ask first: an
authenticated ``git ls-remote`` (can the token read it, does it exist) and, over http(s), the
push service's advertisement (``GET URL/info/refs?service=git-receive-pack``, the first request
of every smart-HTTP push, gitprotocol-http(5)), which the host answers 401/403 when the token may
not push. Nothing is sent and nothing is created.
"""
from __future__ import annotations

import base64
import contextlib
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

from vlhub.core.boundary import http_answer, http_error, network_error
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.net import timeouts
from vlhub.core.secrets import redact

from .gitlfs import Stage, check_url, git_error, lfs_env
from .gitpush import GitJob

#: The preflight table's visibility column: code -> English words (the pages translate the codes).
VISIBILITY = {
    "new-public": "new repository, public",
    "new-private": "new repository, private",
    "public": "existing repository, public",
    "private": "existing repository, private",
    "internal": "existing repository, visible to its organisation",
    "public-to-private": "existing repository, public: made private before anything is sent (--make-private)",
    "unknown": "not known to vlhub (set on the host)",
}


@dataclass(frozen=True)
class HubTarget:
    """A target on a hub with an API, as the access messages name it.

    Attributes:
        label: the target as the user wrote it (``hf:org/name``).
        hub: the hub's name (``Hugging Face``).
        repo_id: ``NAMESPACE/NAME``.
        endpoint: the API's base URL.
        token: where the token was found (``$HF_TOKEN``, ``hf auth login store``, ``not found``).
        token_var: the variable to set (``HF_TOKEN``).
        tokens_url: where an account makes tokens.
    """

    label: str
    hub: str
    repo_id: str
    endpoint: str
    token: str
    token_var: str
    tokens_url: str

    @property
    def namespace(self) -> str:
        """The user or organisation part of ``repo_id``."""
        return self.repo_id.split("/", 1)[0]

    def example(self, user: str) -> str:
        """The same target under ``user``'s own namespace (what the fixes suggest)."""
        return f"{self.label.split(':', 1)[0]}:{user}/{self.repo_id.split('/', 1)[-1]}"

    def words(self) -> dict[str, str]:
        """The message arguments every access message takes from the target."""
        return {"hub": self.hub, "repo": self.repo_id, "namespace": self.namespace, "endpoint": self.endpoint,
                "token": self.token, "token_var": self.token_var, "tokens_url": self.tokens_url}


@dataclass(frozen=True)
class Identity:
    """Who a token is and what it may write, as the hub's ``whoami`` says.

    Attributes:
        user: the account's name (its own namespace).
        orgs: organisation -> the user's role in it (Hugging Face ``roleInOrg``: ``admin``,
            ``write``, ``contributor``, ``read``; ``""`` when the hub does not say).
        role: the token's role (Hugging Face ``auth.accessToken.role``: ``read``, ``write``,
            ``fineGrained``; ``""`` when the hub does not say).
        writable: for a fine-grained token, the namespaces and repository ids it holds
            ``repo.write`` on; ``None`` when the role alone decides.
        orgs_known: False when the SDK cannot list the user's organisations (ModelScope).
    """

    user: str
    orgs: Mapping[str, str] = field(default_factory=dict)
    role: str = ""
    writable: frozenset[str] | None = None
    orgs_known: bool = True

    def namespaces(self) -> str:
        """The namespaces the account may write to, for messages (``tester, ExampleOrg``): its own and its
        organisations, except those where its role is ``read``."""
        return ", ".join([self.user, *sorted(o for o, role in self.orgs.items() if role != "read")])


def require_write(identity: Identity, target: HubTarget, *, member_flag: str = "", member: bool = False) -> None:
    """Refuse a target the token may not write to, before anything is sent.

    Args:
        identity: the token's identity (the publisher reads it from the hub's ``whoami``).
        target: the target.
        member_flag: the flag that vouches for an organisation the SDK cannot list
            (``--org-member``), where ``identity.orgs_known`` is False.
        member: whether that flag was given.

    Raises:
        BadInput: ``publish.foreign_namespace`` (the namespace is neither the user's nor one of its
            organisations; it names both), ``publish.namespace_unproven`` (the SDK cannot list
            organisations and ``member_flag`` was not given), ``publish.read_token`` (a read-only
            token), ``publish.org_role`` (a read-only role in the organisation),
            ``publish.token_scope`` (a fine-grained token without ``repo.write`` on the
            namespace or the repository). Each names the fix.
    """
    ns, user = target.namespace, identity.user
    words = {**target.words(), "user": user, "example": target.example(user)}
    if ns != user and ns not in identity.orgs:
        if identity.orgs_known:
            raise BadInput("publish.foreign_namespace", namespaces=identity.namespaces(), **words)
        if not member:
            raise BadInput("publish.namespace_unproven", flag=member_flag, **words)
    if identity.role == "read":
        raise BadInput("publish.read_token", **words)
    if identity.orgs.get(ns) == "read":
        raise BadInput("publish.org_role", role="read", **words)
    if identity.writable is not None and not {ns, target.repo_id} & identity.writable:
        raise BadInput("publish.token_scope", scopes=", ".join(sorted(identity.writable)) or "nothing", **words)


def visibility(target: HubTarget, exists: bool, private: bool | None, options: Mapping[str, Any], *,
               cannot_change: str = "") -> str:
    """The repository's visibility as the preflight table shows it (a key of :data:`VISIBILITY`).

    Args:
        target: the target.
        exists: whether the repository exists.
        private: the existing repository's visibility (True, False; None: neither public nor
            private, e.g. ModelScope's "internal").
        options: the publish options (``private``, ``make_private``).
        cannot_change: why this publisher cannot change an existing repository's visibility
            (``""`` when it can: ``make_private`` then makes a public one private before sending).

    Returns:
        ``new-private``/``new-public`` for a repository the publish creates, ``private``,
        ``public``, ``internal``, or ``public-to-private`` when ``--make-private`` will change it.

    Raises:
        BadInput: ``--private`` (or ``--make-private``) for an existing public repository, unless
            ``--make-private`` was given and the publisher can change it
            (``publish.private_but_public``, ``publish.visibility_unchangeable``).
    """
    make = bool(options.get("make_private"))
    want = bool(options.get("private")) or make
    if not exists:
        return "new-private" if want else "new-public"
    if private is None:
        return "internal"
    if private or not want:
        return "private" if private else "public"
    if not make:
        raise BadInput("publish.private_but_public", flag="--private", change_flag="--make-private", **target.words())
    if cannot_change:
        raise BadInput("publish.visibility_unchangeable", flag="--make-private", why=cannot_change,
                       url=f"{target.endpoint}/models/{target.repo_id}", **target.words())
    return "public-to-private"


def host_visibility(job: GitJob, options: Mapping[str, Any]) -> tuple[str, str]:
    """A git host's repository: git has no visibility setting, so vlhub neither sees nor sets it.

    Returns:
        ``("unknown", warning)``: the warning (``""`` without ``--private``) says that ``--private``
        cannot be honoured here and where to check.

    Raises:
        BadInput: ``--make-private`` (``publish.visibility_unchangeable``).
    """
    why = "git has no visibility setting: the host keeps it"
    if options.get("make_private"):
        raise BadInput("publish.visibility_unchangeable", flag="--make-private", repo=job.repo_id, why=why,
                       url=redact(job.web_url))
    if options.get("private"):
        return "unknown", (f"--private: vlhub cannot see or set the visibility of {redact(job.web_url)} ({why}); "
                           "check it on the host before publishing")
    return "unknown", ""


@contextlib.contextmanager
def hub_errors(target: HubTarget) -> Iterator[None]:
    """Turn an HTTP error answer of a hub's SDK raised inside the block into one keyed line about ``target``.

    ``VlhubError`` and exceptions without an HTTP answer (a dead network: :mod:`vlhub.core.boundary`
    words those) pass unchanged; the SDK's exception stays the ``__cause__`` (``--debug``).

    Raises:
        BadInput: 401 ``publish.token_rejected``, 403 ``publish.forbidden`` (names the namespace),
            404/410 ``publish.not_found``, another refusal ``publish.hub_refused`` (exit 2).
        VlhubError: 5xx, 408/409/412/423/425/429 ``publish.hub_failed`` (exit 1: retry).
    """
    try:
        yield
    except VlhubError:
        raise
    except Exception as exc:
        mapped = hub_error(exc, target)
        if mapped is None:
            raise
        raise mapped from exc


def hub_error(exc: BaseException, target: HubTarget) -> VlhubError | None:
    """What :func:`hub_errors` raises for ``exc``: the keyed error, or ``None`` for no HTTP error answer."""
    answer = http_answer(exc)
    generic = http_error(exc)
    if answer is None or generic is None or network_error(exc) is not None:
        return None
    words = {**target.words(), "detail": answer.detail, "status": answer.status}
    if answer.status == 401:
        return BadInput("publish.token_rejected", **words)
    if answer.status == 403:
        return BadInput("publish.forbidden", **words)
    if answer.status in (404, 410):
        return BadInput("publish.not_found", **words)
    return BadInput("publish.hub_refused", **words) if generic.exit_code == 2 else \
        VlhubError("publish.hub_failed", **words)


#: git's words for a refusal, as http(s) hosts and git itself print them (first match wins).
_GIT_REFUSALS = (
    (re.compile(r"authentication failed|could not read (username|password)|\b401\b|invalid credentials"
                r"|invalid username or password|unauthorized", re.I), "publish.git_credentials"),
    (re.compile(r"\b403\b|forbidden|permission denied|access denied|not allowed", re.I), "publish.git_forbidden"),
    (re.compile(r"not found|\b404\b|does not appear to be a git repository|does not exist", re.I),
     "publish.git_no_repo"),
)


def check_git_access(job: GitJob, token_var: str, user_var: str) -> None:
    """Ask the remote whether the publish's credentials may push there; sends and creates nothing.

    Runs ``git ls-remote --heads URL`` with the credentials and time limits every git step of the
    publish uses (:class:`~vlhub.core.publishing.gitlfs.Stage`), then, for an http(s) remote, asks
    for the push service (``GET URL/info/refs?service=git-receive-pack`` with the same Basic
    credentials, gitprotocol-http(5)): a host answers it 401 or 403 when the token may read but
    not push. Another answer (200, a host that does not serve it, no answer) leaves the decision to the push.

    Args:
        job: the target (its remote: URL without credentials, user, token).
        token_var: the variable holding the token (for the fix, e.g. ``OPENXLAB_TOKEN``).
        user_var: the variable holding the user name (``OPENXLAB_USER``), or ``""``.

    Raises:
        BadInput: the remote rejected the credentials (``publish.git_credentials``), refused the
            token access (``publish.git_forbidden``), has no such repository (``publish.git_no_repo``)
            or refused the push service (``publish.git_no_push``).
        VlhubError: the remote did not answer in time or could not be reached (exit 1).
        MissingDependency: git or git-lfs is missing.
    """
    stage = job.stage = job.stage or Stage(job.folder, job.remote)
    url = check_url(stage.remote.url)
    env = {k: v for k, v in lfs_env(stage).items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    limits = timeouts()
    words = {"url": redact(url), "repo": job.repo_id, "token_var": token_var,
             "user_hint": f" and {user_var}" if user_var else ""}
    try:
        proc = subprocess.run(["git", "ls-remote", "--heads", url], env=env, cwd=stage.dir, capture_output=True,
                              stdin=subprocess.DEVNULL, text=True, errors="replace",
                              timeout=limits.connect + limits.read + 5)
    except subprocess.TimeoutExpired:
        raise VlhubError("net.read_timeout", place=f"{redact(url)} (git ls-remote)") from None
    if proc.returncode:
        _refuse(proc.stderr, words, "git ls-remote", url)
    if urlsplit(url).scheme in ("http", "https"):
        _push_service(url, stage.remote.username or "vlhub", stage.remote.token, words)


def _refuse(stderr: str, words: dict[str, Any], what: str, url: str) -> None:
    """Raise the keyed refusal git's output names, else the git engine's line for the failure."""
    text = redact(" ".join(stderr.split()))
    failure = git_error(what, stderr, url)
    if failure.key.startswith("net."):  # a timeout or an unreachable host: the work failed, not the input
        raise failure
    for pattern, key in _GIT_REFUSALS:
        if pattern.search(text):
            raise BadInput(key, detail=text[-200:], **words)
    raise failure


def _push_service(url: str, user: str, token: str, words: dict[str, Any]) -> None:
    """``GET URL/info/refs?service=git-receive-pack``: 401/403 refuse the target; any other answer, or none
    (a proxy or TLS setting only git knows), leaves the decision to the push."""
    request = urllib.request.Request(f"{url.rstrip('/')}/info/refs?service=git-receive-pack")
    if token:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode())
    limits = timeouts()
    try:  # never followed to another place: the credentials go to the remote's own URL only
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=max(limits.connect, limits.read)):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read(400).decode("utf-8", "replace") if exc.fp is not None else ""
        detail = redact(" ".join(f"HTTP {exc.code} {body}".split()))[:200]
        if exc.code == 401:
            raise BadInput("publish.git_credentials", detail=detail, **words) from None
        if exc.code == 403:
            raise BadInput("publish.git_no_push", detail=detail, **words) from None
    except (urllib.error.URLError, OSError):  # git reached it (ls-remote): a proxy or TLS setting of git's own
        return


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is (an ``HTTPError`` the push probe lets pass), never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
